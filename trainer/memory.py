"""Will a run fit? An estimate of a training run's peak memory, checked before the loop.

The estimate adds up what a step holds (arXiv 2404.09956 §5.1's recipe is AdamW in fp32 on the 866 M
UNet, 4 pairs per device):

- policy weights, fp32 master copy: 4 B/param, and their gradients: 4 B/param;
- optimizer state: AdamW 8 B/param (two fp32 moments), 8-bit AdamW 2 B/param, Adafactor about
  0.2 B/param (factored second moments);
- the frozen reference: 4 B/param with a live reference pass, nothing when its terms are
  precomputed (`precompute_reference`, the default: it leaves memory before the loop);
- the frozen T5, VAE and vocoder, where they stay (on CPU runs: in the same memory);
- activations kept for the backward pass: ACT_BYTES × (Σ over UNet levels of channels ×
  layers / 4^level) × samples × latent positions, halved under bf16/fp16 autocast and about a
  fifth with gradient checkpointing. ACT_BYTES is calibrated on the real-size UNet by
  benchmarks/bench_real_size.py (README: the real-size table).

A run whose estimate exceeds the device's free memory is refused before the loop with one line
giving the estimate and what would shrink it (`memory_check=false` tries anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

from db.errors import CuratorError
from curator.paper import HOP_LENGTH, N_MELS, SAMPLE_RATE

GiB = 2 ** 30
OPTIMIZER_BYTES = {"adamw": 8.0, "adamw8bit": 2.0, "adafactor": 0.2}  # state bytes per parameter
ACT_BYTES = 520.0  # bytes per (activation unit × sample × latent position), fp32, no checkpointing
HALF_FACTOR = 0.55  # bf16/fp16 autocast: activations in half precision (norms and the loss stay fp32)
CHECKPOINT_FACTOR = 0.2  # gradient checkpointing keeps block inputs only
REAL_UNET_UNITS = 320 * 2 + 640 * 2 / 4 + 1280 * 2 / 16 + 1280 * 2 / 64  # Tango's UNet (arXiv 2404.09956 §3.1)


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    gradients: float
    optimizer: float
    reference: float
    frozen: float
    activations: float
    pairs: int
    seconds: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.reference + self.frozen + self.activations

    def line(self) -> str:
        parts = [("weights", self.weights), ("gradients", self.gradients), ("optimizer", self.optimizer),
                 ("reference", self.reference), ("frozen encoders", self.frozen), ("activations", self.activations)]
        return (f"{self.total / GiB:.1f} GiB (" + ", ".join(f"{k} {v / GiB:.1f}" for k, v in parts if v)
                + f" at {self.pairs} pair(s) × {self.seconds:g} s)")


def activation_units(unet_config: dict | None) -> float:
    """Σ channels × layers / 4^level over the UNet's levels (Tango's when no config is given)."""
    if not unet_config:
        return REAL_UNET_UNITS
    layers = unet_config.get("layers_per_block", 2)
    return float(sum(c * (layers[i] if isinstance(layers, (list, tuple)) else layers) / 4 ** i
                     for i, c in enumerate(unet_config.get("block_out_channels", ()))))


def latent_positions(seconds: float, hop: int = HOP_LENGTH, rate: int = SAMPLE_RATE, mels: int = N_MELS,
                     factor: int = 4) -> int:
    """Latent time frames × frequency bins of a clip of SECONDS (Tango: 10.24 s → 256 × 16)."""
    frames = int(round(seconds * rate / hop))
    return max(1, frames // factor) * (mels // factor)


def estimate_train_memory(unet_params: int, cfg, *, pairs: int | None = None, seconds: float | None = None,
                          frozen_params: int = 0, unet_config: dict | None = None) -> MemoryEstimate:
    """The peak of one training step per CFG (TrainConfig) for a UNet of UNET_PARAMS parameters."""
    pairs = cfg.train_batch_size if pairs is None else pairs
    seconds = cfg.duration_s if seconds is None else seconds
    half = cfg.mixed_precision in ("bf16", "fp16")
    act = ACT_BYTES * activation_units(unet_config) * 2 * pairs * latent_positions(seconds)
    act *= (HALF_FACTOR if half else 1.0) * (CHECKPOINT_FACTOR if cfg.gradient_checkpointing else 1.0)
    return MemoryEstimate(
        weights=4.0 * unet_params, gradients=4.0 * unet_params,
        optimizer=OPTIMIZER_BYTES[cfg.optimizer] * unet_params,
        reference=0.0 if cfg.precompute_reference else 4.0 * unet_params,
        frozen=4.0 * frozen_params, activations=act, pairs=pairs, seconds=seconds)


def free_bytes(device) -> float:
    """Memory this process may still use on DEVICE: CUDA's free memory, or the machine's available RAM."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    import psutil

    return float(psutil.virtual_memory().available)


def check_fits(cfg, unet, device, *, frozen_params: int = 0, resident_bytes: float = 0.0,
               available: float | None = None) -> MemoryEstimate:
    """Refuse (one line) a run whose estimated peak exceeds the free memory of DEVICE. RESIDENT_BYTES:
    what the estimate counts that is already in that memory (the loaded models, on a CPU run)."""
    n = sum(p.numel() for p in unet.parameters())
    est = estimate_train_memory(n, cfg, frozen_params=frozen_params, unet_config=dict(getattr(unet, "config", {}) or {}))
    free = (free_bytes(device) if available is None else available) + resident_bytes
    if cfg.memory_check and est.total > free:
        raise CuratorError(
            f"this run needs about {est.line()} but {getattr(device, 'type', device)} has {free / GiB:.1f} GiB free; "
            "shrink it with mixed_precision=bf16, gradient_checkpointing=true, optimizer=adamw8bit or adafactor, "
            "precompute_reference=true or a smaller train_batch_size (memory_check=false tries anyway)")
    return est
