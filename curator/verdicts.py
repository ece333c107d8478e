"""The raters' verdicts on a pair, counted from the audit votes: the rater app writes the votes,
the trainer's audit policy reads the counts. An open (unanswered) assignment is no verdict; a
skip is counted apart from the votes; the answers of a rater an admin excluded (`users.excluded_at`,
annotate_ui/logic/quality.py) count nowhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from db.annotation import AuditAssignment, User

# an assignment whose rater no admin has excluded: the votes that count (training, exports, statistics)
COUNTED_RATER = ~exists().where(User.id == AuditAssignment.user_id, User.excluded_at.is_not(None))


@dataclass
class Verdicts:
    """Completed votes on one pair (and its skips). agree: the rater preferred the automatic winner."""

    agree: int = 0
    disagree: int = 0
    both_good: int = 0
    both_bad: int = 0
    skipped: int = 0

    @property
    def votes(self) -> int:
        return self.agree + self.disagree + self.both_good + self.both_bad


_OUTCOME_FIELD = {"winner": "agree", "loser": "disagree", "both_good": "both_good", "both_bad": "both_bad"}


def verdict_counts(session: Session, pair_ids: Iterable[int] | None = None) -> dict[int, Verdicts]:
    """Per pair: completed votes by outcome, and skips. Open (unanswered) assignments and the
    answers of excluded raters do not count."""
    q = (select(AuditAssignment.pair_id, AuditAssignment.state, AuditAssignment.outcome, func.count())
         .where(AuditAssignment.state.in_(("done", "skipped")), COUNTED_RATER)
         .group_by(AuditAssignment.pair_id, AuditAssignment.state, AuditAssignment.outcome))
    rows: list = []
    if pair_ids is None:
        rows = session.execute(q).all()
    else:
        ids = [int(p) for p in pair_ids]
        for i in range(0, len(ids), 500):
            rows.extend(session.execute(q.where(AuditAssignment.pair_id.in_(ids[i:i + 500]))).all())
    out: dict[int, Verdicts] = {}
    for pair_id, state, outcome, n in rows:
        vc = out.setdefault(int(pair_id), Verdicts())
        if state == "skipped":
            vc.skipped += int(n)
        else:
            name = _OUTCOME_FIELD[outcome]
            setattr(vc, name, getattr(vc, name) + int(n))
    return out
