"""Latents and text encodings, computed once and kept on disk.

The official trainer recomputes the STFT and the VAE encoder for every clip at every step; here
each clip is decoded, padded/trimmed to `duration_s`, turned into a log-mel (waveform_to_mel)
and encoded by the frozen VAE (mel_to_latent) exactly once, and each prompt is encoded by the
frozen T5 once.

- Latents are the VAE **posterior mean** by default (`latent = "mean"`, what Tango's own
  training uses through `get_first_stage_encoding` of the mode); `latent = "sample"` caches one
  posterior sample per clip, drawn with a generator seeded from the clip's sha (so it is the same
  fixed sample on every run and every process).
- Keys: `latents/<fingerprint>/<sha[:2]>/<clip sha>.pt` and `text/<fingerprint>/<text sha>.pt`.
  The fingerprint hashes what changes the values (VAE/STFT config and weights, duration and
  latent mode; tokenizer + T5 config and weights), so a different model never reads stale
  entries. Files are written to a temporary name and renamed (a crash leaves no half entry);
  rerunning skips what is there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from curator.audio import decode_audio
from db.errors import CuratorError
from curator.models.tango.checkpoint import atomic_torch_save

from trainer.data import PairSet


def _hash_module(h, module: torch.nn.Module) -> None:
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())


def latent_fingerprint(tango, duration_s: float, latent: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"vae": dict(tango.vae.config), "stft": asdict(tango.stft), "duration_s": duration_s,
                         "latent": latent}, sort_keys=True, default=str).encode())
    _hash_module(h, tango.vae)
    h.update(tango.mel_basis.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def text_fingerprint(tango) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(tango.text_encoder.config.to_dict(), sort_keys=True, default=str).encode())
    h.update(json.dumps(tango.tokenizer.get_vocab(), sort_keys=True).encode())
    _hash_module(h, tango.text_encoder)
    return h.hexdigest()[:16]


def _load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged entry: recompute it rather than train on garbage
        return None


def clip_samples(tango, duration_s: float) -> int:
    """Waveform length that gives a whole number of latent frames the UNet can downsample."""
    from curator.models.tango import latent_frames

    return latent_frames(tango, duration_s) * tango.vae_factor * tango.stft.hop_length


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad a mono waveform to n samples (as the official preprocessing)."""
    if len(wave) >= n:
        return wave[:n]
    return np.pad(wave, (0, n - len(wave)))


