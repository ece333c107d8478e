"""Debian's Chromium for the browser tests (through Playwright, never a browser download): where it
is, the flags every test launches it with, the marks of a browser test, and logging in."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from builders.ui import PASSWORD

CHROMIUM = os.environ.get("CURATOR_CHROMIUM", "/usr/bin/chromium")
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt install chromium)"),
]
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def login(page, url, name):
    page.goto(url)
    page.get_by_label(re.compile("username", re.I)).fill(name)
    page.get_by_label(re.compile("password", re.I)).fill(PASSWORD)
    page.get_by_role("button", name=re.compile("login", re.I)).click()
    page.locator("#who").get_by_text(f"Signed in as {name}").wait_for(timeout=30000)
