"""The store's record of training runs (db.training.TrainingRun). Functions take the caller's
Session and flush; the caller commits. `StoreRecorder` is such a caller: handed to
`trainer.train.run_training`, it records the run over the caller's Session and commits at each
checkpoint and at the end, so a resumable run's record is durable per checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

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


class RunRecorder(Protocol):
    """What `run_training` tells about a run, on its main process."""

    def start(self, cfg, *, base_model: str, source: str, source_hash: str, n_pairs: int,
              resumed_from: str | None) -> int | None: ...

    def checkpoint(self, step: int, path: Path) -> None: ...

    def finish(self, *, status: str, step: int, metrics: dict[str, Any]) -> None: ...

    def failed(self, *, step: int, metrics: dict[str, Any], interrupted: bool, error: str | None) -> None: ...


class StoreRecorder:
    """A run's TrainingRun in SESSION (the caller's): added at the start, committed with each
    checkpoint and at the end; a failed or interrupted run rolls back what it left pending and
    commits its status."""

    def __init__(self, session: Session):
        self.session = session
        self.run: TrainingRun | None = None

    def start(self, cfg, *, base_model: str, source: str, source_hash: str, n_pairs: int,
              resumed_from: str | None) -> int:
        self.run = start_run(self.session, cfg, base_model=base_model, source=source, source_hash=source_hash,
                             n_pairs=n_pairs, resumed_from=resumed_from)
        return self.run.id

    def checkpoint(self, step: int, path: Path) -> None:
        record_checkpoint(self.session, self.run, step, path)
        self.session.commit()

    def finish(self, *, status: str, step: int, metrics: dict[str, Any]) -> None:
        finish_run(self.session, self.run, status=status, step=step, metrics=metrics)
        self.session.commit()

    def failed(self, *, step: int, metrics: dict[str, Any], interrupted: bool, error: str | None) -> None:
        self.session.rollback()
        finish_run(self.session, self.run, status="interrupted" if interrupted else "failed", step=step,
                   metrics=metrics, error=error)
        self.session.commit()
