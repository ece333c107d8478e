"""The rater side of a listening session (arXiv 2404.09956 §5.3): `next_item` gives the next clip
in the rater's own order (every rater gets every item, shuffled by a generator seeded with
(session seed, session id, user id); the position is recorded), `submit_rating` stores OVL and REL
(1–5) with the time on task (server clock, from the item being shown), once the media route has
sent the clip to the rater (annotate_ui/logic/playback.py), `skip_item`, `undo_last`. System names
never leave these functions. A rater an admin excluded gets no item and their ratings are refused.

Every rater function takes the *authenticated* user (`AuthUser`) from the caller, as the audit's
do (the UI takes it from the login, never from the browser). Functions flush; the caller commits.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotate_ui.logic import playback
from annotate_ui.logic.auth import AuthUser
from annotate_ui.logic.listening.design import _rng
from curator.audio import AudioStore
from curator.validate import is_int
from db.errors import CuratorError
from db.annotation import User
from db.listening import ListeningItem, ListeningRating, ListeningSession
from db.models import AudioClip, utcnow

# arXiv 2404.09956 §5.3: the two subjective scales, each 1–5.
SCALE = (1, 2, 3, 4, 5)
OVL_DEFINITION = (
    "OVL — overall quality: how good the audio sounds, regardless of the text "
    "(1 = very poor, 5 = excellent)."
)
REL_DEFINITION = (
    "REL — relevance to the text: how well the audio matches the prompt "
    "(1 = not at all, 5 = perfectly)."
)


@dataclass(frozen=True)
class QueueItem:
    """What a rater is shown: no system, generator or file name."""

    session_id: int
    item_id: int
    position: int  # 0-based place in this rater's order
    prompt: str  # raw text; the UI escapes it
    audio_path: Optional[Path]  # resolved inside the audio store, None when missing
    audio_error: Optional[str]  # why there is no audio (the rater can skip)
    done: int  # rated or skipped so far
    total: int


@dataclass(frozen=True)
class Progress:
    rated: int
    skipped: int
    total: int

    @property
    def remaining(self) -> int:
        return self.total - self.rated - self.skipped


def _rater(session: Session, user: AuthUser) -> User:
    row = session.get(User, user.id)
    if row is None or not row.active:
        raise CuratorError("you are not an active user of this store")
    return row


EXCLUDED = "an admin has excluded your answers from the results; nothing was recorded"


def _open_listening(session: Session, session_id: int) -> ListeningSession:
    listening = session.get(ListeningSession, int(session_id)) if is_int(session_id) else None
    if listening is None:
        raise CuratorError(f"listening session {session_id!r} does not exist")
    if not listening.is_open:
        raise CuratorError(f"listening session {listening.name!r} is closed")
    return listening


def rater_order(listening: ListeningSession, user: AuthUser, item_ids: Sequence[int]) -> list[int]:
    """ITEM_IDS in this rater's order: a permutation seeded with (seed, session id, user id)."""
    ids = sorted(item_ids)
    perm = _rng(listening.seed, listening.id, user.id).permutation(len(ids))
    return [ids[i] for i in perm]


def ensure_assignments(session: Session, session_id: int, user: AuthUser) -> int:
    """Give the rater every item of the session, in their own order; returns how many rows were added.

    Safe to call concurrently for one rater: the rows are deterministic, a unique violation
    means another request wrote them first (done inside a savepoint).
    """
    listening = _open_listening(session, session_id)
    _rater(session, user)
    have = set(session.scalars(select(ListeningRating.item_id).where(
        ListeningRating.session_id == listening.id, ListeningRating.user_id == user.id)))
    item_ids = list(session.scalars(select(ListeningItem.id).where(ListeningItem.session_id == listening.id)))
    if len(have) == len(item_ids):
        return 0
    order = rater_order(listening, user, item_ids)
    rows = [ListeningRating(session_id=listening.id, item_id=item, user_id=user.id, position=pos)
            for pos, item in enumerate(order) if item not in have]
    try:
        with session.begin_nested():
            session.add_all(rows)
    except IntegrityError:
        return 0  # a concurrent request of the same rater wrote them
    return len(rows)


