"""Raters and the blind pair audit.

* `User`: an account of the rater app; the password is kept only as an argon2 hash.
* `AuditItem`: a pair put in the audit queue by an admin (why, how urgent, how many raters).
* `AuditAssignment`: one pair shown to one rater. `a_is_winner` records the blind side drawn for
  this assignment; `verdict` is what the rater clicked ("A", "B", "both_good", "both_bad") and
  `outcome` the same resolved against the automatic winner ("winner", "loser", "both_good",
  "both_bad"). `time_on_task_ms` is the server's time from serving the pair to the vote.
* `User.excluded_at`: an admin left this rater out; their votes stay as rows but count nowhere.

Concurrency: (pair_id, user_id) is unique, so a pair never goes twice to the same rater, and
(pair_id, slot) is unique with slot in 0..overlap-1, so a pair never holds more than `overlap`
live assignments whatever the interleaving. A skipped assignment gives its slot back (slot NULL;
NULLs never collide) and stays as a row, so the pair is not served to that rater again.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, utcnow

ROLES = ("admin", "rater")
VERDICTS = ("A", "B", "both_good", "both_bad")
DEFAULT_OVERLAP = 3  # each pair to N distinct raters


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'rater')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    # set by an admin: this rater's votes and ratings are left out of every statistic and export,
    # and new ones are refused (NULL: the rater counts)
    excluded_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    excluded_by: Mapped[Optional[str]] = mapped_column(String(100))


class AuditItem(Base):
    """A pair in the audit queue. Higher priority is served first."""

    __tablename__ = "audit_items"
    __table_args__ = (CheckConstraint("overlap >= 1", name="overlap"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), unique=True)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(String(50))  # "uncertain", "random", ...
    overlap: Mapped[int] = mapped_column(Integer, default=DEFAULT_OVERLAP)
    added_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditAssignment(Base):
    __tablename__ = "audit_assignments"
    __table_args__ = (
        UniqueConstraint("pair_id", "user_id"),
        UniqueConstraint("pair_id", "slot"),
        CheckConstraint("state IN ('assigned', 'done', 'skipped')", name="state"),
        CheckConstraint("verdict IS NULL OR verdict IN ('A', 'B', 'both_good', 'both_bad')", name="verdict"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    slot: Mapped[Optional[int]] = mapped_column(Integer)
    a_is_winner: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16), default="assigned")
    verdict: Mapped[Optional[str]] = mapped_column(String(16))
    outcome: Mapped[Optional[str]] = mapped_column(String(16))
    note: Mapped[Optional[str]] = mapped_column(Text)
    skip_reason: Mapped[Optional[str]] = mapped_column(String(200))
    assigned_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    served_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    # server clock: from the pair being served (served_at) to the vote
    time_on_task_ms: Mapped[Optional[int]] = mapped_column(Integer)


Index("ix_audit_assignments_user_state", AuditAssignment.user_id, AuditAssignment.state)
Index("ix_audit_items_priority", AuditItem.priority)
