"""The blind pair audit without Gradio, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import func, select

from annotate_ui.logic import audit
from annotate_ui.logic.auth import AuthUser
from curator.verdicts import verdict_counts
from db.errors import CuratorError
from db.annotation import AuditAssignment, AuditItem
from db.models import AudioClip, Pair
from db.session import open_store
from builders.ui import make_pool, make_users, play_pair


def _vote_all(session, user, verdict="A", rng=None, limit=1000, *, audio_store):
    n = 0
    while n < limit:
        task = audit.next_assignment(session, user, rng=rng)
        if task is None:
            return n
        play_pair(session, audio_store, user, task.assignment_id)
        audit.vote(session, user, task.assignment_id, verdict)
        n += 1
    return n


def test_overlap_and_never_twice(session, audio_store):
    pairs = make_pool(session, audio_store, 4)
    users = make_users(session, n_raters=5, admins=0)
    assert audit.enqueue(session, pairs, reason="random", added_by="t", overlap=3) == 4
    assert audit.enqueue(session, pairs, reason="random", added_by="t", overlap=3) == 0  # already queued
    done = [_vote_all(session, u, audio_store=audio_store) for u in users]
    session.commit()
    assert sum(done) == 4 * 3
    assert done[:4] == [4, 4, 4, 0] or sorted(done, reverse=True)[0] == 4
    per_pair = dict(session.execute(select(AuditAssignment.pair_id, func.count()).group_by(AuditAssignment.pair_id)).all())
    assert per_pair == {p: 3 for p in pairs}
    distinct = session.scalar(select(func.count()).select_from(
        select(AuditAssignment.pair_id, AuditAssignment.user_id).distinct().subquery()))
    assert distinct == 12
    assert all(audit.next_assignment(session, u) is None for u in users)
    assert audit.progress(session, users[0]) == audit.Progress(done=done[0], skipped=0, remaining=0)


def test_open_assignment_is_resumed_not_duplicated(session, audio_store):
    pairs = make_pool(session, audio_store, 3)
    (u,) = make_users(session, n_raters=1, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t")
    t1 = audit.next_assignment(session, u)
    t2 = audit.next_assignment(session, u)
    assert t1.assignment_id == t2.assignment_id
    assert session.scalar(select(func.count()).select_from(AuditAssignment)) == 1
    assert t1.progress.remaining == 3  # the open one + two never given


def test_priority_order(session, audio_store):
    pairs = make_pool(session, audio_store, 3)
    (u,) = make_users(session, n_raters=1, admins=0)
    audit.enqueue(session, pairs, reason="uncertain", added_by="t", priorities=[0.1, 0.9, 0.5])
    order = []
    while (task := audit.next_assignment(session, u)) is not None:
        order.append(session.get(AuditAssignment, task.assignment_id).pair_id)
        play_pair(session, audio_store, u, task.assignment_id)
        audit.vote(session, u, task.assignment_id, "both_good")
    assert order == [pairs[1], pairs[2], pairs[0]]


def test_blind_side_is_random_recorded_and_resolved(session, audio_store):
    pairs = make_pool(session, audio_store, 40)
    (u,) = make_users(session, n_raters=1, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t")
    rng = random.Random(3)
    sides = []
    for _ in pairs:
        task = audit.next_assignment(session, u, rng=rng)
        a = session.get(AuditAssignment, task.assignment_id)
        pair = session.get(Pair, a.pair_id)
        assert (task.clip_a, task.clip_b) == ((pair.winner_clip_id, pair.loser_clip_id) if a.a_is_winner
                                              else (pair.loser_clip_id, pair.winner_clip_id))
        play_pair(session, audio_store, u, task.assignment_id)
        audit.vote(session, u, task.assignment_id, "A")
        session.refresh(a)
        assert a.verdict == "A" and a.outcome == ("winner" if a.a_is_winner else "loser")
        sides.append(a.a_is_winner)
    assert 5 < sum(sides) < 35  # both sides drawn (p of failing ≈ 1e-6)
    counts = verdict_counts(session)
    assert sum(c.agree for c in counts.values()) == sum(sides)
    assert sum(c.disagree for c in counts.values()) == len(sides) - sum(sides)


def test_task_hides_scores_and_strategy(session, audio_store):
    pairs = make_pool(session, audio_store, 1)
    (u,) = make_users(session, n_raters=1, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t")
    task = audit.next_assignment(session, u)
    # the stored files of the two sides ride along (server side: the page gets opaque media URLs only)
    assert set(vars(task)) == {"assignment_id", "caption", "clip_a", "clip_b", "progress", "paths"}


def test_undo_reopens_last_vote(session, audio_store):
    pairs = make_pool(session, audio_store, 3)
    (u,) = make_users(session, n_raters=1, admins=0)
    assert audit.undo_last(session, u) is None
    audit.enqueue(session, pairs, reason="random", added_by="t")
    t1 = audit.next_assignment(session, u)
    play_pair(session, audio_store, u, t1.assignment_id)
    audit.vote(session, u, t1.assignment_id, "B", note="too loud")
    t2 = audit.next_assignment(session, u)
    assert t2.assignment_id != t1.assignment_id
    back = audit.undo_last(session, u)
    assert back.assignment_id == t1.assignment_id and back.clip_a == t1.clip_a  # same blind sides
    a1 = session.get(AuditAssignment, t1.assignment_id)
    assert (a1.state, a1.verdict, a1.outcome, a1.note) == ("assigned", None, None, None)
    assert audit.next_assignment(session, u).assignment_id == t1.assignment_id  # the undone pair comes first
    audit.vote(session, u, t1.assignment_id, "A")
    assert audit.next_assignment(session, u).assignment_id == t2.assignment_id  # then the one left open
    assert verdict_counts(session)[a1.pair_id].votes == 1


def test_skip_frees_the_slot_for_another_rater(session, audio_store):
    pairs = make_pool(session, audio_store, 1)
    u1, u2, u3 = make_users(session, n_raters=3, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t", overlap=1)
    t = audit.next_assignment(session, u1)
    assert audit.next_assignment(session, u2) is None  # overlap 1: taken
    audit.skip(session, u1, t.assignment_id, "audio missing")
    assert audit.next_assignment(session, u1) is None  # never again to u1
    t2 = audit.next_assignment(session, u2)
    assert t2 is not None and audit.next_assignment(session, u3) is None
    counts = verdict_counts(session)
    assert counts[pairs[0]].skipped == 1 and counts[pairs[0]].votes == 0
    assert audit.progress(session, u1).skipped == 1


def test_vote_refusals_change_nothing(session, audio_store):
    pairs = make_pool(session, audio_store, 2)
    u1, u2 = make_users(session, n_raters=2, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t")
    t1 = audit.next_assignment(session, u1)
    with pytest.raises(CuratorError, match="not assigned to you"):
        audit.vote(session, u2, t1.assignment_id, "A")  # someone else's pair
    with pytest.raises(CuratorError, match="not assigned to you"):
        audit.vote(session, u1, 999999, "A")
    with pytest.raises(CuratorError, match="not an assignment id"):
        audit.vote(session, u1, "../../etc/passwd", "A")
    with pytest.raises(CuratorError, match="verdict"):
        audit.vote(session, u1, t1.assignment_id, "C")
    with pytest.raises(CuratorError, match="at most"):
        audit.vote(session, u1, t1.assignment_id, "A", note="x" * (audit.MAX_NOTE_LEN + 1))
    play_pair(session, audio_store, u1, t1.assignment_id)
    audit.vote(session, u1, t1.assignment_id, "A", note="  ok  ")
    with pytest.raises(CuratorError, match="already has your vote"):
        audit.vote(session, u1, t1.assignment_id, "B")  # replayed submit
    with pytest.raises(CuratorError, match="already has your vote"):
        audit.skip(session, u1, t1.assignment_id)
    a = session.get(AuditAssignment, t1.assignment_id)
    assert (a.state, a.verdict, a.note) == ("done", "A", "ok")
    assert session.scalar(select(func.count()).where(AuditAssignment.state == "done")) == 1


def test_missing_audio_is_one_clear_line_and_skippable(session, audio_store):
    pairs = make_pool(session, audio_store, 1)
    (u,) = make_users(session, n_raters=1, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t")
    task = audit.next_assignment(session, u)
    path, media_type = audit.assignment_audio(session, audio_store, u, task.assignment_id, "a")
    assert path.stat().st_size > 0 and media_type == "audio/wav"
    assert audit.audio_problems(session, audio_store, task) == {}
    clip = session.get(AudioClip, task.clip_b)
    audio_store.resolve(clip.path).unlink()
    assert list(audit.audio_problems(session, audio_store, task)) == ["b"]
    with pytest.raises(CuratorError) as err:
        audit.assignment_audio(session, audio_store, u, task.assignment_id, "b")
    assert "press Skip" in str(err.value) and clip.path not in str(err.value) and "\n" not in str(err.value)
    audit.skip(session, u, task.assignment_id, "audio missing")
    assert audit.next_assignment(session, u) is None


@pytest.mark.parametrize("trick", ["../../../../etc/passwd", "/etc/passwd", "00/../../outside.wav"])
def test_path_tricks_in_clip_paths_are_refused(session, audio_store, trick):
    pairs = make_pool(session, audio_store, 1)
    (u,) = make_users(session, n_raters=1, admins=0)
    clip = session.get(AudioClip, session.get(Pair, pairs[0]).winner_clip_id)
    clip.path = trick
    session.flush()
    audit.enqueue(session, pairs, reason="random", added_by="t")
    task = audit.next_assignment(session, u)
    side = "a" if task.clip_a == clip.id else "b"
    assert side in audit.audio_problems(session, audio_store, task)
    with pytest.raises(CuratorError, match="press Skip"):
        audit.assignment_audio(session, audio_store, u, task.assignment_id, side)


def test_enqueue_refuses_bad_input(session, audio_store):
    pairs = make_pool(session, audio_store, 1)
    with pytest.raises(CuratorError, match="does not exist"):
        audit.enqueue(session, [pairs[0], 424242], reason="random", added_by="t")
    for bad in (0, 51, 2.5, True):
        with pytest.raises(CuratorError, match="overlap"):
            audit.enqueue(session, pairs, reason="random", added_by="t", overlap=bad)
    with pytest.raises(CuratorError, match="reason"):
        audit.enqueue(session, pairs, reason="<script>", added_by="t")
    assert session.scalar(select(func.count()).select_from(AuditItem)) == 0


def test_concurrent_assignment_respects_overlap(store_url, audio_store):
    """8 raters in threads, each with its own session, race for 12 pairs × overlap 3."""
    factory = open_store(store_url)
    with factory() as s:
        pairs = make_pool(s, audio_store, 12)
        users = make_users(s, n_raters=8, admins=0)
        audit.enqueue(s, pairs, reason="random", added_by="t", overlap=3)
        s.commit()
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users))

    def rater(user: AuthUser) -> None:
        try:
            barrier.wait()
            while True:
                with factory() as s:
                    task = audit.next_assignment(s, user)
                    s.commit()
                    if task is None:
                        return
                    play_pair(s, audio_store, user, task.assignment_id)
                    audit.vote(s, user, task.assignment_id, "A")
                    s.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=rater, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with factory() as s:
        rows = s.execute(select(AuditAssignment.pair_id, AuditAssignment.user_id, AuditAssignment.state)).all()
    assert len(rows) == 36 and all(state == "done" for *_, state in rows)
    assert len({(p, u) for p, u, _ in rows}) == 36
    per_pair = {}
    for p, *_ in rows:
        per_pair[p] = per_pair.get(p, 0) + 1
    assert per_pair == {p: 3 for p in pairs}


def test_lost_race_takes_the_next_free_slot(store_url, audio_store, monkeypatch):
    """A rater who reads slot 0 as free but loses it to another rater still gets slot 1.

    (The CI failure this guards: a lost race used to give up the whole pair, so with 8 raters a
    pair could end below its overlap while every rater believed the queue was empty.)
    """
    factory = open_store(store_url)
    with factory() as s:
        pairs = make_pool(s, audio_store, 1, write_audio=False)
        me, rival = make_users(s, n_raters=2, admins=0)
        audit.enqueue(s, pairs, reason="random", added_by="t", overlap=2)
        s.commit()
    real_insert = audit._insert_ignore
    raced = []

    def insert_after_rival(session, values):
        if not raced:  # the rival commits slot 0 between our read and our insert
            raced.append(True)
            with factory() as other:
                assert audit.next_assignment(other, rival) is not None
                other.commit()
        return real_insert(session, values)

    monkeypatch.setattr(audit, "_insert_ignore", insert_after_rival)
    with factory() as s:
        task = audit.next_assignment(s, me)
        s.commit()
    assert raced and task is not None
    with factory() as s:
        rows = sorted(s.execute(select(AuditAssignment.user_id, AuditAssignment.slot)).all(), key=lambda r: r[1])
    assert rows == [(rival.id, 0), (me.id, 1)]


def test_verdict_counts_filter_by_pair(session, audio_store):
    pairs = make_pool(session, audio_store, 3)
    users = make_users(session, n_raters=3, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t")
    for u, verdict in zip(users, ("both_good", "both_bad", "A")):
        _vote_all(session, u, verdict, audio_store=audio_store)
    counts = verdict_counts(session, [pairs[0]])
    assert list(counts) == [pairs[0]]
    c = counts[pairs[0]]
    assert (c.both_good, c.both_bad, c.agree + c.disagree, c.votes) == (1, 1, 1, 3)
    # open assignments do not count
    (late,) = make_users(session, n_raters=1, admins=0, prefix="late")
    audit.enqueue(session, pairs, reason="random", added_by="t")
    assert verdict_counts(session)[pairs[0]].votes == 3


def test_progress_of_a_new_assignment_matches_a_fresh_count(session, audio_store):
    """next_assignment counts the open items in the same scan that picks the candidates; the
    progress it reports must equal a fresh progress() at every step, with other raters taking slots."""
    pairs = make_pool(session, audio_store, 6)
    users = make_users(session, n_raters=3, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t", overlap=2)
    rng = random.Random(1)
    for step in range(30):
        u = users[rng.randrange(3)]
        task = audit.next_assignment(session, u, rng=rng)
        if task is None:
            assert audit.progress(session, u).remaining == 0
            continue
        assert task.progress == audit.progress(session, u), step
        if rng.random() < 0.2:
            audit.skip(session, u, task.assignment_id)
        else:
            play_pair(session, audio_store, u, task.assignment_id)
            audit.vote(session, u, task.assignment_id, "both_good")


def test_assignment_audio_is_the_owners_side_only(session, audio_store):
    pairs = make_pool(session, audio_store, 2)
    u, other = make_users(session, n_raters=2, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t")
    task = audit.next_assignment(session, u)
    paths = dict(session.execute(select(AudioClip.id, AudioClip.path)).all())
    for side, clip in (("a", task.clip_a), ("b", task.clip_b)):
        path, media_type = audit.assignment_audio(session, audio_store, u, task.assignment_id, side)
        assert path == audio_store.resolve(paths[clip]) and media_type == "audio/wav"
    for who, aid, side in ((other, task.assignment_id, "a"), (u, task.assignment_id, "../a"), (u, 10**9, "a")):
        with pytest.raises(CuratorError):
            audit.assignment_audio(session, audio_store, who, aid, side)
    assert audit.audio_problems(session, audio_store, task) == {}
    play_pair(session, audio_store, u, task.assignment_id)  # both sides played before B breaks
    audio_store.resolve(paths[task.clip_b]).write_bytes(b"not audio at all")  # corrupt: refused like a missing file
    assert list(audit.audio_problems(session, audio_store, task)) == ["b"]
    with pytest.raises(CuratorError, match="side B: the audio file is missing or unreadable"):
        audit.assignment_audio(session, audio_store, u, task.assignment_id, "b")
    audit.vote(session, u, task.assignment_id, "A")
    with pytest.raises(CuratorError, match="no open pair"):
        audit.assignment_audio(session, audio_store, u, task.assignment_id, "a")


def test_undo_reaches_only_the_last_vote_once_and_within_the_window(session, audio_store):
    pairs = make_pool(session, audio_store, 6)
    (u,) = make_users(session, n_raters=1, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t")
    voted = []
    for _ in range(3):
        t = audit.next_assignment(session, u)
        play_pair(session, audio_store, u, t.assignment_id)
        audit.vote(session, u, t.assignment_id, "A")
        voted.append(t.assignment_id)
    audit.next_assignment(session, u)
    assert audit.undo_last(session, u).assignment_id == voted[-1]
    # the probe's three undos: the second and third change nothing
    assert audit.undo_last(session, u) is None and audit.undo_last(session, u) is None
    states = {a.id: a.state for a in session.scalars(select(AuditAssignment))}
    assert [states[i] for i in voted] == ["done", "done", "assigned"]
    audit.vote(session, u, voted[-1], "B")  # judged again: that vote is the last one now
    assert audit.undo_last(session, u).assignment_id == voted[-1]
    audit.vote(session, u, voted[-1], "B")
    # a skip after the vote: the vote is no longer the last thing done
    t = audit.next_assignment(session, u)
    audit.skip(session, u, t.assignment_id)
    assert audit.undo_last(session, u) is None
    # past the window: nothing
    t = audit.next_assignment(session, u)
    play_pair(session, audio_store, u, t.assignment_id)
    audit.vote(session, u, t.assignment_id, "A")
    assert audit.undo_last(session, u, window_s=0.0) is None
    assert session.get(AuditAssignment, t.assignment_id).state == "done"


def test_open_assignments_expire_after_the_lease(session, audio_store):
    import datetime as dt

    pairs = make_pool(session, audio_store, 1)
    u1, u2 = make_users(session, n_raters=2, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t", overlap=1)
    t = audit.next_assignment(session, u1)
    assert audit.next_assignment(session, u2) is None  # the slot is held
    a = session.get(AuditAssignment, t.assignment_id)
    a.served_at = a.assigned_at = a.served_at - dt.timedelta(minutes=31)  # the tab was left open
    session.flush()
    assert audit.next_assignment(session, u2, lease_s=3600) is None  # a longer lease: still held
    t2 = audit.next_assignment(session, u2, lease_s=30 * 60)
    assert t2 is not None and t2.assignment_id != t.assignment_id  # back in the queue, to another rater
    session.refresh(a)
    assert (a.state, a.slot, a.skip_reason) == ("skipped", None, audit.LEASE_EXPIRED)
    with pytest.raises(CuratorError, match="waited too long for your vote and went back to the queue"):
        audit.vote(session, u1, t.assignment_id, "A")
    assert verdict_counts(session)[pairs[0]].votes == 0


def test_disabling_a_rater_frees_their_open_slots(session, audio_store):
    from annotate_ui.logic.auth import disable_user

    pairs = make_pool(session, audio_store, 2)
    u1, u2 = make_users(session, n_raters=2, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t", overlap=1)
    held = [audit.next_assignment(session, u1)]
    play_pair(session, audio_store, u1, held[0].assignment_id)
    audit.vote(session, u1, held[0].assignment_id, "A")
    open_one = audit.next_assignment(session, u1)
    assert audit.next_assignment(session, u2) is None
    disable_user(session, u1.name)
    t2 = audit.next_assignment(session, u2)
    assert t2 is not None and session.get(AuditAssignment, open_one.assignment_id).skip_reason == "account disabled"
    assert session.get(AuditAssignment, held[0].assignment_id).state == "done"  # votes are kept