def progress(session: Session, session_id: int, user: AuthUser) -> Progress:
    r = ListeningRating
    rated, skipped, total = session.execute(
        select(func.count(r.rated_at), func.count(r.skipped_at), func.count())
        .where(r.session_id == session_id, r.user_id == user.id)).one()
    return Progress(int(rated), int(skipped), int(total))


def _audio_for(audio_store: Optional[AudioStore], clip: AudioClip) -> tuple[Optional[Path], Optional[str]]:
    if audio_store is None:
        return None, None
    try:
        path = audio_store.resolve(clip.path)
    except CuratorError as exc:
        return None, f"{exc}; skip this clip"
    if not path.is_file():
        return None, "the audio of this clip is missing from the audio store; skip this clip"
    return path, None


def next_item(session: Session, session_id: int, user: AuthUser,
              audio_store: Optional[AudioStore] = None) -> Optional[QueueItem]:
    """The rater's next unrated, unskipped item (None when finished, or when an admin excluded the
    rater: their ratings would count nowhere)."""
    ensure_assignments(session, session_id, user)
    if session.scalar(select(User.excluded_at).where(User.id == user.id)) is not None:
        return None
    r = ListeningRating
    row = session.scalar(select(r).where(r.session_id == session_id, r.user_id == user.id,
                                         r.rated_at.is_(None), r.skipped_at.is_(None))
                         .order_by(r.position).limit(1))
    if row is None:
        return None
    if row.served_at is None:  # time on task runs from the first showing
        row.served_at = utcnow()
        session.flush()
    item = row.item
    path, error = _audio_for(audio_store, item.clip)
    prog = progress(session, session_id, user)
    return QueueItem(session_id=session_id, item_id=item.id, position=row.position, prompt=item.prompt,
                     audio_path=path, audio_error=error, done=prog.rated + prog.skipped, total=prog.total)


def item_audio_path(session: Session, audio_store: AudioStore, session_id: int, user: AuthUser, item_id: Any) -> Path:
    """The stored file of an item in the rater's queue (what the media route sends, as a blind copy);
    one line naming nothing when it is missing."""
    row = _own_row(session, session_id, user, item_id)
    path, error = _audio_for(audio_store, row.item.clip)
    if path is None:
        raise CuratorError(error or "the audio of this clip is missing or unreadable; skip this clip")
    return path


def _check_score(value: Any, what: str) -> int:
    if not is_int(value) or value not in SCALE:
        raise CuratorError(f"{what} must be a whole number from 1 to 5, got {value!r}")
    return int(value)


def _own_row(session: Session, session_id: int, user: AuthUser, item_id: Any) -> ListeningRating:
    if not is_int(item_id):
        raise CuratorError(f"item {item_id!r} is not in your queue for this session")
    row = session.scalar(select(ListeningRating).where(
        ListeningRating.session_id == session_id, ListeningRating.user_id == user.id,
        ListeningRating.item_id == int(item_id)))
    if row is None:
        raise CuratorError(f"item {item_id} is not in your queue for this session")
    return row


@dataclass(frozen=True)
class SubmitResult:
    item_id: int
    ovl: int
    rel: int
    time_on_task_ms: Optional[int]  # server clock, from the item being shown to this rating


def _answered(row: ListeningRating, item_id: Any) -> CuratorError:
    """Why an answered row takes no rating (a replay, a second rating, a skipped item)."""
    if row.skipped_at is not None:
        return CuratorError(f"item {item_id} was skipped; undo the skip to rate it")
    return CuratorError(f"item {item_id} already has your rating (OVL {row.ovl}, REL {row.rel}; submitted twice?); "
                        "nothing was changed: use undo to change your last rating")


