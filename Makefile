# Two commands on a fresh machine: `make demo` (install, then serve the demo models)
# and `make test` (install, then run the test suite). Both create .venv on first use.

PYTHON ?= python3
VENV ?= .venv
# On a CPU-only machine, this release installs a CPU build; set TORCH to pick another.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install demo serve test clean

install: $(STAMP)

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt "$(TORCH)" -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: install
	$(VENV)/bin/pico serve --demo --host 127.0.0.1

serve: install
	$(VENV)/bin/pico serve

test: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -m "not soak"
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -m soak

clean:
	rm -rf $(VENV) pico-out .pytest_cache
