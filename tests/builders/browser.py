"""Debian's Chromium for the browser tests (through Playwright, never a browser download): where it
is, the flags every test launches it with, the marks of a browser test, logging in, and playing a
clip with the page's keys."""

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


# the clip's sound has started (its bytes came from the media route) or it has played to the end
PLAYING = "(sel) => { const a = document.querySelector(sel); return !!a && (a.currentTime > 0 || a.ended); }"


def play(page, key: str, selector: str) -> None:
    """Press KEY (the page's shortcut for the player SELECTOR) and wait until the clip plays (the
    player has fetched it from the media route, which records what it sent) or has ended."""
    page.wait_for_selector(selector, state="attached", timeout=30000)
    page.keyboard.press(key)
    page.wait_for_function(PLAYING, arg=selector, timeout=20000)


def play_both(page) -> None:
    """Play the audit pair's two clips to their end with the keys "a" and "b"."""
    for side in ("a", "b"):
        play(page, side, f"#audio-{side} audio")
        page.wait_for_function("(sel) => document.querySelector(sel).ended", arg=f"#audio-{side} audio", timeout=20000)
