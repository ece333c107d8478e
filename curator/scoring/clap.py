"""The CLAP scorer: transformers' `ClapModel` behind the `curator.backends.Scorer` interface.

score(text, clip) = cosine of the L2-normalised text and audio embeddings (arXiv 2404.09956 §4.1.2).
Audio is embedded in batches; each distinct text is embedded once per scorer and kept (the text
embedding cache), so the 4 clips of a Strategy 1 caption or the 2 of a Strategy 2/3 instance cost
one text pass. Waveforms arrive at 48 kHz (`CLAP_SAMPLE_RATE`; the runner resamples with soxr as
laion-clap's `librosa.load` does), are rounded to 16-bit as laion-clap rounds them, and become
log-mel features with laion's settings, which the scorer checks against the feature extractor
(curator.scoring.features).

Checkpoints (`load_clap`):
- a laion-clap `.pt` (the paper's 630k-audioset-best.pt / 630k-best.pt): weights mapped onto
  `ClapModel` by curator.scoring.laion; tokenizer and feature extractor from `tokenizer_source`
  (default the hub id laion/clap-htsat-unfused, or a local folder);
- any transformers CLAP folder or hub id (e.g. laion/clap-htsat-unfused), tokenizer and feature
  extractor from the same place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from curator.audio import CLAP_SAMPLE_RATE
from db.errors import CuratorError
from curator.scoring.features import ClapFeaturizer, check_laion_features, quantize_int16
from curator.scoring.laion import file_sha256, load_laion_clap

DEFAULT_PROCESSOR_SOURCE = "laion/clap-htsat-unfused"  # tokenizer + feature extractor of the laion .pt files
TEXT_MAX_LENGTH = 77  # laion-clap tokenizes captions to at most 77 tokens


class ClapScorer:
    """A `Scorer` (backend "clap") over a `ClapModel` with its tokenizer and feature extractor."""

    backend = "clap"
    sample_rate = CLAP_SAMPLE_RATE

    def __init__(self, model, tokenizer, feature_extractor, *, name: str, checkpoint: str,
                 file_hash: str | None = None, device: str = "cpu", batch_size: int = 16):
        if batch_size < 1:
            raise CuratorError(f"batch size must be at least 1, got {batch_size}")
        audio = model.config.audio_config
        fused = bool(audio.enable_fusion)
        check_laion_features(feature_extractor, fused=fused, checkpoint=checkpoint)
        if int(feature_extractor.feature_size) != audio.num_mel_bins:
            raise CuratorError(f"CLAP feature extractor makes {feature_extractor.feature_size} mel bins, the audio encoder "
                               f"of {checkpoint} takes {audio.num_mel_bins}: use the matching --tokenizer source")
        frames = int(feature_extractor.nb_max_samples) // int(feature_extractor.hop_length) + 1
        if frames > audio.spec_size * (audio.spec_size // audio.num_mel_bins):
            raise CuratorError(f"CLAP feature extractor makes {frames} frames, more than the audio encoder of "
                               f"{checkpoint} takes: use the matching --tokenizer source")
        self.name = name
        self.checkpoint = checkpoint
        self.file_hash = file_hash
        self.device = _device(device)
        self.batch_size = batch_size
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.featurizer = ClapFeaturizer(feature_extractor, fused=fused, device=self.device)
        self._text_cache: dict[str, torch.Tensor] = {}
        self.text_passes = 0  # texts actually run through the text encoder
        self.audio_passes = 0  # clips actually run through the audio encoder

    # -- embeddings -------------------------------------------------------------------------
    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) normalised text embeddings; each distinct text runs through the encoder once."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            tokens = self.tokenizer(chunk, padding=True, truncation=True, max_length=TEXT_MAX_LENGTH,
                                    return_tensors="pt").to(self.device)
            pooled = self.model.text_model(input_ids=tokens["input_ids"],
                                           attention_mask=tokens["attention_mask"]).pooler_output
            embeds = F.normalize(self.model.text_projection(pooled), dim=-1)  # (b, D)
            self.text_passes += len(chunk)
            for text, emb in zip(chunk, embeds):
                self._text_cache[text] = emb
        if not texts:
            return torch.empty(0, self.model.config.projection_dim, device=self.device)
        return torch.stack([self._text_cache[t] for t in texts])

    def features(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """laion-clap's audio input for 48 kHz waveforms: rounded to 16-bit as its `hook.py` does,
        then the log-mel features (curator.scoring.features)."""
        return self.featurizer([quantize_int16(w) for w in waves])

    @torch.no_grad()
    def audio_embeddings(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, D) normalised audio embeddings of 48 kHz mono waveforms, in batches."""
        out = []
        for start in range(0, len(waves), self.batch_size):
            chunk = [np.asarray(w, dtype=np.float32) for w in waves[start:start + self.batch_size]]
            for w in chunk:
                if w.ndim != 1 or w.shape[0] == 0:
                    raise CuratorError(f"CLAP scorer {self.name} needs non-empty mono waveforms, got shape {w.shape}")
            features, is_longer = self.features(chunk)  # (b, 1|4, frames, mels)
            pooled = self.model.audio_model(input_features=features, is_longer=is_longer).pooler_output
            out.append(F.normalize(self.model.audio_projection(pooled), dim=-1))
            self.audio_passes += len(chunk)
        if not out:
            return torch.empty(0, self.model.config.projection_dim, device=self.device)
        return torch.cat(out)

    def score(self, texts: Sequence[str], waves: Sequence[np.ndarray]) -> np.ndarray:
        """Cosine similarity of texts[i] and waves[i] (float64, in [-1, 1])."""
        if len(texts) != len(waves):
            raise CuratorError(f"score needs one text per waveform, got {len(texts)} texts and {len(waves)} waveforms")
        if not texts:
            return np.zeros(0, dtype=np.float64)
        text = self.text_embeddings(list(texts))
        audio = self.audio_embeddings(list(waves))
        return (text * audio).sum(dim=-1).double().cpu().numpy()

    def clear_text_cache(self) -> None:
        self._text_cache.clear()


