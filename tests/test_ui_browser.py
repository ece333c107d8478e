"""A real browser (Debian's Chromium through Playwright, no browser download) against the launched app:
a rater logs in and votes on three pairs with the keyboard; a rater cannot vote before both clips
played; an admin moves a slider and the counts change; an admin excludes a rater in the Raters tab;
a rater has no admin tab."""

from __future__ import annotations

import re

from sqlalchemy import select, update

from builders.app import EVIL, running_app
from builders.browser import BROWSER_MARKS, login, play, play_both
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
        assert page.get_by_role("tab", name="Raters").count() == 0
        page.locator("body").click(position={"x": 5, "y": 5})
        # both players fetch their clip from the audio route (the page's login cookie) only when
        # played: nothing is loaded before; "a" plays A
        page.wait_for_function("['a', 'b'].every(s => document.querySelector(`#audio-${s} audio`))", timeout=30000)
        assert page.evaluate("document.querySelector('#audio-a audio').readyState") == 0
        assert page.evaluate("document.querySelector('#audio-a audio').paused")
        play(page, "a", "#audio-a audio")
        assert page.evaluate("document.querySelector('#audio-b audio').paused")
        page.wait_for_function("document.querySelector('#audio-a audio').ended", timeout=20000)
        for i, key in enumerate(("1", "2", "3")):
            play_both(page)  # "a" and "b" play the clips (they must not vote)
            page.keyboard.press(key)
            expect(page.locator("#audit-progress")).to_contain_text(f"Done {i + 1}", timeout=30000)
        with ctx.session() as s:
            rows = s.execute(select(AuditAssignment.verdict, User.name).join(User, User.id == AuditAssignment.user_id)
                             .where(AuditAssignment.state == "done").order_by(AuditAssignment.completed_at)).all()
        assert [tuple(r) for r in rows] == [("A", "rater0"), ("B", "rater0"), ("both_good", "rater0")]
        page.locator("#logout").click()
        page.get_by_label(re.compile("username", re.I)).wait_for(timeout=30000)


def test_rater_cannot_vote_before_playing_both_clips(sqlite_store_url, audio_store, browser):
    from playwright.sync_api import expect

    with running_app(sqlite_store_url, audio_store, n_pairs=2, n_raters=1) as (ctx, url, pairs, users):
        page = browser.new_page()
        login(page, url, "rater0")
        expect(page.locator("#audit-progress")).to_contain_text("remaining 2", timeout=30000)
        page.wait_for_function("document.querySelectorAll('#audit-players audio').length === 2", timeout=30000)
        aid = page.locator("#audit-assignment textarea, #audit-assignment input").first.input_value()
        # a click on a vote button before anything played: refused, the reason shown, nothing recorded
        page.locator("#vote-A").click()
        expect(page.locator("#audit-message")).to_contain_text("play clips A and B to the end before you vote",
                                                               timeout=30000)
        page.locator("body").click(position={"x": 5, "y": 5})
        play(page, "a", "#audio-a audio")
        page.wait_for_function("document.querySelector('#audio-a audio').ended", timeout=20000)
        page.keyboard.press("1")  # A played, B not yet
        expect(page.locator("#audit-message")).to_contain_text("play clip B to the end before you vote", timeout=30000)
        expect(page.locator("#audit-progress")).to_contain_text("Done 0")
        with ctx.session() as s:
            assert s.get(AuditAssignment, int(aid)).state == "assigned"
        page.locator("body").click(position={"x": 5, "y": 5})
        play(page, "b", "#audio-b audio")
        page.wait_for_function("document.querySelector('#audio-b audio').ended", timeout=20000)
        page.keyboard.press("1")
        expect(page.locator("#audit-progress")).to_contain_text("Done 1", timeout=30000)
        expect(page.locator("#audit-message")).to_contain_text("Recorded: A better")
        with ctx.session() as s:
            a = s.get(AuditAssignment, int(aid))
            assert (a.state, a.verdict) == ("done", "A") and a.time_on_task_ms is not None


def test_admin_excludes_a_rater_in_the_raters_tab(sqlite_store_url, audio_store, browser):
    from playwright.sync_api import expect

    from annotate_ui.logic import audit, playback
    from annotate_ui.logic.media_route import serve
    from curator.verdicts import verdict_counts

    with running_app(sqlite_store_url, audio_store, n_pairs=2, n_raters=1, overlap=1) as (ctx, url, pairs, (admin, r0)):
        with ctx.session() as s:  # rater0 voted at once on a pair (time on task under the clips' length)
            task = audit.next_assignment(s, r0)
            for side in ("a", "b"):
                serve(s, audio_store, ctx.copies, r0, playback.issue_grant(s, r0.id, "audit", (task.assignment_id, side)), None)
            audit.vote(s, r0, task.assignment_id, "A")
            s.execute(update(AuditAssignment).values(time_on_task_ms=10))
        page = browser.new_page()
        login(page, url, "admin0")
        page.get_by_role("tab", name="Raters").click()
        table = page.locator("#raters-table")
        expect(table).to_contain_text("rater0", timeout=30000)
        expect(table).to_contain_text("answers faster than the clips last (1 of 1)")
        page.locator("#raters-choice input").click()
        page.get_by_role("option", name="rater0").click()
        page.locator("#raters-exclude").click()
        expect(page.locator("#raters-message")).to_contain_text("Excluded rater0", timeout=30000)
        expect(table).to_contain_text("yes (by admin0)")
        with ctx.session() as s:
            assert s.scalar(select(User.excluded_by).where(User.name == "rater0")) == "admin0"
            assert verdict_counts(s) == {}


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
