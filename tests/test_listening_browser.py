"""A real browser (Debian's Chromium through Playwright) rates two clips of a listening session:
the rater logs in, opens the tab, sees the OVL/REL definitions and the prompt escaped, rates
with the radios once the clip has played (before, the rating is refused with the reason shown),
and the ratings are in the store under that rater; the admin part stays hidden."""

from __future__ import annotations


import numpy as np
import pytest
from sqlalchemy import select

from builders.browser import ARGS as BROWSER_ARGS
from builders.browser import BROWSER_MARKS, CHROMIUM
from builders.ports import free_port
from annotate_ui.logic.listening import clipsets, design
from db.annotation import User
from db.listening import ListeningRating
from db.models import AudioClip, Caption, text_hash

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]
EVIL = "<img src=x onerror=alert(1)> a dog barks"
RATINGS = ((4, 2), (5, 3), (1, 1), (3, 5))


def _world(ctx, audio_store, name="browser-session", seconds=0.5):
    """A rater account and a listening session of 2 prompts (one escapes) × 2 systems, no gold items."""
    from annotate_ui.logic.auth import add_user

    with ctx.session() as s:
        add_user(s, "listener", "rater", "listen-pass-1")
        caps = [Caption(text=t, text_sha=text_hash(t), split="test") for t in (EVIL, "rain on a tin roof")]
        s.add_all(caps)
        s.flush()
        for gen in ("sysA", "sysB"):
            for k, cap in enumerate(caps):
                wave = 0.1 * np.sin(np.arange(int(16000 * seconds)) * (0.05 + 0.01 * k)).astype(np.float32)
                sha, rel = audio_store.put_wave(wave, 16000)
                s.add(AudioClip(sha256=sha, path=rel, sample_rate=16000, num_samples=len(wave), duration_s=seconds,
                                generator=gen, checkpoint_id="c", prompt=cap.text, caption_id=cap.id,
                                strategy="eval", slot=0))
        s.flush()
        sets = [clipsets.clip_set_from_generator(s, f"set-{g}", generator=g) for g in ("sysA", "sysB")]
        design.create_listening_session(s, name, sets, n_prompts=2, n_gold=0)


def _login_and_start(page, port: int, expect) -> None:
    page.goto(f"http://127.0.0.1:{port}/")
    page.get_by_label("username").fill("listener")
    page.get_by_label("password").fill("listen-pass-1")
    page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name="Listening sessions").click()
    expect(page.locator("#listen-definitions")).to_contain_text("regardless of the text", timeout=20_000)
    page.locator("#listen-session input").click()
    page.get_by_role("option", name="browser-session").click()
    page.locator("#listen-start").click()


