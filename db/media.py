"""Media grants: what each opaque `media/<token>` URL stands for, and what the audio route served.

A grant is issued to one user for one clip as that user sees it: side `side` ("a"/"b") of audit
assignment `assignment_id` (KIND "audit"), or listening item `item_id` of session `session_id`
(KIND "listen"). WHAT is "audio" (the clip) or "spectrogram" (its image; never counts as
playback). Grants live in the store, so every server process answers every token, and the
playback record is the same whichever process served a range:

* `total_bytes`: the size of the blind copy of that token (the same in every process: the copy is
  deterministic per token);
* `served_ranges`: the byte ranges the route has sent, merged, as [[start, end), ...];
  `bytes_served` their total; `serves` counts the responses (and versions the row: a writer
  updates only the version it read, so two processes recording ranges of one token lose nothing);
* `completed_at`: when the last byte of the copy was first sent (the clip reached its end).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, utcnow

GRANT_KINDS = ("audit", "listen")
GRANT_WHATS = ("audio", "spectrogram")


class MediaGrant(Base):
    __tablename__ = "media_grants"
    __table_args__ = (
        CheckConstraint("kind IN ('audit', 'listen')", name="kind"),
        CheckConstraint("what IN ('audio', 'spectrogram')", name="what"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    what: Mapped[str] = mapped_column(String(16), default="audio")
    assignment_id: Mapped[Optional[int]] = mapped_column(ForeignKey("audit_assignments.id", ondelete="CASCADE"))
    side: Mapped[Optional[str]] = mapped_column(String(1))
    session_id: Mapped[Optional[int]] = mapped_column(ForeignKey("listening_sessions.id", ondelete="CASCADE"))
    item_id: Mapped[Optional[int]] = mapped_column(ForeignKey("listening_items.id", ondelete="CASCADE"))
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    total_bytes: Mapped[Optional[int]] = mapped_column(Integer)
    served_ranges: Mapped[list[Any]] = mapped_column(default=list)
    bytes_served: Mapped[int] = mapped_column(Integer, default=0)
    serves: Mapped[int] = mapped_column(Integer, default=0)
    first_served_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))


Index("ix_media_grants_user_assignment", MediaGrant.user_id, MediaGrant.assignment_id)
Index("ix_media_grants_user_item", MediaGrant.user_id, MediaGrant.item_id)
