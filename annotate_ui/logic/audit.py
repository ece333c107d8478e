"""The blind pair audit: queue, assignment with overlap, votes, undo, skip.

Every function takes the caller's Session and flushes; the caller (a UI handler, the CLI, a test)
commits. The functions never trust an identity or a path from the browser: the user is an
`AuthUser` the server resolved from the login, assignments are checked against that user, and
clips are named by id and resolved through the audio store.

Assignment under concurrency (SQLite and PostgreSQL alike): a new assignment is an
``INSERT ... ON CONFLICT DO NOTHING`` of (pair_id, user_id, slot) into a table where both
(pair_id, user_id) and (pair_id, slot) are unique and slot < the item's overlap. Two raters
racing for the same slot cannot both win: the loser's insert does nothing, it re-reads the
pair's slots and takes the next free one (or moves on when none is left), so no pair is ever over
its overlap, none goes twice to one rater, and no free slot is given up because of a lost race.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from sqlalchemy import and_, bindparam, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from annotate_ui.logic import playback
from annotate_ui.logic.auth import AuthUser
from curator.audio import AudioStore
from curator.validate import is_int
from curator.verdicts import COUNTED_RATER
from db.errors import CuratorError
from db.annotation import DEFAULT_OVERLAP, VERDICTS, AuditAssignment, AuditItem, User
from db.models import AudioClip, Caption, Pair, utcnow

log = logging.getLogger(__name__)

MAX_NOTE_LEN = 2000
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL
CANDIDATES_PER_TRY = 16  # candidates fetched per round of next_assignment
QUEUE_REASONS = ("uncertain", "random", "manual")
DEFAULT_LEASE_S = 30 * 60.0  # an open assignment not voted within this goes back to the queue
UNDO_WINDOW_S = 120.0  # undo reaches the rater's last vote for this long after it
LEASE_EXPIRED = "lease expired"
VERDICT_LABELS = {"A": "A better", "B": "B better", "both_good": "both good", "both_bad": "both bad"}
EXCLUDED = "an admin has excluded your answers from the results; nothing was recorded"


def is_excluded(session: Session, user_id: int) -> bool:
    """Has an admin excluded this rater (annotate_ui/logic/quality.py)?"""
    return session.scalar(select(User.excluded_at).where(User.id == int(user_id))) is not None


# --------------------------------------------------------------------------------------------
# What a rater sees
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    done: int
    skipped: int
    remaining: int  # pairs of the queue this rater could still be given


@dataclass(frozen=True)
class AuditTask:
    """One pair as one rater sees it. clip ids stay on the server (the UI sends audio, not ids)."""

    assignment_id: int
    caption: str  # raw text; the UI escapes it
    clip_a: int
    clip_b: int
    progress: Progress
    paths: tuple[str, str] | None = None  # stored files of sides A and B (server side only), read with the task


def _task(session: Session, assignment_id: int, pair_id: int, a_is_winner: bool, user: AuthUser,
          open_count: int | None = None) -> AuditTask:
    win, lose, text, win_path, lose_path = session.execute(_TASK, {"pid": pair_id}).one()
    if a_is_winner:
        clip_a, clip_b, paths = win, lose, (win_path, lose_path)
    else:
        clip_a, clip_b, paths = lose, win, (lose_path, win_path)
    return AuditTask(assignment_id, text, clip_a, clip_b, progress(session, user, open_count=open_count), paths)


def progress(session: Session, user: AuthUser, *, open_count: int | None = None) -> Progress:
    """Done, skipped and remaining for USER; OPEN_COUNT (queue items still open to USER), when the
    caller has just counted them, saves counting again (a scan of the queue)."""
    by_state = dict(session.execute(_BY_STATE, {"uid": user.id}).all())
    if open_count is None:
        open_count = _open_count(session, user)
    return Progress(int(by_state.get("done", 0)), int(by_state.get("skipped", 0)),
                    int(by_state.get("assigned", 0)) + max(0, int(open_count)))


def _open_filter(user: AuthUser | None = None):
    """Queue items with a free slot that this user (USER, else the bound parameter "uid") has never been given."""
    taken = (select(func.count()).where(AuditAssignment.pair_id == AuditItem.pair_id,
                                         AuditAssignment.slot.is_not(None)).scalar_subquery())
    uid = bindparam("uid") if user is None else user.id
    mine = exists().where(AuditAssignment.pair_id == AuditItem.pair_id, AuditAssignment.user_id == uid)
    return and_(~mine, taken < AuditItem.overlap)


# the statements of the vote path, built once (building them costs more than running them on a small store)
_OPEN_COUNT = select(func.count()).select_from(AuditItem).where(_open_filter())
_BY_STATE = (select(AuditAssignment.state, func.count()).where(AuditAssignment.user_id == bindparam("uid"))
             .group_by(AuditAssignment.state))
_CANDIDATES = (select(AuditItem.pair_id, AuditItem.overlap, func.count().over()).where(_open_filter())
               .order_by(AuditItem.priority.desc(), AuditItem.id))


def _open_count(session: Session, user: AuthUser) -> int:
    return int(session.scalar(_OPEN_COUNT, {"uid": user.id}) or 0)


# --------------------------------------------------------------------------------------------
# Assignment
# --------------------------------------------------------------------------------------------


def _insert_ignore(session: Session, values: dict) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id into audit_assignments; the id, or None on a conflict."""
    dialect = session.get_bind().dialect.name
    stmt = _INSERT_IGNORE.get(dialect)
    if stmt is None:  # built once per dialect (building it costs more than running it)
        ins = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
        stmt = _INSERT_IGNORE[dialect] = (ins(AuditAssignment.__table__).on_conflict_do_nothing()
                                          .returning(AuditAssignment.__table__.c.id))
    return session.connection().execute(stmt, values).scalar()


