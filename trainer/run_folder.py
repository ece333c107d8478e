"""What a `trainer run` writes in its run folder DIR, and reads back to resume.

DIR/step-K/ is a complete model folder (trainer.model.save_model: a Tango folder, or an
AudioLDMPipeline folder; `curator generate --checkpoint DIR/step-K` loads it) plus `accelerate/`
(optimizer, scheduler, RNG, grad scaler; the UNet weights are not stored twice, the model files are
the weights), `trainer_config.json` and `trainer_state.json`. Written to a temporary folder and
renamed; with `checkpoints_total_limit=N` the oldest step-K/ folders beyond N are then removed
(never the one the run resumed from). `--resume latest` is the highest K in the run folder.

DIR/metrics.jsonl: one line per logged step, the record the run itself reads; with `report_to`
(tensorboard, wandb, trackio, mlflow) every line also goes through accelerate's trackers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from db.errors import CuratorError
from curator.fsutil import atomic_write_bytes, atomic_write_json
from trainer.config import TrainConfig, config_from_dict
from trainer.model import load_base, save_model, unet_signature

CONFIG_FILE = "trainer_config.json"
STATE_FILE = "trainer_state.json"
ACCEL_DIR = "accelerate"
METRICS_FILE = "metrics.jsonl"


def read_checkpoint(path: str | Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The config and trainer state saved in DIR/step-K (one clear line when it is not one)."""
    path = Path(path)
    cfg_file, state_file = path / CONFIG_FILE, path / STATE_FILE
    if not cfg_file.is_file() or not state_file.is_file() or not (path / ACCEL_DIR).is_dir():
        raise CuratorError(f"--resume {path}: not a trainer checkpoint (expected {CONFIG_FILE}, {STATE_FILE} "
                           f"and {ACCEL_DIR}/ from `trainer run`)")
    try:
        saved = json.loads(cfg_file.read_text(encoding="utf-8"))
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CuratorError(f"--resume {path}: damaged checkpoint ({exc})") from None
    return config_from_dict(saved, where=str(cfg_file)), state


def checkpoint_steps(out: str | Path) -> list[tuple[int, Path]]:
    """(K, DIR/step-K) of every complete checkpoint in the run folder OUT, oldest first."""
    found = []
    for p in Path(out).glob("step-*"):
        k = p.name[len("step-"):]
        if k.isdigit() and p.is_dir() and (p / STATE_FILE).is_file():
            found.append((int(k), p))
    return sorted(found)


def latest_checkpoint(out: str | Path) -> Path:
    """DIR/step-K with the highest K (`--resume latest`); one line when the run has none."""
    if not Path(out).is_dir():
        raise CuratorError(f"--resume latest: the run folder {out} does not exist")
    steps = checkpoint_steps(out)
    if not steps:
        raise CuratorError(f"--resume latest: no checkpoint in {out} (no step-K/ folder with {STATE_FILE}); "
                           "start the run without --resume")
    return steps[-1][1]


def prune_checkpoints(out: str | Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Remove the oldest DIR/step-K folders so at most LIMIT remain (0 = keep all); KEEP (the
    checkpoint being resumed from) is never removed. Returns the removed folders."""
    if limit <= 0:
        return []
    keep_resolved = Path(keep).resolve() if keep is not None else None
    steps = [p for _, p in checkpoint_steps(out)]
    excess = len(steps) - limit
    removed = []
    for p in steps:
        if excess <= 0:
            break
        if keep_resolved is not None and p.resolve() == keep_resolved:
            continue
        shutil.rmtree(p)
        removed.append(p)
        excess -= 1
    return removed


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics lines past STEP (a resumed run rewrites them)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    atomic_write_bytes(path, ("\n".join(keep) + ("\n" if keep else "")).encode("utf-8"))


# report_to → (the module accelerate needs for it, the extra that installs it)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
            "trackio": ("trackio", "trackio"), "mlflow": ("mlflow", "mlflow")}


def tracker_for(report_to: str) -> str | None:
    """accelerate's `log_with` name for REPORT_TO (None for "none"); one line naming the extra when
    the tracker's package is not installed."""
    if report_to == "none":
        return None
    import importlib.util

    module, extra = TRACKERS[report_to]
    if importlib.util.find_spec(module) is None:
        raise CuratorError(f"report_to={report_to} needs the {module} package: "
                           f"pip install 'audio-alpaca-studio[{extra}]'")
    return report_to


class MetricsLog:
    """Appends a run's metrics lines to DIR/metrics.jsonl (main process) and sends them to the
    accelerate trackers (every process, as accelerate expects)."""

    def __init__(self, accelerator, out: Path, *, trackers: bool):
        self.accelerator, self.path, self.trackers = accelerator, Path(out) / METRICS_FILE, trackers

    def write(self, line: dict[str, Any], step: int) -> None:
        if self.accelerator.is_main_process:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, sort_keys=True) + "\n")
        if self.trackers:
            self.accelerator.log({k: v for k, v in line.items() if isinstance(v, (int, float))}, step=step)


def register_state_hooks(accelerator) -> None:
    """accelerate's checkpoint hooks: the UNet's weights live in the model files of DIR/step-K,
    not twice in accelerate/; loading reads them from there (after checking the architecture)."""

    def save_hook(models, weights, output_dir):
        while weights:
            weights.pop()

    def load_hook(models, input_dir):
        model = models.pop()
        step_tango = load_base(str(Path(input_dir).parent))
        if unet_signature(step_tango.unet) != unet_signature(accelerator.unwrap_model(model)):
            raise CuratorError(f"--resume {Path(input_dir).parent}: a checkpoint of another UNet architecture")
        accelerator.unwrap_model(model).load_state_dict(step_tango.unet.state_dict())

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


class CheckpointWriter:
    """Writes DIR/step-K for the run: the model (the base with the trained UNet), accelerate's state,
    the config and the trainer state; then prunes to checkpoints_total_limit and calls ON_SAVED(K,
    path) on the main process (the run's record). Every process calls it (accelerate's state is
    collective)."""

    def __init__(self, accelerator, cfg: TrainConfig, out: Path, *, tango, unet, state: Callable[[int], dict],
                 keep: Path | None, on_saved: Callable[[int, Path], None] | None = None):
        self.accelerator, self.cfg, self.out, self.tango, self.unet = accelerator, cfg, Path(out), tango, unet
        self.state, self.keep, self.on_saved = state, keep, on_saved
        self.written: list[Path] = []

    def __call__(self, step: int) -> Path:
        accelerator, out = self.accelerator, self.out
        main = accelerator.is_main_process
        final = out / f"step-{step}"
        tmp = out / f".step-{step}.tmp"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            policy = accelerator.unwrap_model(self.unet)
            saved_unet, self.tango.unet = self.tango.unet, policy
            try:
                save_model(self.tango, tmp)
            finally:
                self.tango.unet = saved_unet
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp / ACCEL_DIR))
        accelerator.wait_for_everyone()
        if main:
            (tmp / CONFIG_FILE).write_text(self.cfg.to_json() + "\n", encoding="utf-8")
            atomic_write_json(tmp / STATE_FILE, {**self.state(step), "unet": unet_signature(policy)})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            prune_checkpoints(out, self.cfg.checkpoints_total_limit, keep=self.keep)
            if self.on_saved is not None:
                self.on_saved(step, final)
        accelerator.wait_for_everyone()
        self.written.append(final)
        return final
