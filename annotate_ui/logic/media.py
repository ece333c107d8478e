"""Audio as a rater receives it: opaque tokens, and a copy of the clip that is unique to each token.

Blind rating breaks if anything a rater's browser receives tells two deliveries of the same clip
apart from deliveries of different clips: the automatic winner of Strategy 1 appears in several
pairs of its caption, so a side that "comes back" is the winner, and a gold item of a listening
session is a real item's clip shown with another prompt. So, for every clip handed to a rater:

* the URL is `media/<token>`, a random token (`secrets.token_urlsafe`, 144 bits) issued for one
  user and one assignment side (or one listening item) each time the page shows it. It names no
  assignment, clip, file or hash, cannot be guessed, and is refused to every other login;
* the response carries no ETag and no Last-Modified (a per-file ETag or an mtime names the file),
  and `Cache-Control: private`, so a cache keeps it under its own token URL only;
* the bytes are a fresh encoding of the clip for that token. Identical bytes would let a script
  hash every download and count repeats, so each copy gets dither of at most ±1 step of 16-bit
  PCM (seeded by the token) and a `JUNK` chunk of random length before the data. ±1 LSB is
  −90 dBFS, below the 16-bit quantisation noise the stored clip already has and far below
  hearing, so the rater hears the same clip while no two copies share a hash or a file size.
  What this does not hide: the audio itself. A script that decodes two copies and compares the
  samples (they differ by at most one step) still finds that they are one clip, as a person
  listening closely could; hiding that would take changes a rater can hear. It defeats what can
  be counted without listening: hashes, sizes, ETags, dates and URLs.

Tokens live in the store (annotate_ui/logic/playback.py, db/media.py), so every server process answers
every token and the playback record of a clip is one whichever process sent its ranges. A token
is served only while its assignment is open (or its item in the rater's queue). The route's work
is annotate_ui/logic/media_route.py; annotate_ui/web/routes.py wires it.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import threading
from collections import OrderedDict

import numpy as np
import soundfile as sf

from db.errors import CuratorError

MEDIA_ROUTE = "media"  # + /{token}: relative, so the app also works under a proxy's prefix
COPY_CACHE = 64  # encoded copies kept, so a player's range requests do not re-encode
MAX_JUNK = 2048  # bytes of random padding at most


def _seed(token: str) -> int:
    return int.from_bytes(hashlib.sha256(token.encode("utf-8")).digest()[:16], "little")


def _wav(samples: np.ndarray, sample_rate: int, junk: int) -> bytes:
    """16-bit PCM WAV: RIFF, fmt, a JUNK chunk of JUNK bytes (even), data."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    data = np.ascontiguousarray(samples, dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * channels * 2, channels * 2, 16)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"JUNK" + struct.pack("<I", junk) + bytes(junk)
            + b"data" + struct.pack("<I", len(data)) + data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def blind_copy(data: bytes, token: str) -> tuple[bytes, str]:
    """(WAV bytes, media type) of the clip DATA as delivered under TOKEN: the same audio to the ear,
    bytes and size unique to the token (see the module docstring). Deterministic per token."""
    try:
        samples, sr = sf.read(io.BytesIO(data), dtype="int16", always_2d=False)
    except Exception:  # noqa: BLE001 - libsndfile raises several types on a bad file
        raise CuratorError("the audio file is missing or unreadable; press Skip") from None
    rng = np.random.default_rng(_seed(token))
    dither = rng.integers(-1, 2, size=samples.shape, dtype=np.int32)
    noisy = np.clip(samples.astype(np.int32) + dither, -32768, 32767).astype(np.int16)
    junk = 2 * int(rng.integers(0, MAX_JUNK // 2 + 1))
    return _wav(noisy, int(sr), junk), "audio/wav"


class CopyCache:
    """The last COPY_CACHE encoded copies by token (a player fetches a clip in several ranges)."""

    def __init__(self, size: int = COPY_CACHE):
        self.size = size
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> tuple[bytes, str] | None:
        with self._lock:
            item = self._items.get(token)
            if item is not None:
                self._items.move_to_end(token)
            return item

    def put(self, token: str, item: tuple[bytes, str]) -> None:
        with self._lock:
            self._items[token] = item
            self._items.move_to_end(token)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, total: int) -> tuple[int, int] | None | bool:
    """The (start, end inclusive) of a single-range `Range` header; None to send everything
    (no header, or several ranges); False when the range cannot be satisfied (416)."""
    if not header:
        return None
    m = _RANGE_RE.match(header.strip())
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            return False
        return max(0, total - n), total - 1
    start = int(first)
    end = min(int(last), total - 1) if last else total - 1
    if start >= total or end < start:
        return False
    return start, end


TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
__all__ = ["MEDIA_ROUTE", "blind_copy", "CopyCache", "byte_range", "TOKEN_RE"]
