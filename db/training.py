"""Training runs of `trainer run`: what was trained, on which pairs, and how it went.

One row per run. `config` is the validated trainer config (the same JSON saved in every
checkpoint); `source_hash` is the sha256 of the pair set actually trained on (prompt + clip
shas, in order), so two runs on the same approved set can be recognised.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import JSON, CheckConstraint, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, utcnow


class TrainingRun(Base):
    __tablename__ = "training_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'finished', 'failed', 'interrupted')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    out_dir: Mapped[str] = mapped_column(String(1000), index=True)
    base_model: Mapped[str] = mapped_column(String(1000))
    # "export:<path>" or "store:<preset>/<audit policy>"
    source: Mapped[str] = mapped_column(String(1000))
    source_hash: Mapped[str] = mapped_column(String(64))
    n_pairs: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="running")
    global_step: Mapped[int] = mapped_column(Integer, default=0)
    # [{"step": K, "path": "DIR/step-K"}, ...] in order
    checkpoints: Mapped[list[Any]] = mapped_column(JSON, default=list)
    final_metrics: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[Optional[str]] = mapped_column(Text)
    resumed_from: Mapped[Optional[str]] = mapped_column(String(1000))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
