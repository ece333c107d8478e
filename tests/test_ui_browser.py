"""A real browser (Debian's Chromium through Playwright, no browser download) against the launched app:
a rater logs in and votes on three pairs with the keyboard; an admin moves a slider and the counts
change; a rater has no admin tab."""

from __future__ import annotations

import re

from sqlalchemy import select

from builders.app import EVIL, running_app
from builders.browser import BROWSER_MARKS, login
from db.annotation import AuditAssignment, User

pytestmark = BROWSER_MARKS


def test_rater_votes_with_the_keyboard(sqlite_store_url, audio_store, browser):
    from playwright.sync_api import expect

    with running_app(sqlite_store_url, audio_store, n_pairs=4, n_raters=1, captions=[EVIL]) as (ctx, url, pairs, users):
        page = browser.new_page()
        login(page, url, "rater0")
        expect(page.locator("#audit-progress")).to_contain_text("remaining 4", timeout=30000)
        # the caption is shown as text: no script ran, no <img> was made
        expect(page.locator("#audit-caption")).to_contain_text("<script>window.__pwned=1</script>")
        assert page.evaluate("window.__pwned === undefined")
        assert page.locator("#audit-caption img").count() == 0
        # no admin tab for a rater
        assert page.get_by_role("tab", name="Threshold tuning").count() == 0
        page.locator("body").click(position={"x": 5, "y": 5})
        # both players load their clip from the audio route (the page's login cookie), and "a" plays A
        page.wait_for_function("['a', 'b'].every(s => (document.querySelector(`#audio-${s} audio`) || {}).readyState >= 1)",
                               timeout=30000)
        assert page.evaluate("document.querySelector('#audio-a audio').paused")
        page.keyboard.press("a")
        page.wait_for_function("!document.querySelector('#audio-a audio').paused || "
                               "document.querySelector('#audio-a audio').ended", timeout=10000)
        assert page.evaluate("document.querySelector('#audio-b audio').paused")
        for i, key in enumerate(("1", "2", "3")):
            page.keyboard.press("a")  # plays A (must not vote)
            page.keyboard.press(key)
            expect(page.locator("#audit-progress")).to_contain_text(f"Done {i + 1}", timeout=30000)
        with ctx.session() as s:
            rows = s.execute(select(AuditAssignment.verdict, User.name).join(User, User.id == AuditAssignment.user_id)
                             .where(AuditAssignment.state == "done").order_by(AuditAssignment.completed_at)).all()
        assert [tuple(r) for r in rows] == [("A", "rater0"), ("B", "rater0"), ("both_good", "rater0")]
        page.locator("#logout").click()
        page.get_by_label(re.compile("username", re.I)).wait_for(timeout=30000)


def test_admin_moves_a_slider_and_counts_change(sqlite_store_url, audio_store, browser):
    from playwright.sync_api import expect

    with running_app(sqlite_store_url, audio_store, n_pairs=40, n_raters=0) as (ctx, url, pairs, users):
        page = browser.new_page()
        login(page, url, "admin0")
        page.get_by_role("tab", name="Threshold tuning").click()
        total = page.locator("#tuning-total")
        expect(total).to_contain_text("of 40 candidate pairs", timeout=30000)
        before = int(re.search(r"Kept (\d+) of 40", total.inner_text()).group(1))
        slider = page.locator("#slider-beta1 input[type=range]")
        bb = slider.bounding_box()
        page.mouse.click(bb["x"] + 2, bb["y"] + bb["height"] / 2)  # move β1 to its far left (−1)
        expect(total).not_to_contain_text(f"Kept {before} of 40", timeout=30000)
        kept = int(re.search(r"Kept (\d+) of 40", total.inner_text()).group(1))
        assert kept > before
        assert float(page.locator("#slider-beta1 input[type=number]").input_value()) < 0
