"""Logins of the rater app, kept in the store so every server process sees them.

* `LoginSession`: one logged-in browser. Only the SHA-256 of its cookie token is stored (a copy
  of the store does not hand out live logins); `last_seen` is the server clock (seconds) of its
  last use, for the idle timeout.
* `LoginStrike`: failed logins of one account name or one client address, and its lockout
  (`until`, server clock seconds); see annotate_ui/logins.py.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, utcnow


class LoginSession(Base):
    __tablename__ = "login_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[float] = mapped_column(Float)


class LoginStrike(Base):
    __tablename__ = "login_strikes"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # "account" or "client"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    lockouts: Mapped[int] = mapped_column(Integer, default=0)
    until: Mapped[float] = mapped_column(Float, default=0.0)
    last: Mapped[float] = mapped_column(Float, default=0.0)
