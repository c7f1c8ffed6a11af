"""A real browser for the playground tests: Debian's Chromium (/usr/bin/chromium) driven by Playwright.

Playwright's own browser downloads are never used (`playwright install` is not needed): it drives
the system's Chromium through ``executable_path``. `.ci/run` and `make test` install Chromium
where it is missing. Without it these tests are skipped, unless PICO_BROWSER_TESTS=required (CI),
where a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("PICO_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
         "--disable-extensions", "--no-first-run", "--mute-audio"]
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def _missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="package")
def browser():
    missing = _missing()
    if missing:
        if os.environ.get("PICO_BROWSER_TESTS") == "required":
            pytest.fail(f"browser tests are required here: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(serve):
    """`pico serve` on the tiny models (what --demo serves), one slot and one queue place; it can hold
    its generations open (``site.held()``)."""
    return serve("--queue", "1")


@pytest.fixture
def page(browser, site):
    """A fresh browser context (no stored key, no gallery) on the playground, ready to use."""
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"http://127.0.0.1:{site.port}/")
    page.wait_for_selector("body[data-ready]")
    yield page
    context.close()
    assert errors == [], f"the page's script failed: {errors}"
