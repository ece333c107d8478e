"""The trainer's config: one typed dataclass, validated on load, saved in every checkpoint.

Defaults are the Tango 2 recipe (arXiv 2404.09956 §5.1). A config comes from `--config FILE` (JSON,
TOML or YAML, a flat table of the fields below) and `--set key=value` overrides; unknown keys and
out-of-range values are refused with a message naming them (never silently fixed).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from curator import paper
from db.errors import CuratorError
from curator.fsutil import read_utf8
from curator.validate import is_int, is_number

AUDIT_POLICIES = ("ignore", "drop-rejected", "human-winner", "majority")


def _key(default: Any, meaning: str, paper: str = "") -> Any:
    """A config field whose meaning (and paper section) live in its metadata: `trainer run --help`
    and the docs are generated from them."""
    return field(default=default, metadata={"help": meaning, "paper": paper})


@dataclass
class TrainConfig:
    """Every knob of `trainer run`; each field's metadata says what it means and where the paper sets it."""

    # --- what to train, on what, where ---
    model: str = _key("tiny", "tiny, a Tango folder (main_config.json …), a hub id, or an AudioLDM pipeline folder "
                      "(the reference model)", "§5.1")
    data: str = _key("", "an export folder or .parquet file, a datasets folder (save_to_disk) or hub id in the "
                     "Audio-alpaca layout, or 'store' (pairs from --db with --preset)", "§4.1")
    out: str = _key("", "run folder: DIR/step-K/ checkpoints, DIR/metrics.jsonl")
    preset: str = _key("paper", "store source only: the filter preset (curator.filter)", "§4.1.2")
    audit_policy: Literal["ignore", "drop-rejected", "human-winner", "majority"] = _key(
        "drop-rejected", "store source only: what the raters' audits do to a pair (trainer/data.py)")
    max_pairs: int = _key(0, "0 = all pairs; N = the first N (smoke runs)")

    # --- Diffusion-DPO ---
    beta: float = _key(paper.DPO_BETA, "β of Eq. 17; the loss uses β/2 (trainer/loss.py)", "§4.2, §5.1")
    sft_epochs: int = _key(paper.SFT_EPOCHS, "epochs of plain diffusion loss on (prompt, winner) first", "§5.1")
    dpo_epochs: int = _key(paper.DPO_EPOCHS, "then epochs of Diffusion-DPO", "§5.1")
    max_steps: int = _key(0, "0 = (sft_epochs + dpo_epochs) epochs; N = stop after N optimizer steps")
    uncond_prob: float = _key(paper.UNCOND_PROB, "conditioning dropout (zeroed text embedding), the same for both halves of a pair",
                              "§3.1")
    latent: Literal["mean", "sample"] = _key("mean", "VAE posterior mean, or one fixed (seeded) sample per clip")
    duration_s: float = _key(paper.CLIP_SECONDS, "clips padded/trimmed to this many seconds before the mel", "§3.1")

    # --- optimisation ---
    optimizer: Literal["adamw", "adamw8bit", "adafactor"] = _key(
        "adamw", "adamw (torch, fused on CUDA), adamw8bit (bitsandbytes, the lowmem extra) or adafactor", "§5.1")
    learning_rate: float = _key(paper.LEARNING_RATE, "peak learning rate", "§5.1")
    adam_beta1: float = _key(0.9, "AdamW β1", "§5.1")
    adam_beta2: float = _key(0.999, "AdamW β2", "§5.1")
    weight_decay: float = _key(0.01, "AdamW weight decay", "§5.1")
    adam_epsilon: float = _key(1e-8, "AdamW ε", "§5.1")
    lr_scheduler: Literal["linear", "constant_with_warmup", "cosine", "constant"] = _key(
        "linear", "learning-rate schedule after warmup (diffusers.optimization)", "§5.1")
    lr_warmup_steps: int = _key(paper.LR_WARMUP_STEPS, "optimizer steps of linear warmup", "§5.1")
    max_grad_norm: float = _key(1.0, "gradient clipping norm; 0 = no clipping")
    train_batch_size: int = _key(paper.TRAIN_BATCH_SIZE, "pairs per device per micro-batch", "§5.1")
    gradient_accumulation_steps: int = _key(paper.GRADIENT_ACCUMULATION_STEPS, "micro-batches per optimizer step (4 × 4 × 2 GPUs = 32)", "§5.1")

    # --- scale ---
    mixed_precision: Literal["no", "fp16", "bf16"] = _key(
        "no", "autocast dtype with fp32 master weights (accelerate)")
    gradient_checkpointing: bool = _key(False, "recompute the UNet's activations in the backward pass (less memory)")
    memory_check: bool = _key(
        True, "refuse, before the loop, a run whose estimated peak memory exceeds the device's free memory "
              "(trainer/memory.py)")
    precompute_reference: bool = _key(
        True, "the frozen reference's MSE of every DPO micro-batch computed in one pass before the loop "
              "(trainer/reference.py, like TRL's precompute_ref_log_probs); false = a live reference pass per step",
        "§4.2")

    # --- bookkeeping ---
    seed: int = _key(0, "seed of the sample order, timesteps, noise and dropout")
    checkpoint_every: int = _key(500, "optimizer steps between DIR/step-K/ checkpoints (and one at the end)")
    checkpoints_total_limit: int = _key(
        0, "keep at most this many DIR/step-K/ checkpoints, removing the oldest after a new one is written "
           "(never the one resumed from); 0 = keep all")
    log_every: int = _key(10, "optimizer steps between metrics.jsonl lines")
    report_to: Literal["none", "tensorboard", "wandb", "trackio", "mlflow"] = _key(
        "none", "also log the metrics to this tracker through accelerate (logs under DIR/trackers/); "
                "metrics.jsonl is always written")
    cache_dir: str = _key("", "latent/text cache (\"\" = DIR/cache)")
    cache_batch_size: int = _key(8, "clips per VAE / texts per T5 batch while caching")

    def __post_init__(self) -> None:
        errors = []
        hints = get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            err = _type_error(f.name, value, hints[f.name])
            if err:
                errors.append(err)
        if errors:
            raise CuratorError("config: " + "; ".join(errors))

        def need(cond: bool, name: str, what: str) -> None:
            if not cond:
                errors.append(f"{name}={getattr(self, name)!r} {what}")

        need(self.beta > 0, "beta", "must be > 0")
        need(self.sft_epochs >= 0, "sft_epochs", "must be >= 0")
        need(self.dpo_epochs >= 0, "dpo_epochs", "must be >= 0")
        need(self.sft_epochs + self.dpo_epochs > 0 or self.max_steps > 0, "dpo_epochs",
             "and sft_epochs are both 0 (nothing to train); set one of them or max_steps")
        need(self.max_steps >= 0, "max_steps", "must be >= 0")
        need(0.0 <= self.uncond_prob < 1.0, "uncond_prob", "must be in [0, 1)")
        need(0.0 < self.learning_rate < 1.0, "learning_rate", "must be in (0, 1)")
        need(0.0 <= self.adam_beta1 < 1.0, "adam_beta1", "must be in [0, 1)")
        need(0.0 <= self.adam_beta2 < 1.0, "adam_beta2", "must be in [0, 1)")
        need(self.weight_decay >= 0.0, "weight_decay", "must be >= 0")
        need(0.0 < self.adam_epsilon < 1.0, "adam_epsilon", "must be in (0, 1)")
        need(self.lr_warmup_steps >= 0, "lr_warmup_steps", "must be >= 0")
        need(self.max_grad_norm >= 0.0, "max_grad_norm", "must be >= 0")
        need(self.train_batch_size >= 1, "train_batch_size", "must be >= 1")
        need(self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps", "must be >= 1")
        need(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")
        need(self.checkpoints_total_limit >= 0, "checkpoints_total_limit", "must be >= 0 (0 = keep all)")
        need(self.log_every >= 1, "log_every", "must be >= 1")
        need(self.max_pairs >= 0, "max_pairs", "must be >= 0")
        need(0.0 < self.duration_s <= 60.0, "duration_s", "must be in (0, 60] seconds")
        need(self.cache_batch_size >= 1, "cache_batch_size", "must be >= 1")
        if errors:
            raise CuratorError("config: " + "; ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _type_error(name: str, value: Any, hint: Any) -> str | None:
    """None when VALUE fits HINT (int, float, bool, str or a Literal of strings), else the message."""
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        return None if value in choices else f"{name}={value!r} is not one of {', '.join(choices)}"
    if hint is bool:
        return None if isinstance(value, bool) else f"{name}={value!r} is not true/false"
    if hint is int:
        return None if is_int(value) else f"{name}={value!r} is not an integer"
    if hint is float:
        return None if is_number(value) else f"{name}={value!r} is not a number"
    if hint is str:
        return None if isinstance(value, str) else f"{name}={value!r} is not a string"
    return f"{name}: unsupported field type {hint!r}"


def _field_types() -> dict[str, Any]:
    return get_type_hints(TrainConfig)


# Keys of earlier versions, with what replaced them (named in the unknown-key message).
RENAMED = {"tensorboard": "use report_to=tensorboard"}


def config_from_dict(values: dict[str, Any], *, where: str = "config") -> TrainConfig:
    """A validated config from a mapping; unknown keys are named in the error."""
    known = _field_types()
    unknown = sorted(set(values) - set(known))
    if unknown:
        hints = "".join(f"; {k}: {RENAMED[k]}" for k in unknown if k in RENAMED)
        raise CuratorError(f"{where}: unknown key(s) {', '.join(unknown)}{hints} (known: {', '.join(known)})")
    coerced = {}
    for key, value in values.items():
        if known[key] is float and is_int(value):
            value = float(value)
        coerced[key] = value
    return TrainConfig(**coerced)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The flat mapping in a .json, .toml or .yaml/.yml file."""
    import yaml

    path = Path(path)
    text = read_utf8(path, "config file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
            data = {} if data is None else data
        else:
            raise CuratorError(f"config file {path}: use a .json, .toml or .yaml file")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CuratorError(f"config file {path} is not valid {suffix[1:]}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CuratorError(f"config file {path} is not valid yaml: {what}{where}") from None
    if not isinstance(data, dict):
        raise CuratorError(f"config file {path}: expected a table of key = value, got {type(data).__name__}")
    return data


def parse_set(item: str) -> tuple[str, Any]:
    """`key=value` → (key, typed value) using the field's type."""
    if "=" not in item:
        raise CuratorError(f"--set {item!r}: expected key=value")
    key, raw = (s.strip() for s in item.split("=", 1))
    types = _field_types()
    if key not in types:
        raise CuratorError(f"--set {key}: unknown key (known: {', '.join(types)})")
    hint = types[key]
    try:
        if hint is bool:
            low = raw.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return key, low in ("true", "1", "yes")
        if hint is int:
            return key, int(raw)
        if hint is float:
            return key, float(raw)
    except ValueError:
        kind = {bool: "true/false", int: "an integer", float: "a number"}[hint]
        raise CuratorError(f"--set {key}={raw!r}: expected {kind}") from None
    return key, raw


def load_config(config_file: str | Path | None = None, overrides: list[str] | None = None,
                **explicit: Any) -> TrainConfig:
    """File values, then `--set` overrides, then explicit CLI options (None = not given)."""
    values: dict[str, Any] = {}
    if config_file:
        values.update(read_config_file(config_file))
        where = f"config file {config_file}"
    else:
        where = "config"
    for item in overrides or []:
        key, value = parse_set(item)
        values[key] = value
    values.update({k: v for k, v in explicit.items() if v is not None})
    return config_from_dict(values, where=where)


# Fields that may differ between a run and its resume (everything else must match).
RESUME_MUTABLE = ("data", "max_steps", "checkpoint_every", "checkpoints_total_limit", "log_every", "report_to",
                  "cache_dir",
                  "cache_batch_size", "out", "mixed_precision", "gradient_checkpointing", "precompute_reference", "memory_check")


def resume_mismatch(saved: TrainConfig, current: TrainConfig) -> list[str]:
    """Names of the fields that make CURRENT an incompatible continuation of SAVED."""
    return [f"{f.name} ({getattr(saved, f.name)!r} → {getattr(current, f.name)!r})"
            for f in fields(TrainConfig)
            if f.name not in RESUME_MUTABLE and getattr(saved, f.name) != getattr(current, f.name)]


def config_help() -> str:
    """Every config key with its type, default, meaning and paper section, from the field metadata
    (the text `trainer run --help` shows)."""
    hints = _field_types()
    lines = []
    for f in fields(TrainConfig):
        hint = hints[f.name]
        kind = "|".join(get_args(hint)) if get_origin(hint) is Literal else hint.__name__
        default = f.default
        shown = "true" if default is True else "false" if default is False else (
            repr(default) if isinstance(default, str) else f"{default:g}" if isinstance(default, float) else default)
        paper = f" (arXiv 2404.09956 {f.metadata['paper']})" if f.metadata.get("paper") else ""
        lines.append(f"{f.name} ({kind}, default {shown}): {f.metadata['help']}{paper}")
    return "\n".join(lines)
