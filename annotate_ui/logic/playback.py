"""Media grants in the store, the audio route's playback record, and the playback check.

A vote or a rating is accepted only once the server has sent, under the rater's own tokens, the
audio of every clip it judges: the whole blind copy (`min_played_share` 1.0, the default), or
at least that share of its bytes. The record is what the media route actually sent (the byte
ranges of its responses, range requests included), never what the browser says it played; a
spectrogram fetch is not playback. The page asks for the audio only when the rater presses play
(`preload="none"`), so bytes sent are bytes the rater's player asked for to play.

Every function takes the caller's Session and flushes; the caller commits.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.errors import CuratorError
from db.media import GRANT_KINDS, GRANT_WHATS, MediaGrant
from db.models import utcnow

DEFAULT_MIN_PLAYED_SHARE = 1.0  # to the end, as listening-test tools ask by default
RECORD_RETRIES = 8  # a range recorded while another process records one of the same token is re-read and retried


def check_share(share) -> float:
    """A share of a clip that must be played: a number in (0, 1]."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < float(share) <= 1:
        raise CuratorError(f"min played share {share!r} must be a number in (0, 1] (1 = to the end)")
    return float(share)


def issue_grant(session: Session, user_id: int, kind: str, ref: tuple, what: str = "audio") -> str:
    """A new random token (`secrets.token_urlsafe`, 144 bits) for one clip (or its spectrogram) as
    USER_ID sees it: REF is (assignment id, side) for KIND "audit", (session id, item id) for "listen"."""
    if kind not in GRANT_KINDS or what not in GRANT_WHATS:
        raise ValueError(f"grant kind {kind!r} / what {what!r}")
    token = secrets.token_urlsafe(18)
    grant = MediaGrant(token=token, user_id=int(user_id), kind=kind, what=what, served_ranges=[],
                       bytes_served=0, serves=0, issued_at=utcnow())
    if kind == "audit":
        grant.assignment_id, grant.side = int(ref[0]), str(ref[1])
    else:
        grant.session_id, grant.item_id = int(ref[0]), int(ref[1])
    session.add(grant)
    session.flush()
    return token


@dataclass(frozen=True)
class Grant:
    """What a token stands for: KIND "audit" with REF (assignment id, side), or "listen" with REF
    (session id, item id); WHAT "audio" or "spectrogram"; only USER_ID may use it."""

    id: int
    user_id: int
    kind: str
    ref: tuple
    what: str


def find_grant(session: Session, token: str, user_id: int) -> Grant | None:
    """The grant of TOKEN when it was issued to USER_ID; None for an unknown token or another user's."""
    g = session.scalar(select(MediaGrant).where(MediaGrant.token == token))
    if g is None or g.user_id != int(user_id):
        return None
    ref = (g.assignment_id, g.side) if g.kind == "audit" else (g.session_id, g.item_id)
    return Grant(g.id, g.user_id, g.kind, ref, g.what)


def _merge(ranges: Iterable, start: int, end: int) -> list[list[int]]:
    """RANGES ([start, end) pairs, sorted, disjoint) with [START, END) added, merged again."""
    out: list[list[int]] = []
    for a, b in sorted([*([int(a), int(b)] for a, b in ranges), [start, end]]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def record_served(session: Session, grant_id: int, start: int, end: int, total: int) -> None:
    """Record that the route sent bytes [START, END] (inclusive) of a copy of TOTAL bytes under the grant.

    Optimistic: the row is updated only at the version (`serves`) read, and re-read when another
    writer (another process) got there first, so concurrent ranges of one token are all kept."""
    end_excl = int(end) + 1
    for _ in range(RECORD_RETRIES):
        row = session.execute(select(MediaGrant.serves, MediaGrant.served_ranges, MediaGrant.first_served_at,
                                     MediaGrant.completed_at).where(MediaGrant.id == grant_id)).one()
        serves, ranges, first, completed = row
        merged = _merge(ranges or [], int(start), end_excl)
        now = utcnow()
        values = dict(serves=serves + 1, served_ranges=merged, bytes_served=sum(b - a for a, b in merged),
                      total_bytes=int(total), first_served_at=first or now,
                      completed_at=completed or (now if end_excl >= int(total) else None))
        res = session.execute(update(MediaGrant).where(MediaGrant.id == grant_id, MediaGrant.serves == serves)
                              .values(**values).execution_options(synchronize_session=False))
        if res.rowcount == 1:
            return
    raise CuratorError("the playback record of this clip is busy; press play again")


def _share(bytes_served: int, total: int | None) -> float:
    return 0.0 if not total else min(1.0, bytes_served / total)


def played_shares(session: Session, user_id: int, *, assignment_id: int | None = None,
                  item_id: int | None = None) -> dict[str | None, float]:
    """The largest share of the audio the route sent USER_ID under any of their tokens, per clip:
    {side: share} of an audit assignment, or {None: share} of a listening item."""
    q = select(MediaGrant.side, MediaGrant.bytes_served, MediaGrant.total_bytes).where(
        MediaGrant.user_id == int(user_id), MediaGrant.what == "audio")
    q = q.where(MediaGrant.assignment_id == int(assignment_id)) if assignment_id is not None \
        else q.where(MediaGrant.item_id == int(item_id))
    out: dict[str | None, float] = {}
    for side, served, total in session.execute(q):
        key = side if assignment_id is not None else None
        out[key] = max(out.get(key, 0.0), _share(served, total))
    return out


def _needs(share: float) -> str:
    return "to the end" if share >= 1 else f"at least {share:.0%} of the way"


def require_audit_played(session: Session, user_id: int, assignment_id: int, min_share: float) -> None:
    """CuratorError unless both sides of the assignment were played (see the module doc)."""
    min_share = check_share(min_share)
    shares = played_shares(session, user_id, assignment_id=assignment_id)
    missing = [side.upper() for side in ("a", "b") if shares.get(side, 0.0) < min_share - 1e-9]
    if missing:
        which = " and ".join(missing)
        raise CuratorError(f"play clip{'s' if len(missing) > 1 else ''} {which} {_needs(min_share)} before you vote; "
                           "nothing was recorded")


def require_item_played(session: Session, user_id: int, item_id: int, min_share: float) -> None:
    """CuratorError unless the listening item's clip was played (see the module doc)."""
    min_share = check_share(min_share)
    if played_shares(session, user_id, item_id=item_id).get(None, 0.0) < min_share - 1e-9:
        raise CuratorError(f"play the clip {_needs(min_share)} before you rate it; nothing was recorded")


def elapsed_ms(since: dt.datetime | None, now: dt.datetime | None = None) -> int | None:
    """Milliseconds from SINCE to NOW on the server's clock (SQLite gives naive UTC)."""
    if since is None:
        return None
    since = since if since.tzinfo else since.replace(tzinfo=dt.timezone.utc)
    return max(0, int(((now or utcnow()) - since).total_seconds() * 1000))


__all__ = ["DEFAULT_MIN_PLAYED_SHARE", "check_share", "issue_grant", "Grant", "find_grant", "record_served",
           "played_shares", "require_audit_played", "require_item_played", "elapsed_ms"]