def submit_rating(session: Session, session_id: int, user: AuthUser, item_id: int, ovl: Any, rel: Any, *,
                  min_played_share: float = playback.DEFAULT_MIN_PLAYED_SHARE) -> SubmitResult:
    """Store OVL and REL of ITEM_ID for the rater, with the time on task (server clock).

    Refused, with nothing written: a replay or a second rating of the item, a rater an admin
    excluded, and a rating before the media route has sent MIN_PLAYED_SHARE of the clip to the
    rater (annotate_ui/logic/playback.py)."""
    ovl = _check_score(ovl, "OVL")
    rel = _check_score(rel, "REL")
    _open_listening(session, session_id)
    rater = _rater(session, user)
    row = _own_row(session, session_id, user, item_id)
    if row.rated_at is not None or row.skipped_at is not None:
        raise _answered(row, item_id)
    if rater.excluded_at is not None:
        raise CuratorError(EXCLUDED)
    playback.require_item_played(session, user.id, row.item_id, min_played_share)
    now = utcnow()
    # conditional update: only an unrated, unskipped row is written (safe under a concurrent replay)
    res = session.execute(
        update(ListeningRating)
        .where(ListeningRating.id == row.id, ListeningRating.rated_at.is_(None), ListeningRating.skipped_at.is_(None))
        .values(ovl=ovl, rel=rel, rated_at=now, skip_reason=None,
                time_on_task_ms=playback.elapsed_ms(row.served_at or row.created_at, now))
        .execution_options(synchronize_session=False))
    session.refresh(row)
    if res.rowcount != 1:
        raise _answered(row, item_id)
    return SubmitResult(row.item_id, ovl, rel, row.time_on_task_ms)


def skip_item(session: Session, session_id: int, user: AuthUser, item_id: int, reason: str = "skipped") -> bool:
    """Skip ITEM_ID (e.g. its audio is missing); True when it was skipped now, False on a replay."""
    _open_listening(session, session_id)
    _rater(session, user)
    row = _own_row(session, session_id, user, item_id)
    res = session.execute(
        update(ListeningRating)
        .where(ListeningRating.id == row.id, ListeningRating.rated_at.is_(None), ListeningRating.skipped_at.is_(None))
        .values(skipped_at=utcnow(), skip_reason=(reason or "skipped")[:500])
        .execution_options(synchronize_session=False))
    session.refresh(row)
    if res.rowcount == 1:
        return True
    if row.rated_at is not None:
        raise CuratorError(f"item {item_id} is already rated; use undo to change your last rating")
    return False


UNDO_WINDOW_S = 120.0  # undo reaches the rater's last answer for this long after it
UNDONE = "undone"  # skip_reason of a row reopened by undo, until it is answered again


def undo_last(session: Session, session_id: int, user: AuthUser, *, window_s: float = UNDO_WINDOW_S) -> Optional[int]:
    """Clear the rater's last rating or skip; returns its item id (None: nothing to undo).

    Only the last answer, given less than WINDOW_S seconds ago, and only once: the reopened row is
    marked (skip_reason "undone") until it is answered again, and while it is, undo does nothing,
    so repeated undos cannot reach back through earlier ratings.
    """
    _open_listening(session, session_id)
    _rater(session, user)
    r = ListeningRating
    mine = (r.session_id == session_id, r.user_id == user.id)
    if session.scalar(select(r.id).where(*mine, r.rated_at.is_(None), r.skipped_at.is_(None),
                                         r.skip_reason == UNDONE).limit(1)) is not None:
        return None
    rows = list(session.scalars(select(r).where(*mine, (r.rated_at.is_not(None)) | (r.skipped_at.is_not(None)))))
    if not rows:
        return None
    last = max(rows, key=lambda x: (max(t for t in (x.rated_at, x.skipped_at) if t is not None), x.id))
    when = max(t for t in (last.rated_at, last.skipped_at) if t is not None)
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)  # SQLite gives naive UTC
    if when < utcnow() - timedelta(seconds=float(window_s)):
        return None
    last.ovl = last.rel = None
    last.rated_at = last.skipped_at = None
    last.time_on_task_ms = None
    last.served_at = utcnow()  # shown again now: the next answer's time on task runs from here
    last.skip_reason = UNDONE
    session.flush()
    return last.item_id