class FeatureCache:
    """On-disk cache of clip latents and prompt encodings for one Tango."""

    def __init__(self, root: str | Path, tango, *, duration_s: float, latent: str = "mean"):
        self.root = Path(root)
        self.tango = tango
        self.duration_s = duration_s
        self.latent = latent
        self.n_samples = clip_samples(tango, duration_s)
        self.latent_dir = self.root / "latents" / latent_fingerprint(tango, duration_s, latent)
        self.text_dir = self.root / "text" / text_fingerprint(tango)

    def latent_path(self, sha: str) -> Path:
        return self.latent_dir / sha[:2] / f"{sha}.pt"

    def text_path(self, text: str) -> Path:
        return self.text_dir / f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}.pt"

    # ---- latents
    def encode_clips(self, items: Iterable[tuple[str, bytes, str]], *, total: int, batch_size: int,
                     progress: bool = True) -> int:
        """Decode → mel → latent for each (sha, bytes, label), batched; returns how many were written."""
        from curator.models.tango import mel_to_latent, waveform_to_mel

        done = 0
        bar = tqdm(total=total, desc="caching latents", unit="clip", disable=not progress)
        batch: list[tuple[str, np.ndarray]] = []

        def flush() -> None:
            nonlocal done
            waves = torch.from_numpy(np.stack([w for _, w in batch]))  # (B, T)
            mel = waveform_to_mel(self.tango, waves)  # (B, 1, frames, 64)
            if self.latent == "mean":
                z = mel_to_latent(self.tango, mel)  # (B, 8, frames / 4, 16)
            else:  # one fixed sample per clip: a generator seeded from its sha
                z = torch.cat([mel_to_latent(self.tango, mel[i:i + 1], sample=True, generator=_sha_generator(sha))
                               for i, (sha, _) in enumerate(batch)])
            for (sha, _), zi in zip(batch, z.float().cpu()):
                atomic_torch_save(zi.clone(), self.latent_path(sha))
            done += len(batch)
            bar.update(len(batch))
            batch.clear()

        for sha, data, label in items:
            wave = decode_audio(data, target_sr=self.tango.sample_rate, name=label).wave
            if not np.any(wave):
                raise CuratorError(f"audio {label} is silent (all samples are zero)")
            batch.append((sha, fit_length(wave, self.n_samples)))
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        bar.close()
        return done

    def missing_latents(self, shas: Iterable[str]) -> set[str]:
        return {s for s in shas if not self.latent_path(s).is_file() or _load(self.latent_path(s)) is None}

    def latents(self, shas: Sequence[str]) -> torch.Tensor:
        """(N, 8, t, 16) float32 for SHAS, in order (all must be cached)."""
        out = []
        for sha in shas:
            z = _load(self.latent_path(sha))
            if z is None:
                raise CuratorError(f"latent of clip {sha[:12]} is not in the cache {self.latent_dir}")
            out.append(z)
        return torch.stack(out)

    # ---- text
    def encode_texts(self, texts: Sequence[str], *, batch_size: int, progress: bool = True) -> int:
        from trainer.model import encode_prompts

        todo = [t for t in dict.fromkeys(texts) if _load(self.text_path(t)) is None]
        for i in tqdm(range(0, len(todo), batch_size), desc="caching text", unit="batch", disable=not progress):
            chunk = todo[i:i + batch_size]
            hidden, mask = encode_prompts(self.tango, chunk)  # (B, L, D), (B, L)
            for text, h, m in zip(chunk, hidden.float().cpu(), mask.cpu()):
                n = int(m.sum())
                atomic_torch_save({"hidden": h[:n].clone(), "length": n}, self.text_path(text))
        return len(todo)

    def texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded (U, L, D) hidden states and (U, L) bool masks for TEXTS, in order."""
        entries = []
        for t in texts:
            e = _load(self.text_path(t))
            if e is None:
                raise CuratorError(f"encoding of prompt {t[:40]!r} is not in the cache {self.text_dir}")
            entries.append(e["hidden"])
        length = max(h.shape[0] for h in entries)
        dim = entries[0].shape[1]
        hidden = torch.zeros(len(entries), length, dim)
        mask = torch.zeros(len(entries), length, dtype=torch.bool)
        for i, h in enumerate(entries):
            hidden[i, :h.shape[0]] = h
            mask[i, :h.shape[0]] = True
        return hidden, mask


def _sha_generator(sha: str) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(int(sha[:15], 16))


def build_features(cache: FeatureCache, pairs: PairSet, *, batch_size: int, progress: bool = True) -> dict:
    """Fill the cache for every clip and prompt of PAIRS; returns counts."""
    shas = list(dict.fromkeys(s for p in pairs.pairs for s in (p.chosen_sha, p.rejected_sha)))
    missing = cache.missing_latents(shas)
    written = 0
    if missing:
        written = cache.encode_clips(pairs.clips(missing), total=len(missing), batch_size=batch_size,
                                     progress=progress)
    texts = written_texts = 0
    prompts = [p.prompt for p in pairs.pairs]
    null = getattr(cache.tango, "null_prompt", None)  # AudioLDM's unconditional input: the encoding of ""
    written_texts = cache.encode_texts(prompts + ([null] if null is not None else []), batch_size=batch_size,
                                       progress=progress)
    texts = len(set(prompts))
    return {"clips": len(shas), "clips_encoded": written, "texts": texts, "texts_encoded": written_texts}
