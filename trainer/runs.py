"""The store's record of training runs (db.training.TrainingRun). Functions take the caller's
Session and flush; the caller commits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.models import utcnow
from db.training import TrainingRun


def start_run(session: Session, cfg, *, base_model: str, source: str, source_hash: str, n_pairs: int,
              resumed_from: str | None = None) -> TrainingRun:
    run = TrainingRun(out_dir=str(Path(cfg.out).resolve()), base_model=base_model, source=source,
                      source_hash=source_hash, n_pairs=n_pairs, config=cfg.to_dict(), status="running",
                      global_step=0, checkpoints=[], resumed_from=resumed_from)
    session.add(run)
    session.flush()
    return run


def record_checkpoint(session: Session, run: TrainingRun, step: int, path: Path) -> None:
    entries = [c for c in (run.checkpoints or []) if c.get("step") != step]
    run.checkpoints = entries + [{"step": step, "path": str(Path(path).resolve())}]
    run.global_step = step
    session.flush()


def finish_run(session: Session, run: TrainingRun, *, status: str, step: int, metrics: dict[str, Any] | None,
               error: str | None = None) -> None:
    run = session.merge(run)
    run.status = status
    run.global_step = step
    run.final_metrics = dict(metrics or {}) or None
    run.error = error
    run.finished_at = utcnow()
    session.flush()
