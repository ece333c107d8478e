"""Quality control of the raters: flags for the admin view, and excluding a rater.

Flags (what listening-test tools check):

* **fast**: answers given faster than their clips last. An answer is fast when its time on task
  (server clock, from the pair or clip being shown to the answer) is shorter than the clips take
  to play (both clips of an audit pair, played one after the other; the one clip of a listening
  item) times `min_played_share`. A rater is flagged when at least FAST_FLAG_SHARE of their timed
  answers are fast: one hurried answer among many is not a pattern.
* **gold**: in a listening session, the rater's mean REL on the gold items (a clip shown with
  another prompt) is at least the session's `gold_rel_threshold` (annotate_ui/logic/listening/results.py).

Exclusion is the admin's decision, never automatic: `exclude_rater` marks the account
(`users.excluded_at`); from then on the rater's votes and ratings are left out of the audit's
verdicts (training, exports, the threshold view's agreement), of every listening session's
statistics and exports, and new ones are refused. The rows stay (nothing is deleted), so
`include_rater` brings them back. Excluding also gives back the rater's open assignments and the
slots of their votes, so other raters fill those pairs.

Every function takes the caller's Session and flushes; the caller commits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from statistics import median
from typing import Optional

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from annotate_ui.logic.auth import get_user
from annotate_ui.logic.playback import DEFAULT_MIN_PLAYED_SHARE, check_share
from db.errors import CuratorError
from db.annotation import AuditAssignment, User
from db.listening import ListeningItem, ListeningRating, ListeningSession
from db.models import AudioClip, Pair, utcnow

FAST_FLAG_SHARE = 0.2  # flagged when at least this share of a rater's timed answers beat the clips' length
RATER_EXCLUDED = "rater excluded"  # skip reason of the open assignments an exclusion gave back


@dataclass
class RaterQuality:
    """One rater's answers as the admin view shows them."""

    name: str
    role: str
    votes: int  # audit votes
    ratings: int  # listening ratings
    median_vote_s: Optional[float]  # time on task
    median_rating_s: Optional[float]
    fast: int  # answers faster than their clips last (module doc)
    timed: int  # answers with a time on task and known clip lengths
    gold_rated: int
    gold_failed: list[str] = field(default_factory=list)  # sessions whose gold rule the rater fails
    excluded: bool = False
    excluded_by: Optional[str] = None
    flags: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def _answers(session: Session) -> tuple[dict, dict]:
    """{user id: [(time on task ms, clips' length ms)]} of audit votes and of listening ratings."""
    win, lose = aliased(AudioClip), aliased(AudioClip)
    votes: dict[int, list] = defaultdict(list)
    for uid, ms, a, b in session.execute(
            select(AuditAssignment.user_id, AuditAssignment.time_on_task_ms, win.duration_s, lose.duration_s)
            .join(Pair, Pair.id == AuditAssignment.pair_id).join(win, win.id == Pair.winner_clip_id)
            .join(lose, lose.id == Pair.loser_clip_id).where(AuditAssignment.state == "done")):
        votes[uid].append((ms, 1000.0 * (float(a) + float(b))))
    ratings: dict[int, list] = defaultdict(list)
    for uid, ms, d in session.execute(
            select(ListeningRating.user_id, ListeningRating.time_on_task_ms, AudioClip.duration_s)
            .join(ListeningItem, ListeningItem.id == ListeningRating.item_id)
            .join(AudioClip, AudioClip.id == ListeningItem.clip_id).where(ListeningRating.rated_at.is_not(None))):
        ratings[uid].append((ms, 1000.0 * float(d)))
    return votes, ratings