def _device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise CuratorError(f"device {device!r} is not a torch device (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CuratorError(f"device {device!r} asked for, but CUDA is not available here")
    return dev


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_processor_parts(source: str):
    """(tokenizer, ClapFeatureExtractor) from a hub id or local folder; one-line error otherwise."""
    from transformers import AutoTokenizer, ClapFeatureExtractor

    local = Path(source).expanduser()
    if local.is_dir():
        source = str(local)
    elif source.startswith((".", "/", "~")) or local.exists():
        raise CuratorError(f"CLAP tokenizer source {source} does not exist or is not a folder (give a hub id or a folder with "
                           "tokenizer and preprocessor_config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        extractor = ClapFeatureExtractor.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise CuratorError(f"cannot load the CLAP tokenizer/feature extractor from {source!r} "
                           f"(offline, or no such hub id/folder): {_first_line(exc)}") from None
    return tokenizer, extractor


def _is_laion_checkpoint(spec: str) -> bool:
    return spec.endswith((".pt", ".pth", ".ckpt"))


def default_name(spec: str) -> str:
    """The ensemble name a checkpoint gets without NAME=: file stem, folder name or hub id."""
    if _is_laion_checkpoint(spec):
        return Path(spec).stem
    path = Path(spec)
    if path.is_dir():
        return path.resolve().name
    return spec


def load_clap(spec: str, *, name: str | None = None, device: str = "cpu", batch_size: int = 16,
              tokenizer_source: str | None = None) -> ClapScorer:
    """A ClapScorer for a laion `.pt`, a transformers CLAP folder or a hub id.

    `tokenizer_source` (hub id or folder) applies to `.pt` files only, which carry no tokenizer."""
    name = name or default_name(spec)
    _device(device)  # a bad --device fails before any weights are read
    if _is_laion_checkpoint(spec):
        path = Path(spec).expanduser()
        model = load_laion_clap(path)
        tokenizer, extractor = load_processor_parts(tokenizer_source or DEFAULT_PROCESSOR_SOURCE)
        vocab = model.config.text_config.vocab_size
        if len(tokenizer) > vocab:
            raise CuratorError(f"tokenizer from {tokenizer_source or DEFAULT_PROCESSOR_SOURCE!r} has {len(tokenizer)} "
                               f"tokens, more than the {vocab} of {path}'s text encoder")
        return ClapScorer(model, tokenizer, extractor, name=name, checkpoint=str(path.resolve()),
                          file_hash=file_sha256(path), device=device, batch_size=batch_size)
    from transformers import ClapModel

    path = Path(spec).expanduser()
    if spec.startswith((".", "/", "~")) and not path.is_dir():
        raise CuratorError(f"CLAP model folder {spec} does not exist")
    try:
        model = ClapModel.from_pretrained(str(path) if path.is_dir() else spec)
    except (OSError, ValueError) as exc:
        raise CuratorError(f"cannot load CLAP model {spec!r} (offline, or no such hub id/folder): {_first_line(exc)}") from None
    # a transformers CLAP checkpoint carries its own tokenizer and feature extractor
    tokenizer, extractor = load_processor_parts(str(path) if path.is_dir() else spec)
    checkpoint = str(path.resolve()) if path.is_dir() else spec
    return ClapScorer(model, tokenizer, extractor, name=name, checkpoint=checkpoint, file_hash=None,
                      device=device, batch_size=batch_size)
