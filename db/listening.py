"""Listening sessions: the subjective OVL/REL evaluation of arXiv 2404.09956 §5.3.

A *clip set* is one system's answer to a set of prompts: caption → audio clip, all made by one
generator/checkpoint (the trainer's `trainer eval` writes one, with AudioClip.strategy "eval").
A *listening session* crosses a set of prompts with several clip sets; each (system, prompt)
clip is one *item*, plus a few *gold* items (a clip shown with another prompt, so its REL must
be low) that screen raters. Every rater gets every item of the session in an order of their
own (seeded by session seed and user id) recorded as `position`; the rating (OVL and REL, 1–5)
is written into the same row, stamped with the authenticated user. Raters never see which
system made a clip.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.models import AudioClip, Base, Caption, utcnow

# arXiv 2404.09956 §5.3: "every clip rated by at least 4 annotators"
DEFAULT_N_PROMPTS = 50  # arXiv 2404.09956 §5.3: 50 random AudioCaps test prompts
DEFAULT_MIN_RATERS = 4
# A rater whose mean REL on gold (mismatched-prompt) items is at least this is excluded.
DEFAULT_GOLD_REL_THRESHOLD = 3.0


class ClipSet(Base):
    """One system's clips for a set of prompts (one generator and checkpoint)."""

    __tablename__ = "clip_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    generator: Mapped[str] = mapped_column(String(100))
    checkpoint_id: Mapped[str] = mapped_column(String(500))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    items: Mapped[list["ClipSetItem"]] = relationship(back_populates="clip_set", cascade="all, delete-orphan")


class ClipSetItem(Base):
    __tablename__ = "clip_set_items"
    __table_args__ = (UniqueConstraint("clip_set_id", "caption_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_set_id: Mapped[int] = mapped_column(ForeignKey("clip_sets.id", ondelete="CASCADE"), index=True)
    caption_id: Mapped[int] = mapped_column(ForeignKey("captions.id", ondelete="CASCADE"), index=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("audio_clips.id", ondelete="CASCADE"))

    clip_set: Mapped[ClipSet] = relationship(back_populates="items")
    clip: Mapped[AudioClip] = relationship()
    caption: Mapped[Caption] = relationship()


class ListeningSession(Base):
    """Prompts × clip sets, rated blind by raters (arXiv 2404.09956 §5.3)."""

    __tablename__ = "listening_sessions"
    __table_args__ = (
        CheckConstraint("min_raters >= 1", name="min_raters_positive"),
        CheckConstraint("gold_rel_threshold >= 1 AND gold_rel_threshold <= 5", name="gold_threshold_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    min_raters: Mapped[int] = mapped_column(Integer, default=DEFAULT_MIN_RATERS)
    gold_rel_threshold: Mapped[float] = mapped_column(Float, default=DEFAULT_GOLD_REL_THRESHOLD)
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    systems: Mapped[list["ListeningSystem"]] = relationship(back_populates="session", cascade="all, delete-orphan",
                                                           order_by="ListeningSystem.position")
    items: Mapped[list["ListeningItem"]] = relationship(back_populates="session", cascade="all, delete-orphan",
                                                       order_by="ListeningItem.id")


class ListeningSystem(Base):
    """A clip set taking part in a session; `position` is its order in the results."""

    __tablename__ = "listening_systems"
    __table_args__ = (UniqueConstraint("session_id", "clip_set_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("listening_sessions.id", ondelete="CASCADE"), index=True)
    clip_set_id: Mapped[int] = mapped_column(ForeignKey("clip_sets.id", ondelete="RESTRICT"))
    position: Mapped[int] = mapped_column(Integer, default=0)

    session: Mapped[ListeningSession] = relationship(back_populates="systems")
    clip_set: Mapped[ClipSet] = relationship()


class ListeningItem(Base):
    """One clip shown with one prompt. Gold items show a clip of another caption (`clip_caption_id`)."""

    __tablename__ = "listening_items"
    __table_args__ = (UniqueConstraint("session_id", "clip_set_id", "caption_id", "is_gold"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("listening_sessions.id", ondelete="CASCADE"), index=True)
    clip_set_id: Mapped[int] = mapped_column(ForeignKey("clip_sets.id", ondelete="RESTRICT"))
    clip_id: Mapped[int] = mapped_column(ForeignKey("audio_clips.id", ondelete="RESTRICT"))
    # the caption whose text is shown as the prompt
    caption_id: Mapped[int] = mapped_column(ForeignKey("captions.id", ondelete="RESTRICT"))
    prompt: Mapped[str] = mapped_column(Text)  # snapshot of the text shown
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_kind: Mapped[Optional[str]] = mapped_column(String(32))

    session: Mapped[ListeningSession] = relationship(back_populates="items")
    clip: Mapped[AudioClip] = relationship()
    clip_set: Mapped[ClipSet] = relationship()


class ListeningRating(Base):
    """A rater's assignment of one item (its place in their order) and, once given, the rating."""

    __tablename__ = "listening_ratings"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id"),
        UniqueConstraint("session_id", "user_id", "position"),
        CheckConstraint("ovl IS NULL OR (ovl >= 1 AND ovl <= 5)", name="ovl_range"),
        CheckConstraint("rel IS NULL OR (rel >= 1 AND rel <= 5)", name="rel_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("listening_sessions.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("listening_items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 0-based place in this rater's order
    ovl: Mapped[Optional[int]] = mapped_column(Integer)  # overall quality, 1–5 (arXiv 2404.09956 §5.3)
    rel: Mapped[Optional[int]] = mapped_column(Integer)  # relevance to the text, 1–5 (arXiv 2404.09956 §5.3)
    rated_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    skipped_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    skip_reason: Mapped[Optional[str]] = mapped_column(Text)
    # server clock: when the item was first shown to the rater (again after an undo), and from then to the rating
    served_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    time_on_task_ms: Mapped[Optional[int]] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    item: Mapped[ListeningItem] = relationship()
