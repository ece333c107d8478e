"""Spectrogram images: drawn once per clip into the audio store, a unique copy per media token, and
served by the media route only to the token's owner."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from annotate_ui.logic import audit
from annotate_ui.logic.media_route import serve
from annotate_ui.web.context import make_context
from annotate_ui.logic.spectrogram import HEIGHT, WIDTH, blind_png, cache_path, cached_png, spectrogram_image
from curator.audio import SAMPLE_RATE
from db.errors import CuratorError
from builders.ui import make_pool, make_users, play_pair


def _events(first: str) -> np.ndarray:
    """2 s: a high tone then a low one (FIRST="high") or the reverse, 0.5 s of silence between."""
    t = np.arange(int(0.75 * SAMPLE_RATE)) / SAMPLE_RATE
    high, low = 0.4 * np.sin(2 * np.pi * 4000 * t), 0.4 * np.sin(2 * np.pi * 300 * t)
    gap = np.zeros(int(0.5 * SAMPLE_RATE))
    a, b = (high, low) if first == "high" else (low, high)
    return np.concatenate([a, gap, b]).astype(np.float32)


def _energy(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64).sum(axis=2)


def test_the_image_shows_which_event_comes_first():
    img = spectrogram_image(_events("high"), SAMPLE_RATE)
    assert img.shape == (HEIGHT, WIDTH, 3) and img.dtype == np.uint8
    e = _energy(img)
    left, middle, right = e[:, : WIDTH // 3], e[:, int(WIDTH * 0.42): int(WIDTH * 0.58)], e[:, -WIDTH // 3:]
    top, bottom = slice(0, HEIGHT // 3), slice(2 * HEIGHT // 3, HEIGHT)  # low frequencies at the bottom
    assert left[top].mean() > left[bottom].mean() and right[bottom].mean() > right[top].mean()
    assert middle.mean() < left.mean() and middle.mean() < right.mean()  # the silent gap is dark
    swapped = _energy(spectrogram_image(_events("low"), SAMPLE_RATE))
    assert swapped[top, : WIDTH // 3].mean() < swapped[bottom, : WIDTH // 3].mean()


def test_drawn_once_per_clip_beside_it(audio_store):
    sha, rel = audio_store.put_wave(_events("high"), SAMPLE_RATE)
    clip = audio_store.resolve(rel)
    first = cached_png(clip)
    target = cache_path(clip)
    assert target == clip.with_name(f"{sha}.spec-v1.png") and target.read_bytes() == first
    assert not list(target.parent.glob(".*.tmp"))  # written atomically, nothing left over
    os.utime(target, (1, 1))
    assert cached_png(clip) == first and target.stat().st_mtime == 1  # read back, not drawn again
    target.write_bytes(b"torn")  # a damaged cache file is drawn again
    assert cached_png(clip) == first


def test_each_token_gets_its_own_copy_of_the_same_pixels(audio_store):
    _, rel = audio_store.put_wave(_events("high"), SAMPLE_RATE)
    png = cached_png(audio_store.resolve(rel))
    copies = [blind_png(png, f"token-{i:016d}")[0] for i in range(20)]
    assert len(set(copies)) == 20 and len({len(c) for c in copies}) > 10
    assert blind_png(png, "token-0000000000000000")[0] == copies[0]  # deterministic per token
    pixels = np.asarray(Image.open(io.BytesIO(png)))
    for c in copies[:3]:
        im = Image.open(io.BytesIO(c))
        im.load()  # decodes and checks every chunk's CRC
        assert np.array_equal(np.asarray(im), pixels)
    with pytest.raises(ValueError):
        blind_png(b"not a png", "token-0000000000000000")


def test_media_route_serves_the_image_to_the_token_owner_only(sqlite_store_url, audio_store):
    ctx = make_context(sqlite_store_url, audio_store)
    with ctx.session() as s:
        pairs = make_pool(s, audio_store, 2)
        admin, r0, r1 = make_users(s, n_raters=2, admins=1)
        audit.enqueue(s, pairs, reason="random", added_by="admin0", overlap=1)
    with ctx.session() as s:
        task = audit.next_assignment(s, r0)
        s.commit()
        ref = (task.assignment_id, "a")
        image = ctx.media_url(s, r0, "audit", ref, "spectrogram").split("/")[1]
        sound = ctx.media_url(s, r0, "audit", ref).split("/")[1]
        got = serve(s, ctx.audio_store, ctx.copies, r0, image, None)
        assert got.media_type == "image/png" and got.body.startswith(b"\x89PNG")
        assert serve(s, ctx.audio_store, ctx.copies, r0, sound, None).media_type == "audio/wav"
        with pytest.raises(CuratorError, match="no open clip of yours"):
            serve(s, ctx.audio_store, ctx.copies, r1, image, None)
        play_pair(s, audio_store, r0, task.assignment_id)
        audit.vote(s, r0, task.assignment_id, "A", "")
        s.commit()
    with ctx.session() as s:  # the pair is voted: its image, like its audio, is no longer served
        with pytest.raises(CuratorError):
            serve(s, ctx.audio_store, ctx.copies, r0, image, None)
