"""Training runs as the admin view shows them: plain functions over a Session and the run folders.

`trainer run` records every run in the store (db.training.TrainingRun: its folder, base model,
source, status, checkpoints) and appends a line of DPO metrics to `<run folder>/metrics.jsonl`
every `log_every` steps. `trainer eval --checkpoint DIR` stores a clip set whose checkpoint id is
the checkpoint folder's resolved path and whose note holds the mean score per scorer. So:

* `list_runs`: one row per run, newest first, with its last logged loss, implicit accuracy and
  reward margin (from final_metrics when the run finished, else the last metrics line).
* `run_curves`: the run's curves as a long frame (step, metric, value) of loss, implicit accuracy
  (rewards/accuracies) and reward margin (rewards/margins). A missing file is an empty frame
  (the folder may be on another machine); a torn last line (a run still writing) is skipped.
* `checkpoint_evals`: per checkpoint (and the base model), the eval clip sets of that
  checkpoint with their mean scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from curator.validate import is_int, is_number
from db.errors import CuratorError
from db.listening import ClipSet, ClipSetItem
from db.training import TrainingRun

METRICS_FILE = "metrics.jsonl"  # the name trainer/run_folder.py writes in the run folder
CURVES = (("loss", "loss"), ("rewards/accuracies", "implicit accuracy"), ("rewards/margins", "reward margin"))
MAX_LINES = 200_000  # a metrics file longer than this is read up to here (one line per log_every steps)


@dataclass(frozen=True)
class RunRow:
    id: int
    status: str
    base_model: str
    source: str
    n_pairs: int
    global_step: int
    checkpoints: int
    loss: Optional[float]
    implicit_accuracy: Optional[float]
    reward_margin: Optional[float]
    out_dir: str
    started_at: str
    finished_at: Optional[str]


def _metrics_lines(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / METRICS_FILE
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = []
    with fh:
        for k, raw in enumerate(fh):
            if k >= MAX_LINES:
                break
            try:
                obj = json.loads(raw)
            except ValueError:
                continue  # a line being written, or damaged
            if isinstance(obj, dict) and isinstance(obj.get("step"), (int, float)):
                lines.append(obj)
    return lines


def _number(x: Any) -> Optional[float]:
    return float(x) if is_number(x) else None


def list_runs(session: Session) -> list[RunRow]:
    rows = []
    for run in session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc())):
        last = run.final_metrics or {}
        if not last:
            lines = _metrics_lines(run.out_dir)
            last = lines[-1] if lines else {}
        rows.append(RunRow(run.id, run.status, run.base_model, run.source, run.n_pairs, run.global_step,
                           len(run.checkpoints or []), _number(last.get("loss")),
                           _number(last.get("rewards/accuracies")), _number(last.get("rewards/margins")),
                           run.out_dir, run.started_at.isoformat(timespec="seconds"),
                           run.finished_at.isoformat(timespec="seconds") if run.finished_at else None))
    return rows


def get_run(session: Session, run_id: Any) -> TrainingRun:
    if isinstance(run_id, str) and run_id.strip().isdigit():
        run_id = int(run_id.strip())
    if not is_int(run_id):
        raise CuratorError("choose a training run first")
    run = session.get(TrainingRun, int(run_id))
    if run is None:
        raise CuratorError(f"training run {run_id} does not exist")
    return run


def run_curves(run: TrainingRun) -> pd.DataFrame:
    """Long frame (step, metric, value) of the run's loss, implicit accuracy and reward margin."""
    rows = []
    for line in _metrics_lines(run.out_dir):
        for key, label in CURVES:
            value = _number(line.get(key))
            if value is not None:
                rows.append({"step": int(line["step"]), "metric": label, "value": value})
    return pd.DataFrame(rows, columns=["step", "metric", "value"])


def _resolved(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError, ValueError):
        return path


def checkpoint_evals(session: Session, run: TrainingRun) -> list[dict[str, Any]]:
    """One row per (checkpoint, eval clip set): step ("base" for the base model), clip set, prompts,
    and `mean <scorer>` per scorer as `trainer eval` stored it."""
    targets = [("base", run.base_model)] + [(c.get("step"), c.get("path", "")) for c in (run.checkpoints or [])]
    ids = {}
    for step, path in targets:
        for key in {path, _resolved(path)}:
            ids.setdefault(key, step)
    sets = list(session.scalars(select(ClipSet).where(ClipSet.checkpoint_id.in_(list(ids))).order_by(ClipSet.id)))
    counts = dict(session.execute(select(ClipSetItem.clip_set_id, func.count())
                                  .where(ClipSetItem.clip_set_id.in_([cs.id for cs in sets]))
                                  .group_by(ClipSetItem.clip_set_id)).all()) if sets else {}
    rows = []
    for cs in sets:
        try:
            note = json.loads(cs.note or "{}")
        except ValueError:
            note = {}
        means = note.get("mean") if isinstance(note, dict) and isinstance(note.get("mean"), dict) else {}
        row = {"step": ids[cs.checkpoint_id], "clip set": cs.name, "prompts": counts.get(cs.id, 0)}
        row.update({f"mean {name}": round(float(v), 4) for name, v in sorted(means.items()) if _number(v) is not None})
        rows.append(row)
    order = {step: k for k, (step, _) in enumerate(targets)}
    return sorted(rows, key=lambda r: order.get(r["step"], len(order)))


__all__ = ["RunRow", "list_runs", "get_run", "run_curves", "checkpoint_evals", "METRICS_FILE", "CURVES"]
