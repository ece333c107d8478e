"""Builders for pair/filter/export/import tests: store rows made directly, small WAVs in an AudioStore.

(Imported by test_pairs*, test_filter*, test_export*, test_import*.)
"""

from __future__ import annotations

import numpy as np

from curator.audio import SAMPLE_RATE
from db.models import AudioClip, Caption, ClapModel, Score, text_hash

_counter = iter(range(1, 10**9))


def add_models(session, names=("judge-a", "judge-b")) -> list[ClapModel]:
    models = [ClapModel(name=n, checkpoint=f"/ckpt/{n}.pt", backend="world", position=i)
              for i, n in enumerate(names)]
    session.add_all(models)
    session.flush()
    return models


def add_caption(session, text: str, *, temporal: bool = False) -> Caption:
    cap = Caption(text=text, text_sha=text_hash(text), source="test", temporal=temporal)
    session.add(cap)
    session.flush()
    return cap


CLIP_SECONDS = 0.05  # tests that import the clips again set this to import's minimum or more


def tone(seconds: float | None = None, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A short tone, different every call (so every clip has its own sha)."""
    k = next(_counter)
    t = np.arange(int((CLIP_SECONDS if seconds is None else seconds) * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * (200 + 7 * k) * t)).astype(np.float32)


def add_clip(session, audio_store, caption: Caption, strategy: str, slot: int, *,
             prompt: str | None = None, generator: str = "world", checkpoint: str = "world-v1") -> AudioClip:
    wave = tone()
    sha, rel = audio_store.put_wave(wave, SAMPLE_RATE)
    clip = AudioClip(sha256=sha, path=rel, sample_rate=SAMPLE_RATE, num_samples=len(wave),
                     duration_s=len(wave) / SAMPLE_RATE, generator=generator, checkpoint_id=checkpoint,
                     steps=50, guidance=3.0, seed=slot, prompt=prompt or caption.text, caption_id=caption.id,
                     strategy=strategy, slot=slot)
    session.add(clip)
    session.flush()
    return clip


def add_score(session, clip: AudioClip, caption: Caption, model: ClapModel, value: float) -> None:
    session.add(Score(clip_sha=clip.sha256, text_sha=caption.text_sha, text=caption.text,
                      model_id=model.id, value=value))


def add_group(session, audio_store, models, caption: Caption, strategy: str,
              scores: list[tuple[float | None, ...]]) -> list[AudioClip]:
    """One clip per entry of SCORES (slot = index); entry m is the score under models[m] (None = unscored)."""
    clips = []
    for slot, per_model in enumerate(scores):
        prompt = caption.text if slot == 0 or strategy in ("1.1", "1.2") else f"perturbed {caption.text}"
        clip = add_clip(session, audio_store, caption, strategy, slot, prompt=prompt)
        for model, value in zip(models, per_model):
            if value is not None:
                add_score(session, clip, caption, model, value)
        clips.append(clip)
    session.flush()
    return clips


def paper_world(session, audio_store):
    """A small pool where the paper preset's verdict is known per pair.

    Returns (models, expected) with expected[(caption text, strategy)] = pairs kept by "paper"."""
    models = add_models(session)
    expected = {}
    # S1.1: winner slot 2 (0.70 / 0.80); losers 0.50/0.60 (Δ .20/.20 kept), 0.62/0.70 (Δ1 .08 kept, Δ2 .10 kept),
    # 0.30/0.50 (β1 fails)
    cap = add_caption(session, "a dog barks twice")
    add_group(session, audio_store, models, cap, "1.1",
              [(0.50, 0.60), (0.62, 0.70), (0.70, 0.80), (0.30, 0.50)])
    expected[(cap.text, "1.1")] = 2
    # S1.2: winner slot 0 (0.60/0.65); all losers fail something under model 2 only (Δ2 < .08)
    cap = add_caption(session, "rain falls on a roof")
    add_group(session, audio_store, models, cap, "1.2",
              [(0.60, 0.65), (0.50, 0.60), (0.52, 0.61), (0.45, 0.64)])
    expected[(cap.text, "1.2")] = 0
    # S2: caption clip beats the perturbed one: kept
    cap = add_caption(session, "a car engine idles")
    add_group(session, audio_store, models, cap, "2", [(0.66, 0.75), (0.50, 0.40)])
    expected[(cap.text, "2")] = 1
    # S2: perturbed clip scores higher under model 1 → no candidate at all
    cap = add_caption(session, "birds chirp in the morning")
    add_group(session, audio_store, models, cap, "2", [(0.50, 0.75), (0.55, 0.40)])
    expected[(cap.text, "2")] = 0
    # S3: kept
    cap = add_caption(session, "a man speaks then a door closes", temporal=True)
    add_group(session, audio_store, models, cap, "3", [(0.70, 0.90), (0.55, 0.30)])
    expected[(cap.text, "3")] = 1
    session.flush()
    return models, expected
