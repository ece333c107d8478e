"""Spectrogram images under the players, so a rater can check the order of events at a glance.

* `spectrogram_png`: a log-mel spectrogram (librosa: 64 mel bands up to 8 kHz, 25 ms windows,
  10 ms hop, dB relative to the clip's peak with an 80 dB floor) drawn as a WIDTH × HEIGHT
  palette PNG (magma colours, low frequencies at the bottom, time left to right over the clip).
* `cached_png`: computed once per clip and kept in the audio store beside the clip
  (`ab/<sha>.wav` → `ab/<sha>.spec-v1.png`, written to a temporary file and renamed). The name
  follows the clip's own content address, so the cache never goes stale; `v1` changes with the
  drawing. A read-only audio store still gets its image, drawn per request.
* `blind_png`: what a rater's browser receives is a copy unique to its media token, like the
  audio (annotate_ui/logic/media.py): the same pixels with a private ancillary `juNk` chunk of random
  length (seeded by the token) before IEND. Viewers ignore the chunk; no two deliveries of one
  clip's image share a hash or a size, so an image cannot be counted across assignments. As with
  the audio, comparing the decoded pixels of two copies still finds that they are one clip.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from annotate_ui.logic.media import _seed
from curator.audio import atomic_write_bytes, decode_audio

WIDTH, HEIGHT = 640, 128  # pixels: a player's width, and enough rows for 64 mel bands
N_MELS = 64
FMAX = 8000.0  # Hz: the Nyquist frequency of 16 kHz clips (arXiv 2404.09956 §3.1)
TOP_DB = 80.0
CACHE_SUFFIX = ".spec-v1.png"
MAX_JUNK = 512  # bytes of random padding at most
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _palette() -> np.ndarray:
    """256 × 3 uint8: the magma colour map, dark (quiet) to bright (loud)."""
    from matplotlib import colormaps  # matplotlib and librosa load on the first spectrogram, not with the app

    return (colormaps["magma"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def spectrogram_levels(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """HEIGHT × WIDTH uint8 levels (0 = TOP_DB below the peak or quieter, 255 = the peak) of the
    log-mel spectrogram of mono WAVE, low frequencies at the bottom."""
    import librosa

    wave = np.asarray(wave, dtype=np.float32)
    n_fft = max(64, int(round(0.025 * sample_rate)))
    hop = max(1, int(round(0.010 * sample_rate)))
    mel = librosa.feature.melspectrogram(y=wave, sr=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=N_MELS,
                                         fmax=min(FMAX, sample_rate / 2), power=2.0)
    db = librosa.power_to_db(mel, ref=np.max, top_db=TOP_DB) if mel.max() > 0 else np.full_like(mel, -TOP_DB)
    level = np.clip((db + TOP_DB) / TOP_DB, 0.0, 1.0)[::-1]  # low frequencies at the bottom
    grey = Image.fromarray((level * 255).astype(np.uint8), mode="L").resize((WIDTH, HEIGHT), Image.BILINEAR)
    return np.asarray(grey, dtype=np.uint8)


def spectrogram_image(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """HEIGHT × WIDTH × 3 uint8 RGB of the spectrogram, as the PNG shows it."""
    return _palette()[spectrogram_levels(wave, sample_rate)]


def spectrogram_png(wave: np.ndarray, sample_rate: int) -> bytes:
    """The spectrogram of WAVE as a palette PNG (one byte per pixel; the palette is the colour map),
    a few times smaller and faster to encode than RGB."""
    image = Image.fromarray(spectrogram_levels(wave, sample_rate), mode="L").convert("P")
    image.putpalette(_palette().ravel().tolist())
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def cache_path(clip_path: Path) -> Path:
    """Where the image of the stored clip CLIP_PATH is kept (beside it, named after it)."""
    clip_path = Path(clip_path)
    return clip_path.with_name(clip_path.stem + CACHE_SUFFIX)


def cached_png(clip_path: Path) -> bytes:
    """The spectrogram PNG of the stored clip at CLIP_PATH: read from the cache beside it, else drawn
    once and written there atomically (a store that cannot be written gets it drawn each time)."""
    target = cache_path(clip_path)
    try:
        data = target.read_bytes()
        if data.startswith(PNG_SIGNATURE):
            return data
    except OSError:
        pass
    decoded = decode_audio(Path(clip_path), target_sr=int(2 * FMAX))
    data = spectrogram_png(decoded.wave, decoded.sample_rate)
    try:
        atomic_write_bytes(target, data)
    except OSError:
        pass  # read-only audio store: serve it uncached
    return data


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def blind_png(png: bytes, token: str) -> tuple[bytes, str]:
    """(PNG bytes, media type) of the image PNG as delivered under TOKEN: the same pixels, bytes and
    size unique to the token (module doc). Deterministic per token."""
    if not png.startswith(PNG_SIGNATURE) or png[-12:-8] != b"\x00\x00\x00\x00" or png[-8:-4] != b"IEND":
        raise ValueError("not a PNG ending in IEND")
    rng = np.random.default_rng(_seed(token))
    junk = rng.integers(0, 256, size=int(rng.integers(1, MAX_JUNK + 1)), dtype=np.uint8).tobytes()
    return png[:-12] + _chunk(b"juNk", junk) + png[-12:], "image/png"


__all__ = ["WIDTH", "HEIGHT", "spectrogram_levels", "spectrogram_image", "spectrogram_png", "cache_path", "cached_png", "blind_png"]
