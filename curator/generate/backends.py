"""Generator backends (curator.backends.Generator) and how `--model`/`--backend` resolve to one.

- `TangoGenerator`: a loaded Tango (curator.models.tango), the official sampler.
- `AudioLDMGenerator` / `AudioLDM2Generator`: diffusers AudioLDMPipeline / AudioLDM2Pipeline.
- the miniature world's generator (curator.world.make_generator), for offline demos.

Resolution (`resolve_generator`): `world` → world; `tiny` → the tiny Tango (built, saved in the real
layout and loaded back); a folder with main_config.json or a `declare-lab/...` id → Tango; a
folder/id whose model_index.json names AudioLDMPipeline/AudioLDM2Pipeline → that pipeline;
`--checkpoint DIR` (a trainer's RUN/step-K) → Tango from DIR (an AudioLDM pipeline when DIR has model_index.json). `backend` overrides detection.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from curator.audio import SAMPLE_RATE
from curator.backends import Generator
from db.errors import CuratorError

BACKENDS = ("tango", "audioldm", "audioldm2", "world")


def _check_request(prompts: Sequence[str], seeds: Sequence[int]) -> None:
    if len(prompts) != len(seeds):
        raise CuratorError(f"{len(prompts)} prompts but {len(seeds)} seeds")


class TangoGenerator:
    """Tango text → audio at 16 kHz, batched as given (arXiv 2404.09956 §3.1)."""

    name = "tango"
    sample_rate = SAMPLE_RATE

    def __init__(self, tango, checkpoint_id: str):
        self.tango = tango
        self.checkpoint_id = checkpoint_id
        self.sample_rate = tango.sample_rate

    def generate(self, prompts: Sequence[str], *, steps: int, guidance: float, seeds: Sequence[int],
                 duration_s: float) -> list[np.ndarray]:
        from curator.models.tango import generate

        _check_request(prompts, seeds)
        return generate(self.tango, list(prompts), steps=steps, guidance=guidance, seeds=list(seeds),
                        duration_s=duration_s)


class AudioLDMGenerator:
    """diffusers AudioLDMPipeline; one torch.Generator per clip so each clip follows its seed."""

    name = "audioldm"
    kind = "audioldm"

    def __init__(self, pipe: Any, checkpoint_id: str):
        self.pipe = pipe
        self.checkpoint_id = checkpoint_id
        self.sample_rate = int(pipe.vocoder.config.sampling_rate)

    def generate(self, prompts: Sequence[str], *, steps: int, guidance: float, seeds: Sequence[int],
                 duration_s: float) -> list[np.ndarray]:
        _check_request(prompts, seeds)
        if not prompts:
            return []
        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        with torch.no_grad():
            out = self.pipe(prompt=list(prompts), num_inference_steps=steps, guidance_scale=guidance,
                            audio_length_in_s=duration_s, generator=gens, num_waveforms_per_prompt=1,
                            output_type="np")
        audios = np.asarray(out.audios, dtype=np.float32)  # (B, samples)
        n = int(round(duration_s * self.sample_rate))
        return [np.ascontiguousarray(a.reshape(-1)[:n]) for a in audios]


class AudioLDM2Generator(AudioLDMGenerator):
    name = "audioldm2"
    kind = "audioldm2"


def _world_generator() -> Generator:
    try:
        from curator.world import make_generator
    except ImportError as exc:
        raise CuratorError(f"the miniature world generator is not available ({exc})") from None
    return make_generator()


def detect_backend(model: str) -> str:
    """Which backend MODEL names (see the module docstring)."""
    from curator.models.audioldm import PIPELINES, pipeline_class_of

    if model == "world":
        return "world"
    if model == "tiny":
        return "tango"
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "main_config.json").is_file():
            return "tango"
        cls = pipeline_class_of(model)
        if cls in PIPELINES:
            return PIPELINES[cls]
        if cls:
            raise CuratorError(f"{model}: model_index.json names {cls}, not AudioLDMPipeline/AudioLDM2Pipeline")
        raise CuratorError(f"{model} is neither a Tango checkpoint (main_config.json) nor a diffusers "
                           "pipeline folder (model_index.json)")
    if path.exists():
        raise CuratorError(f"{model} is a file; --model takes a folder, a hub id, 'tiny' or 'world'")
    if model.startswith("declare-lab/"):
        return "tango"
    if "/" in model and not model.startswith((".", "/")):
        cls = pipeline_class_of(model)
        if cls in PIPELINES:
            return PIPELINES[cls]
        raise CuratorError(f"cannot tell which backend {model!r} is (no local folder, and no model_index.json "
                           "naming an AudioLDM pipeline on the hub or in its cache); pass --backend")
    raise CuratorError(f"--model {model!r} does not exist (a folder, a hub id, 'tiny' or 'world')")


def resolve_generator(model: str | None, *, backend: str | None = None, checkpoint: str | Path | None = None,
                      device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Generator:
    """The Generator that --model/--backend/--checkpoint name, loaded on DEVICE."""
    from curator.models.tango import load_tango

    if backend is not None and backend not in BACKENDS:
        raise CuratorError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    if checkpoint is not None:
        if model:
            raise CuratorError("give --model or --checkpoint, not both (a checkpoint is a complete Tango folder)")
        if backend not in (None, "tango"):
            raise CuratorError(f"--checkpoint loads a trainer checkpoint; it cannot be used with --backend {backend}")
        folder = Path(checkpoint).expanduser()
        if not folder.is_dir():
            raise CuratorError(f"checkpoint {checkpoint} is not a folder")
        if (folder / "model_index.json").is_file():  # a trainer checkpoint of an AudioLDM model
            from curator.models.audioldm import load_pipeline

            if detect_backend(str(folder)) != "audioldm":
                raise CuratorError(f"checkpoint {checkpoint}: model_index.json names a pipeline trainer run does not save")
            return AudioLDMGenerator(load_pipeline(str(folder), "audioldm", device=device, dtype=dtype), str(folder.resolve()))
        return TangoGenerator(load_tango(folder, device=device, dtype=dtype), str(folder.resolve()))
    if not model:
        raise CuratorError("give --model (or --checkpoint)")
    kind = backend or detect_backend(model)
    if kind == "world":
        return _world_generator()
    if kind == "tango":
        if model == "tiny":
            from curator.models.tiny import build_tiny_tango

            with tempfile.TemporaryDirectory(prefix="tiny-tango-") as tmp:
                tango = load_tango(build_tiny_tango(Path(tmp) / "tango"), device=device, dtype=dtype)
            return TangoGenerator(tango, "tiny")
        local = Path(model).expanduser()
        checkpoint_id = str(local.resolve()) if local.is_dir() else model
        return TangoGenerator(load_tango(model, device=device, dtype=dtype), checkpoint_id)
    from curator.models.audioldm import load_pipeline

    local = Path(model).expanduser()
    checkpoint_id = str(local.resolve()) if local.is_dir() else model
    pipe = load_pipeline(model, kind, device=device, dtype=dtype)
    cls = AudioLDM2Generator if kind == "audioldm2" else AudioLDMGenerator
    return cls(pipe, checkpoint_id)
