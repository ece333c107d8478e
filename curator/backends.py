"""The three backend interfaces the pipeline talks to, and how names resolve to backends.

A backend is a plain object; nothing downstream special-cases one. Real ones: Tango and
diffusers AudioLDM/AudioLDM2 generators, transformers `ClapModel` scorers, an OpenAI-compatible
LLM perturber. The miniature world (curator.world) provides one of each for offline demos.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Generator(Protocol):
    """Text → audio. `generate` returns one float32 mono waveform at `sample_rate` per prompt."""

    name: str  # generator family, recorded per clip ("tango", "audioldm", "world", ...)
    checkpoint_id: str  # path or hub id, recorded per clip
    sample_rate: int  # 16 kHz for Tango (arXiv 2404.09956 §3.1)

    def generate(
        self,
        prompts: Sequence[str],
        *,
        steps: int,
        guidance: float,
        seeds: Sequence[int],
        duration_s: float,
    ) -> list[np.ndarray]: ...


@runtime_checkable
class Scorer(Protocol):
    """(text, audio) → alignment score, CLAP-like (cosine similarity in [-1, 1])."""

    name: str  # default name of the model in the ensemble
    checkpoint: str
    file_hash: str | None  # sha256 of the checkpoint file, when it is one file
    backend: str  # "clap" or "world"
    sample_rate: int  # the rate `score` expects its waveforms at (48 kHz for CLAP)

    def score(self, texts: Sequence[str], waves: Sequence[np.ndarray]) -> np.ndarray:
        """Scores for texts[i] vs waves[i]; float64 array of len(texts)."""
        ...


@runtime_checkable
class Perturber(Protocol):
    """Caption → raw response and the perturbed captions parsed from it (Strategies 2 and 3)."""

    model: str  # recorded per request

    def perturb(self, caption: str, strategy: str) -> tuple[str, list[str]]: ...
