"""Audio I/O and the content-addressed audio store.

Clips live under the audio root as `ab/abcdef….wav` (sha256 of the file bytes), written to a
temporary file and renamed, so a crash never leaves a half-written clip. Every decoder error a
user can cause (empty, corrupt or non-audio files, NaN samples) is one CuratorError naming the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from sqlalchemy.engine import make_url

from db.errors import CuratorError
from curator.fsutil import atomic_write_bytes
from curator.paper import SAMPLE_RATE

CLAP_SAMPLE_RATE = 48_000  # laion CLAP's input rate


def resample(wave: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample as laion-clap's `librosa.load(path, sr=48000)` does: soxr at librosa's default
    quality ("soxr_hq") on float32 samples, length ceil(n · sr_to / sr_from). float32 out.

    Every clip that reaches a CLAP model goes through here, so its features equal laion's."""
    wave = np.asarray(wave, dtype=np.float32)
    if sr_from == sr_to:
        return wave
    import librosa

    return librosa.resample(wave, orig_sr=int(sr_from), target_sr=int(sr_to), res_type="soxr_hq").astype(np.float32)


@dataclass(frozen=True)
class Decoded:
    wave: np.ndarray  # float32 mono at the requested rate
    sample_rate: int
    note: str | None  # "resampled 44100→16000 Hz; downmixed 2→1 channels", or None


def decode_audio(data: bytes | str | Path, *, target_sr: int = SAMPLE_RATE, name: str | None = None) -> Decoded:
    """Decode a file or bytes to float32 mono at target_sr; resample/downmix and say so."""
    label = name or (str(data) if not isinstance(data, bytes) else "<bytes>")
    if not isinstance(data, bytes):
        path = Path(data)
        if not path.is_file():
            raise CuratorError(f"audio file {label} does not exist")
        data = path.read_bytes()
    if len(data) == 0:
        raise CuratorError(f"audio file {label} is empty")
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError on non-audio bytes
        wave, sr = _decode_fallback(data, label, str(exc))
    if wave.shape[0] == 0:
        raise CuratorError(f"audio file {label} has no samples")
    notes = []
    if wave.shape[1] > 1:
        notes.append(f"downmixed {wave.shape[1]}→1 channels")
    mono = wave.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise CuratorError(f"audio file {label} contains NaN or infinite samples")
    if sr != target_sr:
        notes.append(f"resampled {sr}→{target_sr} Hz")
        mono = resample(mono, sr, target_sr)
    return Decoded(mono.astype(np.float32), target_sr, "; ".join(notes) or None)


def _decode_fallback(data: bytes, label: str, why: str = "") -> tuple[np.ndarray, int]:
    """Formats libsndfile does not read (mp3 on old builds) go through librosa/audioread. The
    libraries' warnings ("PySoundFile failed", deprecations) are caught, not printed: a file
    neither reads is one error line, with libsndfile's reason folded in."""
    import warnings

    import librosa

    with tempfile.NamedTemporaryFile(suffix=".audio") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp.write(data)
        tmp.flush()
        try:
            wave, sr = librosa.load(tmp.name, sr=None, mono=False)
        except Exception:
            # libsndfile's reason, without its "Error opening <_io.BytesIO object at …>: " prefix
            reason = why.strip().splitlines()[-1].rsplit(">: ", 1)[-1][:120] if why.strip() else ""
            raise CuratorError(f"audio file {label} is not audio (or is corrupt)"
                               + (f": {reason}" if reason else "")) from None
    wave = np.atleast_2d(wave).T.astype(np.float32)
    return wave, int(sr)


MIN_CLIP_SECONDS = 0.5  # shorter clips are a truncated or broken file, not a candidate (Tango's are 10 s)
SILENCE_PEAK = 1.0 / 32768  # a peak below one 16-bit step is silence


def check_clip(decoded: Decoded, label: str, *, min_seconds: float = MIN_CLIP_SECONDS) -> Decoded:
    """Refuse, naming LABEL, a clip shorter than MIN_SECONDS or silent (NaN is refused by decode_audio)."""
    seconds = len(decoded.wave) / decoded.sample_rate
    if seconds < min_seconds:
        raise CuratorError(f"audio file {label} is {seconds * 1000:.1f} ms long, shorter than the minimum of "
                           f"{min_seconds:g} s (truncated?)")
    if not np.all(np.isfinite(decoded.wave)):
        raise CuratorError(f"audio file {label} contains NaN or infinite samples")
    if float(np.max(np.abs(decoded.wave))) < SILENCE_PEAK:
        raise CuratorError(f"audio file {label} is silent")
    return decoded


def encode_wav(wave: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes (clipped to [-1, 1])."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise CuratorError(f"expected mono audio, got shape {tuple(wave.shape)}")
    if not np.all(np.isfinite(wave)):
        raise CuratorError("generated audio contains NaN or infinite samples")
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


class AudioStore:
    """Content-addressed store of WAV files under a root folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def put_bytes(self, data: bytes, suffix: str = ".wav") -> tuple[str, str]:
        """Store bytes; returns (sha256, path relative to the root). Idempotent."""
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{sha[:2]}/{sha}{suffix}"
        target = self.root / rel
        if not target.exists():
            atomic_write_bytes(target, data)
        return sha, rel

    def put_wave(self, wave: np.ndarray, sample_rate: int) -> tuple[str, str]:
        return self.put_bytes(encode_wav(wave, sample_rate))

    def resolve(self, rel: str) -> Path:
        """The absolute path of a stored clip; refuses anything outside the root."""
        path = (self.root / rel).resolve()
        if self.root not in path.parents:
            raise CuratorError(f"audio path {rel!r} is outside the audio store")
        return path

    def read(self, rel: str, target_sr: int = SAMPLE_RATE) -> Decoded:
        path = self.resolve(rel)
        if not path.is_file():
            raise CuratorError(f"audio file {path} is missing from the audio store")
        return decode_audio(path, target_sr=target_sr)


def default_audio_root(db_url: str) -> Path:
    """`<db stem>_audio/` beside a SQLite file; `./audio` for other stores."""
    try:
        url = make_url(db_url)
    except Exception:
        return Path("audio")
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database)
        return db.with_name(f"{db.stem}_audio")
    return Path("audio")


def audio_store_for(db_url: str, audio_root: str | None = None) -> AudioStore:
    root = audio_root or os.environ.get("CURATOR_AUDIO_ROOT") or default_audio_root(db_url)
    return AudioStore(root)
