"""SQLAlchemy 2 typed models of the curation store.

One table per thing the Tango 2 pipeline makes (arXiv 2404.09956 §4.1): captions, selection runs,
LLM perturbations, generated audio clips, CLAP models, scores, candidate pairs with their
per-model scores, threshold presets and exports. Later issues add raters, audits, ratings and
training runs in their own migrations.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Strategies of arXiv 2404.09956 §4.1: 1.1 (steps 5/25/50/100), 1.2 (4 seeds at 50 steps),
# 2 (perturbed concepts), 3 (perturbed temporal order).
STRATEGIES = ("1.1", "1.2", "2", "3")


def text_hash(text: str) -> str:
    """sha256 of a text, the key captions and scores are unique on."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Caption(Base):
    __tablename__ = "captions"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    text_sha: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(200), default="")
    split: Mapped[str] = mapped_column(String(32), default="train")
    # cluster of the latest selection run that picked it (None: never selected)
    cluster: Mapped[Optional[int]] = mapped_column(Integer)
    # T2 of arXiv 2404.09956 §4.1: contains while/before/after/then/followed
    temporal: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    audiocap_id: Mapped[Optional[str]] = mapped_column(String(64))
    youtube_id: Mapped[Optional[str]] = mapped_column(String(64))
    start_time: Mapped[Optional[float]] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SelectionRun(Base):
    """One `curator captions select`: embedding model + KMeans (arXiv 2404.09956 §4.1, T1)."""

    __tablename__ = "selection_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    embedding_model: Mapped[str] = mapped_column(String(500))
    clusters: Mapped[int] = mapped_column(Integer)
    per_cluster: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    n_candidates: Mapped[int] = mapped_column(Integer, default=0)
    n_selected: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    members: Mapped[list["Selection"]] = relationship(back_populates="run", cascade="all, delete-orphan")


class Selection(Base):
    __tablename__ = "selections"

    run_id: Mapped[int] = mapped_column(ForeignKey("selection_runs.id", ondelete="CASCADE"), primary_key=True)
    caption_id: Mapped[int] = mapped_column(ForeignKey("captions.id", ondelete="CASCADE"), primary_key=True)
    cluster: Mapped[int] = mapped_column(Integer)
    # distance to the cluster centre (the closest are taken first)
    distance: Mapped[float] = mapped_column(Float, default=0.0)

    run: Mapped[SelectionRun] = relationship(back_populates="members")


class PerturbationRequest(Base):
    """One LLM call for one caption and strategy; the raw answer is kept so it is never asked twice."""

    __tablename__ = "perturbation_requests"
    __table_args__ = (UniqueConstraint("caption_id", "strategy", "model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    caption_id: Mapped[int] = mapped_column(ForeignKey("captions.id", ondelete="CASCADE"), index=True)
    strategy: Mapped[str] = mapped_column(String(4))  # "2" or "3"
    model: Mapped[str] = mapped_column(String(200))
    raw_response: Mapped[str] = mapped_column(Text)
    n_parsed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Perturbation(Base):
    __tablename__ = "perturbations"
    __table_args__ = (UniqueConstraint("request_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("perturbation_requests.id", ondelete="CASCADE"), index=True)
    caption_id: Mapped[int] = mapped_column(ForeignKey("captions.id", ondelete="CASCADE"), index=True)
    strategy: Mapped[str] = mapped_column(String(4))
    model: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


class AudioClip(Base):
    """A clip in the content-addressed audio store, with how it was made."""

    __tablename__ = "audio_clips"
    __table_args__ = (
        UniqueConstraint("caption_id", "strategy", "slot", "generator", "checkpoint_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(300))  # relative to the audio root
    sample_rate: Mapped[int] = mapped_column(Integer)
    num_samples: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    generator: Mapped[str] = mapped_column(String(100))
    checkpoint_id: Mapped[str] = mapped_column(String(500))
    steps: Mapped[Optional[int]] = mapped_column(Integer)
    guidance: Mapped[Optional[float]] = mapped_column(Float)
    seed: Mapped[Optional[int]] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)  # the prompt actually used
    caption_id: Mapped[int] = mapped_column(ForeignKey("captions.id", ondelete="CASCADE"), index=True)
    perturbation_id: Mapped[Optional[int]] = mapped_column(ForeignKey("perturbations.id", ondelete="SET NULL"))
    strategy: Mapped[str] = mapped_column(String(4))
    slot: Mapped[int] = mapped_column(Integer, default=0)  # position within the caption's group
    # what was done to the audio on the way in (resampled, downmixed), or None
    note: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ClapModel(Base):
    """A scorer of the ensemble. `position` orders the ensemble: model 1 ranks Strategy 1."""

    __tablename__ = "clap_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    checkpoint: Mapped[str] = mapped_column(String(500))
    file_hash: Mapped[Optional[str]] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(String(50), default="clap")
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Score(Base):
    """score(clip, text) under one model; cached per (clip sha, text, model)."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("clip_sha", "text_sha", "model_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_sha: Mapped[str] = mapped_column(String(64))
    text_sha: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    model_id: Mapped[int] = mapped_column(ForeignKey("clap_models.id", ondelete="CASCADE"), index=True)
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Pair(Base):
    """A candidate winner/loser pair for a caption (arXiv 2404.09956 §4.1.2)."""

    __tablename__ = "pairs"
    __table_args__ = (UniqueConstraint("winner_clip_id", "loser_clip_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    caption_id: Mapped[int] = mapped_column(ForeignKey("captions.id", ondelete="CASCADE"), index=True)
    winner_clip_id: Mapped[int] = mapped_column(ForeignKey("audio_clips.id", ondelete="CASCADE"))
    loser_clip_id: Mapped[int] = mapped_column(ForeignKey("audio_clips.id", ondelete="CASCADE"))
    strategy: Mapped[str] = mapped_column(String(4), index=True)
    source: Mapped[str] = mapped_column(String(200), default="auto")  # "auto" or "import:<name>"
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    scores: Mapped[list["PairScore"]] = relationship(back_populates="pair", cascade="all, delete-orphan")


class PairScore(Base):
    """Winner and loser score of a pair under one model (denormalised for the filter)."""

    __tablename__ = "pair_scores"

    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("clap_models.id", ondelete="CASCADE"), primary_key=True)
    winner_score: Mapped[float] = mapped_column(Float)
    loser_score: Mapped[float] = mapped_column(Float)

    pair: Mapped[Pair] = relationship(back_populates="scores")


class Preset(Base):
    """Filter thresholds (arXiv 2404.09956 §4.1.2). model1/model2 name the ensemble's models
    (None: the first two models by position)."""

    __tablename__ = "presets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    alpha1: Mapped[float] = mapped_column(Float)
    alpha2: Mapped[float] = mapped_column(Float)
    beta1: Mapped[float] = mapped_column(Float)
    beta2: Mapped[float] = mapped_column(Float)
    delta1_min: Mapped[float] = mapped_column(Float)
    delta1_max: Mapped[float] = mapped_column(Float)
    delta2_min: Mapped[float] = mapped_column(Float)
    delta2_max: Mapped[float] = mapped_column(Float)
    model1: Mapped[Optional[str]] = mapped_column(String(200))
    model2: Mapped[Optional[str]] = mapped_column(String(200))
    author: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Export(Base):
    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(1000))
    preset_name: Mapped[str] = mapped_column(String(200))
    n_pairs: Mapped[int] = mapped_column(Integer)
    table_sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


Index("ix_audio_clips_caption_strategy", AudioClip.caption_id, AudioClip.strategy)
Index("ix_scores_lookup", Score.clip_sha, Score.model_id)