def test_rater_rates_two_clips_in_the_browser(sqlite_store_url, audio_store):
    from playwright.sync_api import expect, sync_playwright

    from annotate_ui.web.app import launch
    from annotate_ui.web.context import make_context

    ctx = make_context(sqlite_store_url, audio_store)
    _world(ctx, audio_store)

    port = free_port()
    demo = launch(ctx, port=port, prevent_thread_lock=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page()
            _login_and_start(page, port, expect)
            expect(page.locator("#listen-admin")).to_be_hidden()
            shown = []
            for k, (ovl, rel) in enumerate(RATINGS):
                expect(page.locator("#listen-progress")).to_contain_text(f"Clip **{k + 1}** of 4".replace("**", ""),
                                                                         timeout=20_000)
                shown.append(page.locator("#listen-prompt").inner_text())
                assert page.locator("#listen-prompt img").count() == 0  # text, never markup
                page.locator("#listen-ovl").get_by_label(str(ovl), exact=True).check()
                page.locator("#listen-rel").get_by_label(str(rel), exact=True).check()
                if k == 0:  # before the clip played: refused, the reason shown, nothing recorded
                    page.locator("#listen-submit").click()
                    expect(page.get_by_text("play the clip to the end before you rate it").first).to_be_visible(
                        timeout=20_000)
                    expect(page.locator("#listen-progress")).to_contain_text("Clip 1 of 4")
                page.locator("body").click(position={"x": 1, "y": 1})
                page.wait_for_selector("#listen-audio audio", state="attached", timeout=20_000)
                page.keyboard.press("p")  # the tab's key plays the clip: the player fetches it from the media route
                page.wait_for_function("document.querySelector('#listen-audio audio').ended", timeout=20_000)
                page.locator("#listen-submit").click()
                expect(page.locator("#listen-message")).to_contain_text(f"Recorded OVL {ovl}, REL {rel}",
                                                                        timeout=20_000)
            expect(page.locator("#listen-prompt")).to_contain_text("No clip is waiting", timeout=20_000)
            assert sum(EVIL in text for text in shown) == 2  # shown literally, for both systems
            browser.close()
    finally:
        demo.close()

    with ctx.session() as s:
        user = s.scalar(select(User).where(User.name == "listener"))
        rows = list(s.scalars(select(ListeningRating).where(ListeningRating.rated_at.is_not(None))
                              .order_by(ListeningRating.position)))
        assert [(r.user_id, r.position, r.ovl, r.rel) for r in rows] == [
            (user.id, k, ovl, rel) for k, (ovl, rel) in enumerate(RATINGS)]


def test_rater_rates_with_the_keyboard(sqlite_store_url, audio_store):
    """p plays, 1–5 set OVL, Shift+1–5 and q–t set REL, Enter submits, s skips, u undoes; keys typed
    into a text field do nothing; the ratings are in the store under the rater."""
    from playwright.sync_api import expect, sync_playwright

    from annotate_ui.web.app import launch
    from annotate_ui.web.context import make_context

    ctx = make_context(sqlite_store_url, audio_store)
    _world(ctx, audio_store, seconds=20.0)  # long enough to still be playing when checked
    port = free_port()
    demo = launch(ctx, port=port, prevent_thread_lock=True)

    def checked(page, box: str):
        return page.locator(f"#{box} input[type=radio]:checked")

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page()
            _login_and_start(page, port, expect)
            expect(page.locator("#listen-keys")).to_contain_text("Shift+1–5 or q w e r t REL")
            expect(page.locator("#listen-progress")).to_contain_text("Clip 1 of 4", timeout=20_000)
            player = page.locator("#listen-audio audio")
            expect(player).to_have_count(1, timeout=20_000)

            def paused() -> bool:
                return page.evaluate("document.querySelector('#listen-audio audio').paused")

            def play_then_pause() -> None:
                """"p" plays the clip (the player fetches all of it from the media route, which is what a
                rating needs) and "p" again pauses it mid-clip (the clip is 20 s long). The second "p" is
                pressed only once the element has fired `playing` (playback really under way, not just
                requested), so it is never a toggle the starting player can drop."""
                page.wait_for_function("document.querySelector('#listen-audio audio')", timeout=20_000)
                assert paused()
                page.evaluate("window.listenPlaying = false; document.querySelector('#listen-audio audio')"
                              ".addEventListener('playing', () => { window.listenPlaying = true; }, {once: true})")
                page.keyboard.press("p")
                page.wait_for_function("window.listenPlaying === true && "
                                       "!document.querySelector('#listen-audio audio').paused", timeout=10_000)
                page.keyboard.press("p")
                page.wait_for_function("document.querySelector('#listen-audio audio').paused", timeout=10_000)
                assert not page.evaluate("document.querySelector('#listen-audio audio').ended")

            # 1. Clip 1: OVL 4 with "4", REL 2 with Shift+2, Enter submits
            page.locator("body").click(position={"x": 1, "y": 1})  # focus outside any field
            play_then_pause()
            page.keyboard.press("4")
            expect(checked(page, "listen-ovl")).to_have_value("4")
            page.keyboard.press("Shift+Digit2")
            expect(checked(page, "listen-rel")).to_have_value("2")
            expect(checked(page, "listen-ovl")).to_have_value("4")  # REL keys leave OVL alone
            page.keyboard.press("Enter")
            expect(page.locator("#listen-message")).to_contain_text("Recorded OVL 4, REL 2", timeout=20_000)
            expect(page.locator("#listen-progress")).to_contain_text("Clip 2 of 4", timeout=20_000)
            expect(checked(page, "listen-ovl")).to_have_count(0)  # cleared for the next clip

            # 2. Clip 2: "p" plays and pauses it; OVL 5, REL 3 with the letter "e" (a radio chosen with the
            #    mouse keeps the keys working)
            expect(page.locator("#listen-progress")).to_contain_text("Clip 2 of 4", timeout=20_000)
            assert page.evaluate("document.querySelector('#listen-audio audio').readyState") == 0  # nothing fetched yet
            play_then_pause()
            page.locator("#listen-ovl").get_by_label("1", exact=True).check()
            page.keyboard.press("5")
            expect(checked(page, "listen-ovl")).to_have_value("5")
            page.keyboard.press("e")
            expect(checked(page, "listen-rel")).to_have_value("3")
            page.keyboard.press("Enter")
            expect(page.locator("#listen-message")).to_contain_text("Recorded OVL 5, REL 3", timeout=20_000)

            # 3. Clip 3: "s" skips it, "u" takes the skip back, then it is rated
            expect(page.locator("#listen-progress")).to_contain_text("Clip 3 of 4", timeout=20_000)
            page.keyboard.press("s")
            expect(page.locator("#listen-message")).to_contain_text("Skipped.", timeout=20_000)
            expect(page.locator("#listen-progress")).to_contain_text("Clip 4 of 4", timeout=20_000)
            page.keyboard.press("u")
            expect(page.locator("#listen-message")).to_contain_text("taken back", timeout=20_000)
            expect(page.locator("#listen-progress")).to_contain_text("Clip 3 of 4", timeout=20_000)

            # 4. Typing into a text field (the session picker) is not a shortcut
            field = page.locator("#listen-session input")
            field.click()
            field.press_sequentially("12qs")
            page.keyboard.press("Escape")
            expect(checked(page, "listen-ovl")).to_have_count(0)
            expect(checked(page, "listen-rel")).to_have_count(0)
            expect(page.locator("#listen-progress")).to_contain_text("Clip 3 of 4")
            page.locator("body").click(position={"x": 1, "y": 1})
            play_then_pause()
            page.keyboard.press("Numpad1")
            page.keyboard.press("t")
            page.keyboard.press("Enter")
            expect(page.locator("#listen-message")).to_contain_text("Recorded OVL 1, REL 5", timeout=20_000)
            browser.close()
    finally:
        demo.close()

    with ctx.session() as s:
        user = s.scalar(select(User).where(User.name == "listener"))
        rows = list(s.scalars(select(ListeningRating).order_by(ListeningRating.position)))
        assert [(r.user_id, r.position, r.ovl, r.rel, r.skipped_at is None) for r in rows] == [
            (user.id, 0, 4, 2, True), (user.id, 1, 5, 3, True), (user.id, 2, 1, 5, True), (user.id, 3, None, None, True)]