_INSERT_IGNORE: dict = {}


def current_assignment(session: Session, user: AuthUser) -> AuditAssignment | None:
    """The user's open assignment served last (an undone vote comes back first)."""
    return session.scalars(
        select(AuditAssignment).where(AuditAssignment.user_id == user.id, AuditAssignment.state == "assigned")
        .order_by(AuditAssignment.served_at.desc(), AuditAssignment.id.desc()).limit(1)
    ).first()


def expire_leases(session: Session, lease_s: float = DEFAULT_LEASE_S, *, now=None) -> int:
    """Open assignments served more than LEASE_S seconds ago give their slot back (state "skipped",
    reason "lease expired"): an abandoned tab or a rater gone home no longer holds a pair's slot.
    Returns how many. A quick read first, so the usual case (none expired) writes nothing."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=float(lease_s))
    stale = and_(AuditAssignment.state == "assigned", AuditAssignment.served_at < cutoff)
    if session.scalar(select(AuditAssignment.id).where(stale).limit(1)) is None:
        return 0
    res = session.execute(update(AuditAssignment).where(stale)
                          .values(state="skipped", slot=None, skip_reason=LEASE_EXPIRED, completed_at=utcnow())
                          .execution_options(synchronize_session=False))
    n = int(res.rowcount or 0)
    if n:
        log.info("%d open assignment(s) older than %.0f s went back to the queue", n, lease_s)
    return n


def next_assignment(session: Session, user: AuthUser, *, rng: random.Random | None = None,
                    lease_s: float | None = DEFAULT_LEASE_S) -> AuditTask | None:
    """The pair this rater should judge now: the open one, else a new one from the queue; None when done.

    The blind side (is the automatic winner A?) is drawn per assignment from RNG (default: the
    OS's randomness) and recorded in `a_is_winner`. Open assignments older than LEASE_S (None:
    no lease) go back to the queue first.
    """
    if lease_s is not None:
        expire_leases(session, lease_s)
    if is_excluded(session, user.id):  # their votes would count nowhere: no slot is spent on them
        return None
    open_one = session.execute(_CURRENT, {"uid": user.id}).first()
    if open_one is not None:
        return _task(session, open_one.id, open_one.pair_id, open_one.a_is_winner, user)
    rng = rng or random.SystemRandom()
    tried: set[int] = set()
    while True:
        # one scan gives the candidates and how many items are open to this user (for the progress line)
        rows = session.execute(_CANDIDATES.limit(CANDIDATES_PER_TRY + len(tried)), {"uid": user.id}).all()
        candidates = [(p, n) for p, n, _ in rows if p not in tried]
        if not candidates:
            return None
        n_open = int(rows[0][2])
        for k, (pair_id, overlap) in enumerate(candidates, 1):
            tried.add(pair_id)
            # the k items tried from this scan are now this user's or full: no longer open
            task = _claim(session, user, pair_id, overlap, rng, open_after=n_open - k)
            if task is not None:
                return task


def _claim(session: Session, user: AuthUser, pair_id: int, overlap: int, rng: random.Random,
           open_after: int | None = None) -> AuditTask | None:
    """Take a free slot of PAIR_ID for USER; None when the pair is full or already this user's.

    A lost race (another rater inserted the slot we read as free) re-reads the slots and tries
    the next free one: after the conflicting insert commits, a new statement sees it (PostgreSQL
    waits on the uncommitted conflicting row; SQLite's writer holds the lock). Each round either
    wins or sees one more slot taken, so at most `overlap` + 1 rounds run.
    """
    for _ in range(overlap + 1):
        rows = session.execute(_SLOTS, {"pid": pair_id}).all()
        if any(uid == user.id for _, uid in rows):
            return None
        used = {slot for slot, _ in rows if slot is not None}
        free = [s for s in range(overlap) if s not in used]
        if not free:
            return None
        now, a_is_winner = utcnow(), bool(rng.getrandbits(1))
        new_id = _insert_ignore(session, dict(pair_id=pair_id, user_id=user.id, slot=free[0], a_is_winner=a_is_winner,
                                              state="assigned", assigned_at=now, served_at=now))
        if new_id is not None:
            return _task(session, new_id, pair_id, a_is_winner, user, open_count=open_after)
    return None


def _own_open(session: Session, user: AuthUser, assignment_id) -> AuditAssignment:
    try:
        aid = int(assignment_id)
    except (TypeError, ValueError):
        raise CuratorError(f"assignment {str(assignment_id)[:40]!r} is not an assignment id") from None
    if not 0 < aid <= MAX_ID:  # beyond the column's range: no such assignment (and no database error)
        raise CuratorError(f"pair {str(aid)[:40]} is not assigned to you")
    a = session.get(AuditAssignment, aid, with_for_update=session.get_bind().dialect.name == "postgresql")
    if a is None or a.user_id != user.id:
        raise CuratorError(f"pair {aid} is not assigned to you")
    if a.state == "done":
        raise CuratorError("this pair already has your vote (submitted twice?); nothing was changed")
    if a.state == "skipped" and a.skip_reason == LEASE_EXPIRED:
        raise CuratorError("this pair waited too long for your vote and went back to the queue; nothing was changed")
    if a.state == "skipped":
        raise CuratorError("you skipped this pair; nothing was changed")
    return a


def vote(session: Session, user: AuthUser, assignment_id, verdict: str, note: str | None = None, *,
         min_played_share: float = playback.DEFAULT_MIN_PLAYED_SHARE) -> AuditAssignment:
    """Record USER's verdict on their open assignment, with the time on task (server clock, from
    the pair being served). Refuses other users' pairs, replays, a rater an admin excluded, and a
    vote before the media route has sent MIN_PLAYED_SHARE of both clips to USER (playback.py)."""
    if verdict not in VERDICTS:
        raise CuratorError(f"verdict {str(verdict)[:40]!r} is not one of {', '.join(VERDICTS)}")
    if note is not None and not isinstance(note, str):
        raise CuratorError("the note must be text")
    note = (note or "").strip() or None
    if note and len(note) > MAX_NOTE_LEN:
        raise CuratorError(f"the note is {len(note)} characters long; at most {MAX_NOTE_LEN}")
    a = _own_open(session, user, assignment_id)
    if is_excluded(session, user.id):
        raise CuratorError(EXCLUDED)
    playback.require_audit_played(session, user.id, a.id, min_played_share)
    now = utcnow()
    # a guarded update: a concurrent replay of the same submit finds state != 'assigned' and changes nothing
    outcome = {"A": "winner" if a.a_is_winner else "loser",
               "B": "loser" if a.a_is_winner else "winner"}.get(verdict, verdict)
    res = session.execute(
        update(AuditAssignment).where(AuditAssignment.id == a.id, AuditAssignment.state == "assigned")
        .values(state="done", verdict=verdict, outcome=outcome, note=note, completed_at=now,
                time_on_task_ms=playback.elapsed_ms(a.served_at, now))
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise CuratorError("this pair already has your vote (submitted twice?); nothing was changed")
    session.refresh(a)
    return a


def skip(session: Session, user: AuthUser, assignment_id, reason: str = "skipped") -> AuditAssignment:
    """Give the pair back (its slot goes to another rater); it is never served to USER again."""
    a = _own_open(session, user, assignment_id)
    res = session.execute(
        update(AuditAssignment).where(AuditAssignment.id == a.id, AuditAssignment.state == "assigned")
        .values(state="skipped", slot=None, skip_reason=str(reason)[:200], completed_at=utcnow())
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise CuratorError("this pair was already skipped or voted; nothing was changed")
    session.refresh(a)
    return a


def undo_last(session: Session, user: AuthUser, *, window_s: float = UNDO_WINDOW_S) -> AuditTask | None:
    """Take back USER's last vote: the pair is open again (same blind sides) and served next.

    Only the last thing the rater did, when it is a vote cast less than WINDOW_S seconds ago, and
    only once: a pair reopened by undo (served again after it was assigned) must be judged before
    another undo, so repeated undos cannot reach back through earlier verdicts.
    Returns the reopened task, or None when there is no vote to undo.
    """
    reopened = session.scalar(select(AuditAssignment.id).where(
        AuditAssignment.user_id == user.id, AuditAssignment.state == "assigned",
        AuditAssignment.served_at > AuditAssignment.assigned_at).limit(1))
    if reopened is not None:
        return None
    a = session.scalars(
        select(AuditAssignment).where(AuditAssignment.user_id == user.id,
                                      AuditAssignment.state.in_(("done", "skipped")),
                                      AuditAssignment.completed_at.is_not(None))
        .order_by(AuditAssignment.completed_at.desc(), AuditAssignment.id.desc()).limit(1)
    ).first()
    if a is None or a.state != "done":
        return None
    done_at = a.completed_at if a.completed_at.tzinfo else a.completed_at.replace(tzinfo=dt.timezone.utc)  # SQLite: naive UTC
    if done_at < utcnow() - dt.timedelta(seconds=float(window_s)):
        return None
    a.state, a.verdict, a.outcome, a.note, a.completed_at, a.time_on_task_ms = "assigned", None, None, None, None, None
    a.served_at = utcnow()
    session.flush()
    return _task(session, a.id, a.pair_id, a.a_is_winner, user)


# --------------------------------------------------------------------------------------------
# Audio of a task (never a path from the browser)
# --------------------------------------------------------------------------------------------


AUDIO_SIDES = ("a", "b")
_AUDIO_MAGIC = ((b"RIFF", "audio/wav"), (b"fLaC", "audio/flac"), (b"OggS", "audio/ogg"), (b"ID3", "audio/mpeg"))


def _stored_audio(audio_store: AudioStore, rel: str | None) -> tuple[Path, str] | None:
    """(absolute path, media type) of a stored clip whose file is there and looks like audio; None otherwise.

    A header check, not a decode: it catches a missing, empty or foreign file for the price of a
    stat and a 12-byte read (the vote path runs it for both sides on every pair).
    """
    if rel is None:
        return None
    try:
        path = audio_store.resolve(rel)
        with open(path, "rb") as f:
            head = f.read(12)
    except (CuratorError, OSError):
        return None
    for magic, media_type in _AUDIO_MAGIC:
        if head.startswith(magic) and (magic != b"RIFF" or head[8:12] == b"WAVE"):
            return path, media_type
    return None


def audio_problems(session: Session, audio_store: AudioStore, task: AuditTask) -> dict[str, str]:
    """{side ('a'/'b'): one clear line} for each side of TASK whose audio cannot be served (the rater can skip)."""
    if task.paths is not None:
        paths = dict(zip((task.clip_a, task.clip_b), task.paths))
    else:
        paths = dict(session.execute(select(AudioClip.id, AudioClip.path)
                                     .where(AudioClip.id.in_((task.clip_a, task.clip_b)))).all())
    problems = {}
    for side, clip_id in zip(AUDIO_SIDES, (task.clip_a, task.clip_b)):
        if _stored_audio(audio_store, paths.get(clip_id)) is None:
            log.warning("audio of clip %s cannot be played (missing, empty or not audio)", clip_id)
            problems[side] = f"side {side.upper()}: the audio file is missing or unreadable; press Skip"
    return problems


_WINNER_CLIP, _LOSER_CLIP = aliased(AudioClip, name="winner_clip"), aliased(AudioClip, name="loser_clip")
# built once (aliases are costly to build per call; these run for every pair and every clip a page loads)
_TASK = (
    select(Pair.winner_clip_id, Pair.loser_clip_id, Caption.text, _WINNER_CLIP.path, _LOSER_CLIP.path)
    .join(Caption, Caption.id == Pair.caption_id)
    .join(_WINNER_CLIP, _WINNER_CLIP.id == Pair.winner_clip_id).join(_LOSER_CLIP, _LOSER_CLIP.id == Pair.loser_clip_id)
    .where(Pair.id == bindparam("pid"))
)
_CURRENT = (  # the user's open assignment served last (an undone vote comes back first)
    select(AuditAssignment.id, AuditAssignment.pair_id, AuditAssignment.a_is_winner)
    .where(AuditAssignment.user_id == bindparam("uid"), AuditAssignment.state == "assigned")
    .order_by(AuditAssignment.served_at.desc(), AuditAssignment.id.desc()).limit(1)
)
_SLOTS = select(AuditAssignment.slot, AuditAssignment.user_id).where(AuditAssignment.pair_id == bindparam("pid"))
_ASSIGNMENT_AUDIO = (
    select(AuditAssignment.a_is_winner, _WINNER_CLIP.path, _LOSER_CLIP.path)
    .join(Pair, Pair.id == AuditAssignment.pair_id)
    .join(_WINNER_CLIP, _WINNER_CLIP.id == Pair.winner_clip_id).join(_LOSER_CLIP, _LOSER_CLIP.id == Pair.loser_clip_id)
    .where(AuditAssignment.id == bindparam("aid"), AuditAssignment.user_id == bindparam("uid"),
           AuditAssignment.state == "assigned")
)


def assignment_audio(session: Session, audio_store: AudioStore, user: AuthUser, assignment_id: int,
                     side: str) -> tuple[Path, str]:
    """(path, media type) of SIDE ('a' or 'b') of USER's open assignment; CuratorError otherwise.

    What the media route serves for a token issued for (assignment, side): the blind mapping
    stays on the server, and the file comes from the audio store, never from a path the
    browser sent. Another rater's assignment, a finished one and an unknown one are all refused
    with the same line, so ids cannot be probed.
    """
    if side not in AUDIO_SIDES:
        raise CuratorError("the side must be a or b")
    aid = int(assignment_id)
    row = session.execute(_ASSIGNMENT_AUDIO, {"aid": aid, "uid": user.id}).first() if 0 < aid <= MAX_ID else None
    if row is None:
        raise CuratorError("no open pair of yours has this audio")
    a_is_winner, winner_path, loser_path = row
    found = _stored_audio(audio_store, winner_path if (side == "a") == bool(a_is_winner) else loser_path)
    if found is None:
        raise CuratorError(f"side {side.upper()}: the audio file is missing or unreadable; press Skip")
    return found


# --------------------------------------------------------------------------------------------
# Filling the queue (admins)
# --------------------------------------------------------------------------------------------


def _check_overlap(overlap: int) -> int:
    if not is_int(overlap) or not 1 <= int(overlap) <= 50:
        raise CuratorError(f"overlap {overlap!r} must be a whole number of raters in 1..50")
    return int(overlap)


def enqueue(session: Session, pair_ids: Sequence[int], *, reason: str, added_by: str,
            priorities: Sequence[float] | None = None, overlap: int = DEFAULT_OVERLAP) -> int:
    """Put pairs in the audit queue (pairs already queued are left as they are); returns how many were added."""
    overlap = _check_overlap(overlap)
    if reason not in QUEUE_REASONS:
        raise CuratorError(f"queue reason {reason!r} is not one of {', '.join(QUEUE_REASONS)}")
    ids = [int(p) for p in pair_ids]
    if priorities is not None and len(priorities) != len(ids):
        raise ValueError(f"{len(priorities)} priorities for {len(ids)} pairs")
    if not ids:
        return 0
    known = set()
    queued = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        known.update(session.scalars(select(Pair.id).where(Pair.id.in_(chunk))))
        queued.update(session.scalars(select(AuditItem.pair_id).where(AuditItem.pair_id.in_(chunk))))
    missing = [p for p in ids if p not in known]
    if missing:
        raise CuratorError(f"pair {missing[0]} does not exist ({len(missing)} unknown pair id(s))")
    added = 0
    for k, pid in enumerate(ids):
        if pid in queued:
            continue
        queued.add(pid)
        prio = float(priorities[k]) if priorities is not None else 0.0
        session.add(AuditItem(pair_id=pid, priority=prio, reason=reason, overlap=overlap, added_by=added_by))
        added += 1
    session.flush()
    return added


@dataclass(frozen=True)
class QueueStatus:
    items: int
    slots: int  # sum of overlaps
    votes: int
    skipped: int
    open_assignments: int
    complete_pairs: int  # pairs with `overlap` votes


def queue_status(session: Session) -> QueueStatus:
    items = session.scalar(select(func.count()).select_from(AuditItem)) or 0
    slots = session.scalar(select(func.coalesce(func.sum(AuditItem.overlap), 0))) or 0
    by_state = dict(session.execute(select(AuditAssignment.state, func.count()).where(COUNTED_RATER)
                                    .group_by(AuditAssignment.state)).all())
    votes_per_pair = (select(AuditAssignment.pair_id, func.count().label("n"))
                      .where(AuditAssignment.state == "done", COUNTED_RATER)
                      .group_by(AuditAssignment.pair_id).subquery())
    complete = session.scalar(select(func.count()).select_from(AuditItem).join(
        votes_per_pair, votes_per_pair.c.pair_id == AuditItem.pair_id).where(votes_per_pair.c.n >= AuditItem.overlap)) or 0
    return QueueStatus(int(items), int(slots), int(by_state.get("done", 0)), int(by_state.get("skipped", 0)),
                       int(by_state.get("assigned", 0)), int(complete))


# --------------------------------------------------------------------------------------------
# Votes as arrays (the threshold view reads these; curator.verdicts counts them per pair)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoteArrays:
    """Completed A/B votes as numpy arrays (for the threshold view's agreement, recomputed per slider move)."""

    pair_id: np.ndarray  # (V,) int64, one row per vote that preferred a side
    agree: np.ndarray  # (V,) bool: preferred the automatic winner
    n_both_good: int = 0
    n_both_bad: int = 0
    tie_pair_id: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    tie_good: np.ndarray = field(default_factory=lambda: np.empty(0, bool))


def vote_arrays(session: Session) -> VoteArrays:
    rows = session.execute(select(AuditAssignment.pair_id, AuditAssignment.outcome)
                           .where(AuditAssignment.state == "done", COUNTED_RATER)).all()
    side = [(p, o == "winner") for p, o in rows if o in ("winner", "loser")]
    ties = [(p, o == "both_good") for p, o in rows if o in ("both_good", "both_bad")]
    return VoteArrays(
        pair_id=np.array([p for p, _ in side], dtype=np.int64),
        agree=np.array([a for _, a in side], dtype=bool),
        n_both_good=sum(1 for _, g in ties if g), n_both_bad=sum(1 for _, g in ties if not g),
        tie_pair_id=np.array([p for p, _ in ties], dtype=np.int64),
        tie_good=np.array([g for _, g in ties], dtype=bool),
    )
