"""Two `annotate-ui` processes on one PostgreSQL store, in a real browser: a rater logs in on
process A, and the same cookie is a login on process B (the logins live in the store)."""

from __future__ import annotations

import re

import pytest

from annotate_ui.logic import audit
from annotate_ui.web.context import make_context
from builders.browser import BROWSER_MARKS, login, play_both
from builders.ports import free_port
from builders.serve import serve_process
from builders.ui import make_pool, make_users

pytestmark = [*BROWSER_MARKS, pytest.mark.postgres]


def test_a_login_on_one_process_holds_on_the_other(pg_reason, audio_store, browser):
    from playwright.sync_api import expect

    from conftest import make_pg_database
    from db.session import upgrade

    url, drop = make_pg_database(pg_reason)
    procs = []
    try:
        upgrade(url)
        ctx = make_context(url, audio_store)
        with ctx.session() as s:
            pairs = make_pool(s, audio_store, 4)
            make_users(s, n_raters=1, admins=1)
            audit.enqueue(s, pairs, reason="random", added_by="t", overlap=1)
        ports = [free_port(), free_port()]
        procs = [serve_process(url, audio_store.root, p) for p in ports]
        page = browser.new_page()
        login(page, f"http://127.0.0.1:{ports[0]}/", "rater0")
        expect(page.locator("#audit-progress")).to_contain_text("remaining 4", timeout=30000)
        # cookies are per host, not per port: process B gets A's cookie and must know the login
        page.goto(f"http://127.0.0.1:{ports[1]}/")
        page.locator("#who").get_by_text("Signed in as rater0").wait_for(timeout=30000)
        assert page.get_by_label(re.compile("password", re.I)).count() == 0
        play_both(page)
        page.locator("#vote-A").click()
        expect(page.locator("#audit-progress")).to_contain_text("Done 1", timeout=30000)
        # logging out on B ends the login on A too
        page.locator("#logout").click()
        page.get_by_label(re.compile("username", re.I)).wait_for(timeout=30000)
        page.goto(f"http://127.0.0.1:{ports[0]}/")
        page.get_by_label(re.compile("username", re.I)).wait_for(timeout=30000)
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        drop()
