"""The config of `trainer pretrain`: one typed dataclass, validated on load, saved in the run folder.

A pretraining run builds a Tango-shaped latent diffusion model from nothing: a frozen text
encoder, a mel VAE, a HiFi-GAN vocoder and a v-prediction UNet (arXiv 2404.09956 §3.1 names the parts;
the sizes here are the miniature ones, made for two CPU cores). Values come from `--config FILE`
(JSON or TOML, a flat table) and `--set key=value`, as for `trainer run`; unknown keys and
out-of-range values are refused with a message naming them.

`default_config()` is the size `make reproduce` pretrains on two cores; `large_config()` the one
for a GPU; `smoke_config()` the seconds-long one of the test suite.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_type_hints

from db.errors import CuratorError
from curator.paper import HOP_LENGTH as HOP
from curator.paper import SAMPLE_RATE
from curator.validate import is_int
from trainer.config import _type_error, read_config_file

VAE_FACTOR = 4  # AudioLDM's VAE halves time and frequency twice (ch_mult of three levels)


@dataclass
class PretrainConfig:
    """Every knob of `trainer pretrain`. Field comments say what each one means."""

    # --- data ---
    data: str = "world"  # "world" (renders of the miniature world), an export folder, or a folder of rows
    out: str = ""  # run folder: the final model at DIR/, DIR/step-K/, DIR/metrics.jsonl, DIR/work/
    n_captions: int = 1600  # world: distinct training captions from the grammar
    renders_per_caption: int = 2  # world: seeded renders of each caption
    min_events: int = 1  # world: events per caption, at least
    max_events: int = 3  # world: events per caption, at most
    clip_s: float = 2.56  # seconds per clip; its mel frames must fit the VAE and UNet downsampling
    exclude_captions: str = ""  # a file of captions (one a line) never to train on: held-out prompts

    # --- frozen text encoder: a small T5 (random, frozen), over the tiny Tango's tokenizer ---
    text_dim: int = 64
    text_layers: int = 2
    text_heads: int = 4

    # --- VAE (AudioLDM's AutoencoderKL shape: 8 latent channels, factor 4) ---
    vae_channels: int = 32  # channels of the first level (levels: ×1, ×2, ×2)
    vae_steps: int = 600
    vae_batch_size: int = 8
    vae_crop_frames: int = 64  # mel frames per training crop (the VAE is convolutional; crops cost less)
    vae_learning_rate: float = 1e-3
    vae_kl_weight: float = 1e-4  # KL term per latent element, relative to the per-element L1

    # --- vocoder (a HiFi-GAN generator with AudioLDM's upsampling 5·4·2·2·2 = hop) ---
    vocoder_channels: int = 64  # upsample_initial_channel
    vocoder_steps: int = 1200
    vocoder_batch_size: int = 8
    vocoder_segment_frames: int = 32  # mel frames per training segment
    vocoder_learning_rate: float = 2e-3
    vocoder_clips: int = 400  # clips whose waveforms are kept for vocoder training

    # --- UNet (UNet2DConditionModel, v-prediction as Tango, arXiv 2404.09956 §3.1) ---
    unet_channels: int = 32  # first level; later levels ×2 (capped at ×2)
    unet_levels: int = 3  # CrossAttnDownBlock2D for all but the last (Tango: 3 + 1)
    unet_layers: int = 1  # layers per block
    steps: int = 2000  # optimizer steps of the UNet
    batch_size: int = 16
    learning_rate: float = 3e-4
    lr_warmup_steps: int = 200
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    uncond_prob: float = 0.1  # the caption replaced by "" (the sampler's unconditional input)  # arXiv 2404.09956 §3.1
    snr_gamma: float = 5.0  # min-SNR loss weighting, Tango's main_config value; 0 = off

    # --- bookkeeping ---
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = 500  # UNet steps between DIR/step-K/ checkpoints (and one at the end)
    log_every: int = 50  # steps between metrics.jsonl lines

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        errors = [e for f in fields(self) if (e := _type_error(f.name, getattr(self, f.name), hints[f.name]))]
        if errors:
            raise CuratorError("pretrain config: " + "; ".join(errors))

        def need(cond: bool, name: str, what: str) -> None:
            if not cond:
                errors.append(f"{name}={getattr(self, name)!r} {what}")

        for name in ("n_captions", "renders_per_caption", "text_dim", "text_layers", "text_heads", "vae_channels",
                     "vae_steps", "vae_batch_size", "vocoder_channels", "vocoder_steps", "vocoder_batch_size",
                     "vocoder_segment_frames", "vocoder_clips", "vae_crop_frames", "unet_channels", "unet_layers", "steps",
                     "batch_size", "checkpoint_every", "log_every"):
            need(getattr(self, name) >= 1, name, "must be >= 1")
        need(1 <= self.min_events <= 4, "min_events", "must be in 1..4 (the grammar's range)")
        need(self.min_events <= self.max_events <= 4, "max_events", f"must be in {self.min_events}..4")
        need(self.unet_levels >= 2, "unet_levels", "must be >= 2")
        need(self.text_dim % self.text_heads == 0, "text_dim", f"must be a multiple of text_heads={self.text_heads}")
        need(self.vae_channels % 32 == 0, "vae_channels", "must be a multiple of 32 (group norm)")
        need(self.unet_channels % 32 == 0, "unet_channels", "must be a multiple of 32 (group norm)")
        need(self.vocoder_channels >= 32 and self.vocoder_channels % 32 == 0, "vocoder_channels",
             "must be a multiple of 32 (it halves five times)")
        need(self.vocoder_segment_frames <= self.frames, "vocoder_segment_frames",
             f"is longer than a clip ({self.frames} frames)")
        need(self.vae_crop_frames % VAE_FACTOR == 0 and self.vae_crop_frames <= self.frames, "vae_crop_frames",
             f"must be a multiple of {VAE_FACTOR} and at most a clip ({self.frames} frames)")
        for name in ("vae_learning_rate", "vocoder_learning_rate", "learning_rate"):
            need(0.0 < getattr(self, name) < 1.0, name, "must be in (0, 1)")
        need(self.vae_kl_weight >= 0.0, "vae_kl_weight", "must be >= 0")
        need(self.lr_warmup_steps >= 0, "lr_warmup_steps", "must be >= 0")
        need(self.weight_decay >= 0.0, "weight_decay", "must be >= 0")
        need(self.max_grad_norm >= 0.0, "max_grad_norm", "must be >= 0")
        need(0.0 <= self.uncond_prob < 1.0, "uncond_prob", "must be in [0, 1)")
        need(self.snr_gamma >= 0.0, "snr_gamma", "must be >= 0")
        if errors:
            raise CuratorError("pretrain config: " + "; ".join(errors))
        self._check_clip()

    def _check_clip(self) -> None:
        """The clip's mel frames must divide by the VAE factor × the UNet's downsampling."""
        if not (1.0 <= self.clip_s <= 30.0):
            raise CuratorError(f"pretrain config: clip_s={self.clip_s!r} must be in [1, 30] seconds")
        exact = self.clip_s * SAMPLE_RATE / HOP
        need = self.length_multiple
        if abs(exact - round(exact)) > 1e-6 or round(exact) % need:
            good = max(need, round(exact / need) * need) * HOP / SAMPLE_RATE
            raise CuratorError(f"pretrain config: clip_s={self.clip_s!r} gives {exact:g} mel frames, not a multiple of "
                               f"{need} (VAE factor {VAE_FACTOR} × UNet downsampling {need // VAE_FACTOR}); "
                               f"use e.g. clip_s={good:g}")

    @property
    def length_multiple(self) -> int:
        return VAE_FACTOR * 2 ** (self.unet_levels - 1)

    @property
    def frames(self) -> int:
        """Mel frames per clip."""
        return int(round(self.clip_s * SAMPLE_RATE / HOP))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# Fields a rerun may change without starting over (the run continues where it stopped).
RESUME_MUTABLE = ("out", "steps", "checkpoint_every", "log_every", "device", "data")


def pretrain_config_from_dict(values: dict[str, Any], *, where: str = "pretrain config") -> PretrainConfig:
    known = get_type_hints(PretrainConfig)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise CuratorError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
    coerced = {k: float(v) if known[k] is float and is_int(v) else v
               for k, v in values.items()}
    return PretrainConfig(**coerced)


def parse_pretrain_set(item: str) -> tuple[str, Any]:
    """`key=value` → (key, typed value) by the field's type."""
    if "=" not in item:
        raise CuratorError(f"--set {item!r}: expected key=value")
    key, raw = (s.strip() for s in item.split("=", 1))
    hints = get_type_hints(PretrainConfig)
    if key not in hints:
        raise CuratorError(f"--set {key}: unknown key (known: {', '.join(hints)})")
    hint = hints[key]
    try:
        if hint is bool:
            return key, {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[raw.lower()]
        if hint is int:
            return key, int(raw)
        if hint is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return key, value
    except (ValueError, KeyError):
        kind = {bool: "true/false", int: "an integer", float: "a number"}[hint]
        raise CuratorError(f"--set {key}={raw!r}: expected {kind}") from None
    return key, raw


def load_pretrain_config(config_file: str | Path | None = None, overrides: list[str] | None = None,
                         base: dict[str, Any] | None = None, **explicit: Any) -> PretrainConfig:
    """BASE values, then the file, then `--set`, then explicit options (None = not given)."""
    values: dict[str, Any] = dict(base or {})
    where = "pretrain config"
    if config_file:
        values.update(read_config_file(config_file))
        where = f"config file {config_file}"
    for item in overrides or []:
        key, value = parse_pretrain_set(item)
        values[key] = value
    values.update({k: v for k, v in explicit.items() if v is not None})
    return pretrain_config_from_dict(values, where=where)


def resume_mismatch(saved: PretrainConfig, current: PretrainConfig) -> list[str]:
    return [f"{f.name} ({getattr(saved, f.name)!r} → {getattr(current, f.name)!r})" for f in fields(PretrainConfig)
            if f.name not in RESUME_MUTABLE and getattr(saved, f.name) != getattr(current, f.name)]


def smoke_config(**changes: Any) -> dict[str, Any]:
    """A run of a few seconds: every stage, tiny sizes (tests, `make reproduce-smoke`)."""
    values = dict(n_captions=24, renders_per_caption=1, max_events=2, clip_s=2.56, text_dim=32, text_layers=1,
                  vae_steps=6, vae_batch_size=4, vocoder_channels=32, vocoder_steps=4, vocoder_batch_size=2,
                  vocoder_segment_frames=16, vocoder_clips=8, vae_crop_frames=32, unet_channels=32, unet_levels=2, steps=6,
                  batch_size=4, lr_warmup_steps=0, checkpoint_every=3, log_every=2)
    values.update(changes)
    return values


def large_config(**changes: Any) -> dict[str, Any]:
    """For a GPU: more captions, longer clips, a wider UNet and VAE, more steps."""
    values = dict(n_captions=12000, renders_per_caption=3, clip_s=5.12, text_dim=256, text_layers=4, text_heads=8,
                  vae_channels=64, vae_steps=8000, vae_batch_size=32, vae_crop_frames=256, vocoder_channels=256, vocoder_steps=20000,
                  vocoder_batch_size=16, vocoder_clips=4000, unet_channels=128, unet_levels=4, unet_layers=2,
                  steps=60000, batch_size=64, learning_rate=1e-4, lr_warmup_steps=1000, checkpoint_every=5000)
    values.update(changes)
    return values
