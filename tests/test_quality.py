"""Quality control without Gradio, on SQLite and PostgreSQL: a vote or a rating needs its clips
played (the media route's record of the bytes it sent, never the browser's word), time on task,
the admin flags, and excluding a rater. Bad input: votes before playback, forged playback
records, replays and votes of an excluded rater are each refused with one clear line, and
nothing is recorded."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from annotate_ui.logic import audit, media, media_route, playback, quality
from annotate_ui.logic.auth import AuthUser
from annotate_ui.logic.listening import clipsets, design, queue, results
from curator.cli import app as curator_app
from curator.verdicts import verdict_counts
from db.errors import CuratorError
from db.annotation import AuditAssignment, User
from db.listening import ListeningItem, ListeningRating
from db.media import MediaGrant
from db.models import AudioClip, Caption, text_hash
from db.session import open_store
from builders.ui import PASSWORD, make_pool, make_users, play_item, play_pair


def _open(session, audio_store, n_pairs=2, n_raters=2, overlap=2):
    pairs = make_pool(session, audio_store, n_pairs)
    users = make_users(session, n_raters=n_raters, admins=1)
    audit.enqueue(session, pairs, reason="random", added_by="admin0", overlap=overlap)
    return pairs, users


def _state(session, aid):
    session.expire_all()
    a = session.get(AuditAssignment, aid)
    return a.state, a.verdict


def _fetch(session, audio_store, user, token, range_header=None, copies=None):
    return media_route.serve(session, audio_store, copies or media.CopyCache(), user, token, range_header)


def test_a_vote_needs_both_clips_played_to_the_end(session, audio_store):
    _, (admin, r0, r1) = _open(session, audio_store)
    task = audit.next_assignment(session, r0)
    aid = task.assignment_id
    # the page was shown (tokens issued, spectrograms fetched) but nothing was played
    tokens = {side: playback.issue_grant(session, r0.id, "audit", (aid, side)) for side in "ab"}
    for side in "ab":
        image = playback.issue_grant(session, r0.id, "audit", (aid, side), "spectrogram")
        assert _fetch(session, audio_store, r0, image).media_type == "image/png"  # an image is not playback
    with pytest.raises(CuratorError, match="play clips A and B to the end before you vote; nothing was recorded"):
        audit.vote(session, r0, aid, "A")
    # A whole (in two ranges, out of order), B all but its last byte
    total = _fetch(session, audio_store, r0, tokens["a"], "bytes=100-").total
    _fetch(session, audio_store, r0, tokens["a"], "bytes=0-99")
    total_b = _fetch(session, audio_store, r0, tokens["b"], "bytes=0-0").total  # each copy has its own size
    _fetch(session, audio_store, r0, tokens["b"], f"bytes=1-{total_b - 2}")
    with pytest.raises(CuratorError, match="play clip B to the end before you vote"):
        audit.vote(session, r0, aid, "A")
    assert _state(session, aid) == ("assigned", None)
    _fetch(session, audio_store, r0, tokens["b"], "bytes=-1")  # the last byte: B reached its end
    audit.vote(session, r0, aid, "A")
    assert _state(session, aid) == ("done", "A")
    rows = {g.side: g for g in session.scalars(select(MediaGrant).where(MediaGrant.token.in_(tokens.values())))}
    assert rows["a"].served_ranges == [[0, total]] and rows["a"].serves == 2 and rows["a"].bytes_served == total
    assert rows["b"].served_ranges == [[0, total_b]] and rows["b"].completed_at is not None and rows["b"].serves == 3
    assert rows["a"].what == "audio" and rows["a"].total_bytes == total


def test_a_configurable_share_is_enough(session, audio_store):
    _, (admin, r0, r1) = _open(session, audio_store)
    aid = audit.next_assignment(session, r0).assignment_id
    play_pair(session, audio_store, r0, aid, share=0.6)
    with pytest.raises(CuratorError, match="play clips A and B to the end"):
        audit.vote(session, r0, aid, "B")
    with pytest.raises(CuratorError, match="at least 70% of the way"):
        audit.vote(session, r0, aid, "B", min_played_share=0.7)
    audit.vote(session, r0, aid, "B", min_played_share=0.5)
    assert _state(session, aid) == ("done", "B")
    for bad in (0, 0.0, -0.5, 1.5, "1", None, True, float("nan")):
        with pytest.raises(CuratorError, match="min played share .* must be a number in \\(0, 1\\]"):
            playback.check_share(bad)


def test_forged_playback_records_are_refused(session, audio_store):
    """Nothing but the route's own record of bytes it sent to this rater's token counts."""
    _, (admin, r0, r1) = _open(session, audio_store, n_pairs=2, overlap=2)
    mine = audit.next_assignment(session, r0).assignment_id
    theirs = audit.next_assignment(session, r1).assignment_id
    assert session.get(AuditAssignment, mine).pair_id == session.get(AuditAssignment, theirs).pair_id
    # 1. another rater played the same pair in full: not this rater's playback
    play_pair(session, audio_store, r1, theirs)
    with pytest.raises(CuratorError, match="play clips A and B"):
        audit.vote(session, r0, mine, "A")
    # 2. another rater's token, a made-up one, a path: refused unread, nothing recorded
    token_r1 = playback.issue_grant(session, r1.id, "audit", (theirs, "a"))
    for token in (token_r1, "A" * 24, "../../etc/passwd", ""):
        with pytest.raises(CuratorError, match="no open clip of yours has this address"):
            _fetch(session, audio_store, r0, token)
    # 3. a range the route cannot satisfy sends nothing and records nothing
    token = playback.issue_grant(session, r0.id, "audit", (mine, "a"))
    assert _fetch(session, audio_store, r0, token, "bytes=999999-").status == 416
    assert session.scalar(select(MediaGrant.bytes_served).where(MediaGrant.token == token)) == 0
    # 4. the header and a few bytes are not the clip
    _fetch(session, audio_store, r0, token, "bytes=0-43")
    assert playback.played_shares(session, r0.id, assignment_id=mine)["a"] < 1
    # 5. a token issued (the page shown) for side B but never fetched
    playback.issue_grant(session, r0.id, "audit", (mine, "b"))
    assert "b" in playback.played_shares(session, r0.id, assignment_id=mine)
    assert playback.played_shares(session, r0.id, assignment_id=mine)["b"] == 0
    with pytest.raises(CuratorError, match="play clips A and B"):
        audit.vote(session, r0, mine, "A")
    assert _state(session, mine) == ("assigned", None)


def test_replays_are_refused_and_the_first_vote_stays(session, audio_store):
    _, (admin, r0, r1) = _open(session, audio_store)
    aid = audit.next_assignment(session, r0).assignment_id
    play_pair(session, audio_store, r0, aid)
    audit.vote(session, r0, aid, "both_good")
    for verdict in ("both_good", "A"):
        with pytest.raises(CuratorError, match="already has your vote \\(submitted twice\\?\\); nothing was changed"):
            audit.vote(session, r0, aid, verdict)
    assert _state(session, aid) == ("done", "both_good")


def test_time_on_task_runs_on_the_servers_clock(session, audio_store):
    _, (admin, r0, r1) = _open(session, audio_store)
    aid = audit.next_assignment(session, r0).assignment_id
    # served 7 s ago (as if the rater listened that long)
    session.execute(update(AuditAssignment).where(AuditAssignment.id == aid)
                    .values(served_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=7)))
    play_pair(session, audio_store, r0, aid)
    a = audit.vote(session, r0, aid, "A")
    assert 7000 <= a.time_on_task_ms < 7000 + 60_000
    # undo clears it; the next vote's time runs from the new showing
    audit.undo_last(session, r0)
    session.expire_all()
    assert session.get(AuditAssignment, aid).time_on_task_ms is None
    assert audit.vote(session, r0, aid, "B").time_on_task_ms < 7000


def _listening(session, audio_store, n_raters=2, seconds=0.05):
    caps = [Caption(text=f"a bell rings {i} times", text_sha=text_hash(f"a bell rings {i} times"), split="test")
            for i in range(3)]
    session.add_all(caps)
    session.flush()
    rng = np.random.default_rng(0)
    for gen in ("sysA", "sysB"):
        for cap in caps:
            sha, rel = audio_store.put_wave(rng.standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1, 16000)
            session.add(AudioClip(sha256=sha, path=rel, sample_rate=16000, num_samples=int(16000 * seconds),
                                  duration_s=seconds, generator=gen, checkpoint_id="c", prompt=cap.text,
                                  caption_id=cap.id, strategy="eval", slot=0))
    session.flush()
    sets = [clipsets.clip_set_from_generator(session, f"set-{g}", generator=g) for g in ("sysA", "sysB")]
    ls = design.create_listening_session(session, "qc", sets, n_prompts=3, n_gold=2)
    users = make_users(session, n_raters=n_raters, admins=0, prefix="listener")
    return ls, users


def test_a_rating_needs_its_clip_played_and_stores_time_on_task(session, audio_store):
    ls, (u, v) = _listening(session, audio_store)
    q = queue.next_item(session, ls.id, u.id, audio_store)
    with pytest.raises(CuratorError, match="play the clip to the end before you rate it; nothing was recorded"):
        queue.submit_rating(session, ls.id, u.id, q.item_id, 3, 3)
    # v played u's item? v has no such token; u's spectrogram does not count; another item of u does not count
    image = playback.issue_grant(session, u.id, "listen", (ls.id, q.item_id), "spectrogram")
    _fetch(session, audio_store, AuthUser(u.id, "u", "rater"), image)
    queue.next_item(session, ls.id, v.id, audio_store)
    play_item(session, audio_store, v.id, ls.id, q.item_id)
    other = next(i.id for i in ls.items if i.id != q.item_id)
    play_item(session, audio_store, u.id, ls.id, other)
    with pytest.raises(CuratorError, match="play the clip to the end"):
        queue.submit_rating(session, ls.id, u.id, q.item_id, 3, 3)
    assert session.scalar(select(ListeningRating.rated_at).where(ListeningRating.item_id == q.item_id,
                                                                 ListeningRating.user_id == u.id)) is None
    session.execute(update(ListeningRating).where(ListeningRating.item_id == q.item_id, ListeningRating.user_id == u.id)
                    .values(served_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=4)))
    play_item(session, audio_store, u.id, ls.id, q.item_id, share=0.5)
    queue.submit_rating(session, ls.id, u.id, q.item_id, 3, 3, min_played_share=0.5)
    row = session.scalar(select(ListeningRating).where(ListeningRating.item_id == q.item_id,
                                                       ListeningRating.user_id == u.id))
    assert (row.ovl, row.rel) == (3, 3) and 4000 <= row.time_on_task_ms < 64_000
    with pytest.raises(CuratorError, match="already has your rating"):  # the replay
        queue.submit_rating(session, ls.id, u.id, q.item_id, 3, 3, min_played_share=0.5)
    (mine,) = [x for x in results.rating_rows(session, ls.id) if x.user_id == u.id and x.item_id == q.item_id]
    assert mine.time_on_task_ms == row.time_on_task_ms  # exported with the rating


def _rate_all(session, audio_store, ls, user, rel_gold=1):
    while (q := queue.next_item(session, ls.id, user.id, audio_store)) is not None:
        play_item(session, audio_store, user.id, ls.id, q.item_id)
        gold = session.get(ListeningItem, q.item_id).is_gold
        queue.submit_rating(session, ls.id, user.id, q.item_id, 4, rel_gold if gold else 4)


def test_flags_fast_raters_and_gold_failures(session, audio_store):
    """A rater answering at once (time on task ≈ 0, the clips last 50 ms each) is flagged; one whose
    answers came later than the clips last is not; a gold failure is flagged."""
    _, (admin, fast, slow) = _open(session, audio_store, n_pairs=3, overlap=2)
    for user, wait_s in ((fast, None), (slow, 5)):
        while (task := audit.next_assignment(session, user)) is not None:
            if wait_s:
                session.execute(update(AuditAssignment).where(AuditAssignment.id == task.assignment_id).values(
                    served_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=wait_s)))
            play_pair(session, audio_store, user, task.assignment_id)
            audit.vote(session, user, task.assignment_id, "A")
    # the fast rater's answers take less than the 100 ms their two clips last
    session.execute(update(AuditAssignment).where(AuditAssignment.user_id == fast.id).values(time_on_task_ms=20))
    ls, (good, liar) = _listening(session, audio_store)
    for user in (good, liar):
        queue.ensure_assignments(session, ls.id, user.id)
    session.execute(update(ListeningRating).values(served_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)))
    _rate_all(session, audio_store, ls, good)
    _rate_all(session, audio_store, ls, liar, rel_gold=5)
    by = {r.name: r for r in quality.rater_quality(session)}
    assert set(by) == {"rater0", "rater1", "listener0", "listener1"}  # admin0 answered nothing
    assert by["rater0"].votes == 3 and by["rater0"].fast == 3 and by["rater0"].timed == 3
    assert by["rater0"].flags == ["answers faster than the clips last (3 of 3)"]
    assert by["rater1"].fast == 0 and not by["rater1"].flagged and by["rater1"].median_vote_s >= 5
    assert not by["listener0"].flagged and by["listener0"].ratings == 8 and by["listener0"].gold_rated == 2
    assert by["listener1"].flagged and by["listener1"].gold_failed == ["qc (gold mean REL 5.0 ≥ 3)"]
    assert by["listener1"].flags == ["fails the gold items: qc (gold mean REL 5.0 ≥ 3)"]


def test_excluding_a_rater_drops_their_votes_everywhere_and_refuses_new_ones(session, audio_store):
    pairs, (admin, r0, r1) = _open(session, audio_store, n_pairs=3, overlap=2)
    r2 = make_users(session, n_raters=1, admins=0, prefix="late")[0]
    for user, verdict in ((r0, "both_good"), (r1, "both_bad")):
        while (task := audit.next_assignment(session, user)) is not None:
            play_pair(session, audio_store, user, task.assignment_id)
            audit.vote(session, user, task.assignment_id, verdict)
    before = verdict_counts(session)
    assert sum(c.votes for c in before.values()) == 6 and audit.vote_arrays(session).tie_pair_id.size == 6
    assert audit.next_assignment(session, r2) is None  # every slot taken
    held = audit.undo_last(session, r1)  # r1 has an open assignment when excluded
    assert held is not None
    quality.exclude_rater(session, "rater1", by="admin0")
    # r1's votes count nowhere: verdicts (training, exports), the threshold view, the queue status
    after = verdict_counts(session)
    assert sum(c.votes for c in after.values()) == 3 and all(c.both_bad == 0 for c in after.values())
    assert audit.vote_arrays(session).tie_pair_id.size == 3 and audit.vote_arrays(session).n_both_bad == 0
    assert audit.queue_status(session).votes == 3
    # new votes refused (their open one went back to the queue), and they get no new pair
    with pytest.raises(CuratorError, match="is not assigned to you|skipped"):
        audit.vote(session, r1, held.assignment_id, "A")
    assert audit.next_assignment(session, r1) is None
    # the slots of r1's votes went back: another rater fills those pairs
    filled = 0
    while (task := audit.next_assignment(session, r2)) is not None:
        play_pair(session, audio_store, r2, task.assignment_id)
        audit.vote(session, r2, task.assignment_id, "both_bad")
        filled += 1
    assert filled == 3
    # the rows are kept: including r1 again brings their votes back
    quality.include_rater(session, "rater1")
    assert sum(c.votes for c in verdict_counts(session).values()) == 3 + 2 + 3  # r1's undone vote is gone
    with pytest.raises(CuratorError, match="is not excluded"):
        quality.include_rater(session, "rater1")
    quality.exclude_rater(session, "rater0", by="admin0")
    with pytest.raises(CuratorError, match="already excluded \\(by admin0\\)"):
        quality.exclude_rater(session, "rater0", by="admin0")
    with pytest.raises(CuratorError, match="does not exist"):
        quality.exclude_rater(session, "nobody", by="admin0")


def test_an_excluded_raters_open_vote_is_refused(session, audio_store):
    _, (admin, r0, r1) = _open(session, audio_store)
    aid = audit.next_assignment(session, r0).assignment_id
    play_pair(session, audio_store, r0, aid)
    # excluded between the page being shown and the vote (the assignment reopened by hand, as a
    # concurrent request could find it): the vote is refused with the reason
    quality.exclude_rater(session, "rater0", by="admin0")
    session.execute(update(AuditAssignment).where(AuditAssignment.id == aid)
                    .values(state="assigned", slot=None, skip_reason=None, completed_at=None))
    with pytest.raises(CuratorError, match="an admin has excluded your answers from the results; nothing was recorded"):
        audit.vote(session, r0, aid, "A")
    assert _state(session, aid) == ("assigned", None)


def test_excluded_listeners_are_left_out_of_the_results(session, audio_store):
    ls, (good, other) = _listening(session, audio_store)
    _rate_all(session, audio_store, ls, good)
    q = queue.next_item(session, ls.id, other.id, audio_store)
    play_item(session, audio_store, other.id, ls.id, q.item_id)
    queue.submit_rating(session, ls.id, other.id, q.item_id, 1, 1)
    assert {r.name for r in results.session_results(session, ls.id).raters if not r.excluded} == {"listener0", "listener1"}
    quality.exclude_rater(session, "listener1", by="admin")
    res = results.session_results(session, ls.id)
    (out,) = [r for r in res.raters if r.name == "listener1"]
    assert out.excluded and out.excluded_by_admin and res.excluded_raters == ["listener1"]
    assert sum(s.n_ratings for s in res.systems) == 6  # only listener0's six real clips
    assert queue.next_item(session, ls.id, other.id, audio_store) is None  # nothing more to rate
    q2 = next(i.id for i in ls.items if i.id != q.item_id)  # a page still open from before the exclusion
    play_item(session, audio_store, other.id, ls.id, q2)
    with pytest.raises(CuratorError, match="an admin has excluded your answers"):
        queue.submit_rating(session, ls.id, other.id, q2, 2, 2)


def test_ranges_of_one_token_from_several_processes_are_all_kept(store_url, audio_store):
    """Two server processes share grants: a token issued by one is served by the other (its own copy
    cache, the same bytes), and ranges recorded at once from several sessions all land."""
    factory = open_store(store_url)
    with factory() as s:
        _, (admin, r0, r1) = _open(s, audio_store)
        aid = audit.next_assignment(s, r0).assignment_id
        token = playback.issue_grant(s, r0.id, "audit", (aid, "a"))
        s.commit()
    copies = [media.CopyCache(), media.CopyCache()]  # one per "process"
    with factory() as s:
        whole = [_fetch(s, audio_store, r0, token, None, c).body for c in copies]
        s.rollback()  # (the record of these two is not kept)
    assert whole[0] == whole[1]
    total = len(whole[0])
    step = -(-total // 8)
    errors, barrier = [], threading.Barrier(8)

    def fetch(k):
        try:
            barrier.wait()
            with factory() as s:
                got = _fetch(s, audio_store, r0, token, f"bytes={k * step}-{min(total, (k + 1) * step) - 1}",
                             copies[k % 2])
                s.commit()
                assert got.status == 206
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with factory() as s:
        g = s.scalar(select(MediaGrant).where(MediaGrant.token == token))
        assert g.served_ranges == [[0, total]] and g.serves == 8 and g.bytes_served == total


def test_cli_excludes_and_includes_a_rater(store_url):
    runner = CliRunner()
    with open_store(store_url)() as s:
        make_users(s, n_raters=1, admins=0)
        s.commit()
    r = runner.invoke(curator_app, ["users", "exclude", "rater0", "--by", "boss", "--db", store_url])
    assert r.exit_code == 0 and "excluded rater rater0" in r.output, r.output
    r = runner.invoke(curator_app, ["users", "list", "--db", store_url])
    assert "rater0\trater\tactive, excluded" in r.output
    r = runner.invoke(curator_app, ["users", "exclude", "rater0", "--db", store_url])
    assert r.exit_code == 2 and r.output.strip().splitlines() == ["error: rater 'rater0' is already excluded (by boss)"]
    r = runner.invoke(curator_app, ["users", "include", "rater0", "--db", store_url])
    assert r.exit_code == 0 and "rater rater0 counts again" in r.output
    with open_store(store_url)() as s:
        assert s.scalar(select(User.excluded_at).where(User.name == "rater0")) is None
    r = runner.invoke(curator_app, ["users", "include", "ghost", "--db", store_url])
    assert r.exit_code == 2 and "user 'ghost' does not exist" in r.output


def test_the_audio_routes_record_over_real_http(store_url, audio_store):
    """Loopback HTTP: the bytes the route sent (range requests included) decide; a claim in the
    request changes nothing; the vote then goes through once, and its replay is refused."""
    import httpx

    from builders.app import player_urls, running_app, spectrogram_urls

    with running_app(store_url, audio_store, n_pairs=2, n_raters=1, overlap=1) as (ctx, url, pairs, users):
        with httpx.Client(base_url=url, timeout=20) as h:
            h.post("/login", data={"username": "rater0", "password": PASSWORD}).raise_for_status()
            run = lambda name, *data, **kw: h.post(f"/gradio_api/run/{name}",  # noqa: E731
                                                   json={"data": list(data), "session_hash": "q"}, **kw)
            out = run("next").json()["data"]
            aid, urls, images = out[0], player_urls(out[2]), spectrogram_urls(out[2])
            assert 'preload="none"' in out[2]  # the page asks for a clip only when it is played
            for u in images.values():  # the spectrograms show: not playback
                assert h.get("/" + u).status_code == 200
            refused = lambda r: r.json()["data"][4] if r.status_code == 200 else r.text  # noqa: E731
            r = run("vote_A", aid, "")
            assert "⚠ play clips A and B to the end before you vote" in refused(r)
            # claims in the request (an extra field, a header) are not a playback record
            r = run("vote_A", aid, "", {"played": ["a", "b"], "share": 1.0}, headers={"X-Played": "a,b"})
            assert r.status_code != 200 or "play clips A and B" in refused(r)
            r = run("vote_A", aid, "", headers={"X-Played": "a,b", "Range": "bytes=0-"})
            assert "play clips A and B" in refused(r)
            # A in two range requests, B only its last ten bytes
            first = h.get("/" + urls["a"], headers={"Range": "bytes=0-99"})
            rest = h.get("/" + urls["a"], headers={"Range": "bytes=100-"})
            assert (first.status_code, rest.status_code) == (206, 206)
            total_a = int(rest.headers["content-range"].rsplit("/", 1)[1])
            tail = h.get("/" + urls["b"], headers={"Range": "bytes=-10"})
            assert tail.status_code == 206 and len(tail.content) == 10
            assert h.get("/" + urls["b"], headers={"Range": "bytes=999999-"}).status_code == 416
            r = run("vote_A", aid, "")
            assert "play clip B to the end" in refused(r)
            with ctx.session() as s:
                assert s.get(AuditAssignment, int(aid)).state == "assigned"  # nothing recorded
                g = {x.side: x for x in s.scalars(select(MediaGrant).where(
                    MediaGrant.assignment_id == int(aid), MediaGrant.what == "audio"))}
                assert g["a"].served_ranges == [[0, total_a]] and g["a"].completed_at is not None
                total_b = g["b"].total_bytes
                assert g["b"].served_ranges == [[total_b - 10, total_b]] and g["b"].serves == 1
            assert h.get("/" + urls["b"], headers={"Range": "bytes=0-"}).status_code == 206
            r = run("vote_A", aid, "")
            assert r.status_code == 200 and r.json()["data"][4].startswith("Recorded")
            r = run("vote_A", aid, "")  # the replay
            assert "already has your vote" in refused(r)
        with ctx.session() as s:
            a = s.get(AuditAssignment, int(aid))
            assert (a.state, a.verdict) == ("done", "A") and a.time_on_task_ms is not None
        # nobody logged in cannot read (or play) that token
        with httpx.Client(base_url=url, timeout=20) as anon:
            assert anon.get("/" + urls["a"]).status_code == 401