def _gold(session: Session) -> tuple[dict, dict]:
    """({user id: gold items rated}, {user id: [session names whose gold rule the user fails]})."""
    rated: dict[int, int] = defaultdict(int)
    failed: dict[int, list] = defaultdict(list)
    rows = session.execute(
        select(ListeningRating.user_id, ListeningSession.name, ListeningSession.gold_rel_threshold,
               func.count(), func.avg(ListeningRating.rel))
        .join(ListeningItem, ListeningItem.id == ListeningRating.item_id)
        .join(ListeningSession, ListeningSession.id == ListeningRating.session_id)
        .where(ListeningItem.is_gold.is_(True), ListeningRating.rel.is_not(None))
        .group_by(ListeningRating.user_id, ListeningSession.id, ListeningSession.name,
                  ListeningSession.gold_rel_threshold)
        .order_by(ListeningSession.id))
    for uid, name, threshold, n, mean_rel in rows:
        rated[uid] += int(n)
        if float(mean_rel) >= float(threshold):
            failed[uid].append(f"{name} (gold mean REL {float(mean_rel):.1f} ≥ {float(threshold):g})")
    return rated, failed


def _median_s(answers: list) -> Optional[float]:
    times = [ms for ms, _ in answers if ms is not None]
    return round(median(times) / 1000.0, 2) if times else None


def rater_quality(session: Session, *, min_played_share: float = DEFAULT_MIN_PLAYED_SHARE) -> list[RaterQuality]:
    """Every account that has answered something (or is excluded), by name, with its flags."""
    share = check_share(min_played_share)
    votes, ratings = _answers(session)
    gold_rated, gold_failed = _gold(session)
    users = session.scalars(select(User).order_by(User.name))
    out = []
    for u in users:
        mine_v, mine_r = votes.get(u.id, []), ratings.get(u.id, [])
        if not (mine_v or mine_r or u.excluded_at is not None):
            continue
        timed = [(ms, length) for ms, length in mine_v + mine_r if ms is not None]
        fast = sum(1 for ms, length in timed if ms < share * length)
        q = RaterQuality(u.name, u.role, len(mine_v), len(mine_r), _median_s(mine_v), _median_s(mine_r), fast,
                         len(timed), gold_rated.get(u.id, 0), gold_failed.get(u.id, []),
                         u.excluded_at is not None, u.excluded_by)
        if timed and fast / len(timed) >= FAST_FLAG_SHARE:
            q.flags.append(f"answers faster than the clips last ({fast} of {len(timed)})")
        if q.gold_failed:
            q.flags.append("fails the gold items: " + "; ".join(q.gold_failed))
        out.append(q)
    return out


def exclude_rater(session: Session, name: str, *, by: str) -> User:
    """Leave rater NAME's answers out of every statistic and export and refuse new ones (module doc)."""
    user = get_user(session, name)
    if user.excluded_at is not None:
        raise CuratorError(f"rater {name!r} is already excluded (by {user.excluded_by or 'an admin'})")
    user.excluded_at, user.excluded_by = utcnow(), str(by)[:100]
    session.execute(
        update(AuditAssignment).where(AuditAssignment.user_id == user.id, AuditAssignment.state == "assigned")
        .values(state="skipped", slot=None, skip_reason=RATER_EXCLUDED, completed_at=utcnow())
        .execution_options(synchronize_session=False))
    # the slots of their votes go back too: those pairs are served to other raters
    session.execute(update(AuditAssignment).where(AuditAssignment.user_id == user.id, AuditAssignment.state == "done")
                    .values(slot=None).execution_options(synchronize_session=False))
    session.flush()
    return user


def include_rater(session: Session, name: str) -> User:
    """Count rater NAME's answers again (the slots given back stay with whoever took them, so a pair
    may then have more votes than its overlap)."""
    user = get_user(session, name)
    if user.excluded_at is None:
        raise CuratorError(f"rater {name!r} is not excluded")
    user.excluded_at = user.excluded_by = None
    session.flush()
    return user


__all__ = ["FAST_FLAG_SHARE", "RaterQuality", "rater_quality", "exclude_rater", "include_rater"]
