"""A real browser (Debian's Chromium through Playwright) rates two clips of a listening session:
the rater logs in, opens the tab, sees the OVL/REL definitions and the prompt escaped, rates
with the radios, and the ratings are in the store under that rater; the admin part stays hidden."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from annotate_ui import listening as L
from db.annotation import User
from db.listening import ListeningRating
from db.models import AudioClip, Caption, text_hash

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")]
EVIL = "<img src=x onerror=alert(1)> a dog barks"
RATINGS = ((4, 2), (5, 3), (1, 1), (3, 5))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rater_rates_two_clips_in_the_browser(sqlite_store_url, audio_store):
    from playwright.sync_api import expect, sync_playwright

    from annotate_ui.app import launch, make_context
    from annotate_ui.auth import add_user

    ctx = make_context(sqlite_store_url, audio_store)
    with ctx.session() as s:
        add_user(s, "listener", "rater", "listen-pass-1")
        caps = [Caption(text=t, text_sha=text_hash(t), split="test") for t in (EVIL, "rain on a tin roof")]
        s.add_all(caps)
        s.flush()
        for gen in ("sysA", "sysB"):
            for k, cap in enumerate(caps):
                wave = 0.1 * np.sin(np.arange(8000) * (0.05 + 0.01 * k)).astype(np.float32)
                sha, rel = audio_store.put_wave(wave, 16000)
                s.add(AudioClip(sha256=sha, path=rel, sample_rate=16000, num_samples=8000, duration_s=0.5,
                                generator=gen, checkpoint_id="c", prompt=cap.text, caption_id=cap.id,
                                strategy="eval", slot=0))
        s.flush()
        sets = [L.clip_set_from_generator(s, f"set-{g}", generator=g) for g in ("sysA", "sysB")]
        L.create_listening_session(s, "browser-session", sets, n_prompts=2, n_gold=0)

    port = free_port()
    demo = launch(ctx, port=port, prevent_thread_lock=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_label("username").fill("listener")
            page.get_by_label("password").fill("listen-pass-1")
            page.get_by_role("button", name="Login").click()
            page.get_by_role("tab", name="Listening sessions").click()
            expect(page.locator("#listen-definitions")).to_contain_text("regardless of the text", timeout=20_000)
            expect(page.locator("#listen-admin")).to_be_hidden()
            page.locator("#listen-session input").click()
            page.get_by_role("option", name="browser-session").click()
            page.locator("#listen-start").click()
            shown = []
            for k, (ovl, rel) in enumerate(RATINGS):
                expect(page.locator("#listen-progress")).to_contain_text(f"Clip **{k + 1}** of 4".replace("**", ""),
                                                                         timeout=20_000)
                shown.append(page.locator("#listen-prompt").inner_text())
                assert page.locator("#listen-prompt img").count() == 0  # text, never markup
                page.locator("#listen-ovl").get_by_label(str(ovl), exact=True).check()
                page.locator("#listen-rel").get_by_label(str(rel), exact=True).check()
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
