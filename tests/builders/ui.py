"""Builders for the rater-app tests: a pool of pairs with scores, users, audio in an AudioStore.

(Imported by test_audit*, test_ui*, test_users* and benchmarks/bench_ui.py.)
"""

from __future__ import annotations

import random

import numpy as np
from sqlalchemy import insert

from annotate_ui.logic import media, media_route, playback
from annotate_ui.logic.auth import AuthUser, hash_password
from db.annotation import User
from curator.audio import SAMPLE_RATE
from db.models import STRATEGIES, AudioClip, Caption, ClapModel, Pair, PairScore, text_hash

PASSWORD = "correct horse battery"
_HASH: list[str] = []


def password_hash() -> str:
    """One argon2 hash of PASSWORD per test process (hashing is deliberately slow)."""
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    return _HASH[0]


def make_users(session, n_raters: int = 3, admins: int = 1, prefix: str = "rater") -> list[AuthUser]:
    """Admins first (admin0..), then raters (rater0..); all with PASSWORD."""
    rows = [User(name=f"admin{i}", role="admin", password_hash=password_hash()) for i in range(admins)]
    rows += [User(name=f"{prefix}{i}", role="rater", password_hash=password_hash()) for i in range(n_raters)]
    session.add_all(rows)
    session.flush()
    return [AuthUser(u.id, u.name, u.role) for u in rows]


def _tone(k: int, seconds: float = 0.05) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * (200 + 3 * k) * t)).astype(np.float32)


def make_pool(session, audio_store, n_pairs: int, *, seed: int = 0, captions: list[str] | None = None,
              write_audio: bool = True) -> list[int]:
    """N pairs (one caption each, strategies in turn) with scores under two CLAP models; returns pair ids.

    Scores are drawn around the paper's thresholds so some pairs pass "paper" and some do not.
    """
    rng = random.Random(seed)
    models = [ClapModel(name=n, checkpoint=f"/ckpt/{n}.pt", backend="world", position=i)
              for i, n in enumerate(("judge-a", "judge-b"))]
    session.add_all(models)
    session.flush()
    pair_ids = []
    for i in range(n_pairs):
        text = captions[i] if captions and i < len(captions) else f"a dog barks {i} times while rain falls"
        cap = Caption(text=text, text_sha=text_hash(text), source="test")
        session.add(cap)
        session.flush()
        clips = []
        strategy = STRATEGIES[i % len(STRATEGIES)]
        for slot in range(2):
            if write_audio:
                sha, rel = audio_store.put_wave(_tone(2 * i + slot + seed * 7919), SAMPLE_RATE)
            else:
                sha, rel = f"{2 * i + slot:064x}", f"00/{2 * i + slot:064x}.wav"
            clips.append(AudioClip(sha256=sha, path=rel, sample_rate=SAMPLE_RATE, num_samples=800, duration_s=0.05,
                                   generator="world", checkpoint_id="world-v1", prompt=text, caption_id=cap.id,
                                   strategy=strategy, slot=slot))
        session.add_all(clips)
        session.flush()
        pair = Pair(caption_id=cap.id, winner_clip_id=clips[0].id, loser_clip_id=clips[1].id, strategy=strategy)
        session.add(pair)
        session.flush()
        rows = []
        for m, base in zip(models, (0.55, 0.70)):
            w = base + rng.uniform(-0.2, 0.2)
            rows.append(dict(pair_id=pair.id, model_id=m.id, winner_score=w, loser_score=w - rng.uniform(-0.05, 0.4)))
        session.execute(insert(PairScore), rows)
        pair_ids.append(pair.id)
    session.flush()
    return pair_ids


def _fetch(session, audio_store, user: AuthUser, kind: str, ref: tuple, share: float) -> None:
    """Issue a token as the page does and fetch SHARE of its audio, in two range requests, through
    the media route's work (annotate_ui.logic.media_route.serve, which records the bytes it sends)."""
    token = playback.issue_grant(session, user.id, kind, ref)
    copies = media.CopyCache()
    total = media_route.serve(session, audio_store, copies, user, token, "bytes=0-0").total
    last = total - 1 if share >= 1 else max(0, int(share * total) - 1)
    if last >= 1:
        media_route.serve(session, audio_store, copies, user, token, f"bytes=1-{last}")


def play_pair(session, audio_store, user: AuthUser, assignment_id: int, *, share: float = 1.0,
              sides=("a", "b")) -> None:
    """The rater plays SIDES of their assignment (SHARE of each), as the page's players fetch them."""
    for side in sides:
        _fetch(session, audio_store, user, "audit", (int(assignment_id), side), share)


def play_item(session, audio_store, user_id: int, session_id: int, item_id: int, *, share: float = 1.0) -> None:
    """The rater plays a listening item's clip (SHARE of it) through the media route's work."""
    _fetch(session, audio_store, AuthUser(int(user_id), "rater", "rater"), "listen", (int(session_id), int(item_id)), share)


def mark_played(session, user_id: int, assignment_id: int, size: int = 1000) -> None:
    """The playback record of both sides as the media route writes it after sending each whole clip,
    without decoding audio (for pools made with write_audio=False: the load benchmark's logic run)."""
    for side in ("a", "b"):
        token = playback.issue_grant(session, user_id, "audit", (int(assignment_id), side))
        playback.record_served(session, playback.find_grant(session, token, user_id).id, 0, size - 1, size)
