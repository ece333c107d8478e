"""A real browser (Debian's Chromium through Playwright) on what a rater sees first: the spectrogram
under each player (and the switch that hides it), and a new demo store that has an audit pair and a
listening clip waiting for `rater` at the first login."""

from __future__ import annotations

import re


from builders.app import free_port, running_app
from builders.browser import BROWSER_MARKS, login, play, play_both

pytestmark = BROWSER_MARKS

LOADED = "(sel) => [...document.querySelectorAll(sel)].length === 2 && [...document.querySelectorAll(sel)].every(i => i.complete && i.naturalWidth === 640)"


def test_the_spectrogram_shows_under_each_player_and_can_be_hidden(sqlite_store_url, audio_store, browser):
    from playwright.sync_api import expect

    with running_app(sqlite_store_url, audio_store, n_pairs=3, n_raters=1) as (ctx, url, pairs, users):
        page = browser.new_page()
        login(page, url, "rater0")
        page.wait_for_function(LOADED, arg="#audit-players img.spectrogram", timeout=30000)
        srcs = page.eval_on_selector_all("#audit-players img.spectrogram", "els => els.map(e => e.getAttribute('src'))")
        audio = page.eval_on_selector_all("#audit-players audio", "els => els.map(e => e.getAttribute('src'))")
        assert all(re.fullmatch(r"media/[A-Za-z0-9_-]{24}", s) for s in srcs + audio)
        assert len(set(srcs + audio)) == 4  # an image has its own token, never the clip's
        for side in ("a", "b"):
            expect(page.locator(f"#audio-{side} img.spectrogram")).to_be_visible()
        # the switch hides every spectrogram; the choice survives a reload
        page.locator("#show-spectrograms input[type=checkbox]").uncheck()
        expect(page.locator("#audio-a img.spectrogram")).to_be_hidden(timeout=10000)
        page.reload()
        page.locator("#who").get_by_text("Signed in as rater0").wait_for(timeout=30000)
        expect(page.locator("#show-spectrograms input[type=checkbox]")).not_to_be_checked(timeout=10000)
        expect(page.locator("#audio-b img.spectrogram")).to_be_hidden()
        page.locator("#show-spectrograms input[type=checkbox]").check()
        expect(page.locator("#audio-b img.spectrogram")).to_be_visible(timeout=10000)
        # the next pair (once both clips played and the vote is in) brings fresh images
        page.locator("body").click(position={"x": 5, "y": 5})
        play_both(page)
        page.locator("#vote-A").click()
        expect(page.locator("#audit-progress")).to_contain_text("Done 1", timeout=30000)
        page.wait_for_function(LOADED, arg="#audit-players img.spectrogram", timeout=30000)
        after = page.eval_on_selector_all("#audit-players img.spectrogram", "els => els.map(e => e.getAttribute('src'))")
        assert not set(after) & set(srcs)


def test_a_new_demo_store_has_work_for_rater_at_first_login(tmp_path, browser):
    from playwright.sync_api import expect

    from annotate_ui.web.app import launch
    from annotate_ui.web.context import make_context
    from curator.audio import audio_store_for
    from curator.cli.demo import DEMO_SESSION, ensure_demo_accounts, run_demo
    from db.session import session_scope

    db = f"sqlite:///{tmp_path / 'demo.db'}"
    run_demo(db, captions=12, seed=1, duration_s=6.0, echo=lambda s: None, progress=False)
    with session_scope(db) as s:
        passwords = ensure_demo_accounts(s)
    ctx = make_context(db, audio_store_for(db))
    port = free_port()
    demo = launch(ctx, port=port, prevent_thread_lock=True)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_label(re.compile("username", re.I)).fill("rater")
        page.get_by_label(re.compile("password", re.I)).fill(passwords["rater"])
        page.get_by_role("button", name=re.compile("login", re.I)).click()
        page.locator("#who").get_by_text("Signed in as rater").wait_for(timeout=30000)
        # an audit pair at once: a caption, two players, votes to cast
        expect(page.locator("#audit-progress")).to_contain_text("remaining", timeout=30000)
        expect(page.locator("#audit-caption")).not_to_contain_text("No pair is waiting")
        page.wait_for_function("document.querySelectorAll('#audit-players audio').length === 2", timeout=30000)
        page.locator("body").click(position={"x": 5, "y": 5})
        for side in ("a", "b"):  # a vote needs both clips played: "a" and "b" start them
            play(page, side, f"#audio-{side} audio")
        page.locator("#vote-both_good").click()
        expect(page.locator("#audit-progress")).to_contain_text("Done 1", timeout=30000)
        # and a listening session with a clip to rate
        page.get_by_role("tab", name="Listening sessions").click()
        page.locator("#listen-session input").click()
        page.get_by_role("option", name=DEMO_SESSION).click()
        page.locator("#listen-start").click()
        expect(page.locator("#listen-progress")).to_contain_text("Clip 1 of", timeout=30000)
        expect(page.locator("#listen-prompt")).to_contain_text("Prompt:")
        page.wait_for_function(LOADED.replace("=== 2", "=== 1"), arg="#listen-audio img.spectrogram", timeout=30000)
        assert page.locator("#listen-audio audio").count() == 1
    finally:
        demo.close()
