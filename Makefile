# Two commands on a fresh machine: `make demo` (install, then serve the demo models)
# and `make test` (install, then run the test suite). Both create .venv on first use.

PYTHON ?= python3
VENV ?= .venv
# On a CPU-only machine, this release installs a CPU build; set TORCH to pick another.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

CHROMIUM ?= /usr/bin/chromium

.PHONY: install demo serve test chromium screenshot clean

install: $(STAMP)

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt "$(TORCH)" -e ".[test,ray]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: install
	$(VENV)/bin/pico serve --demo --host 127.0.0.1

serve: install
	$(VENV)/bin/pico serve

test: install chromium
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -m "not soak"
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -m soak

# The playground's browser tests drive Debian's Chromium (Playwright never downloads one). Installed
# here when missing and we are root (CI); otherwise those tests are skipped with a note.
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "note: no $(CHROMIUM); the browser tests will be skipped (sudo apt-get install chromium)"; \
		fi; \
	fi

# The README's picture of the playground, made by the browser tests' own setup.
screenshot: install chromium
	HF_HUB_OFFLINE=1 PICO_SCREENSHOT=$(CURDIR)/docs/playground.png $(VENV)/bin/python -m pytest \
		tests/browser -k screenshot -q

clean:
	rm -rf $(VENV) pico-out .pytest_cache
