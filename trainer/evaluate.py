"""`trainer eval`: generate with a checkpoint on held-out prompts, score the clips with the
curator's scorers, store them as a clip set (arXiv 2404.09956 §5.3–5.4).

Generation is the curator's (curator.generate.backends.resolve_generator with --checkpoint: the
official Tango sampler, one seeded generator per clip), scoring the curator's
(curator.scoring.specs.make_scorer: CLAP checkpoints or the world judges). With a store, each
clip becomes an AudioClip with strategy "eval" (unique per caption and checkpoint, so a rerun
skips finished prompts and commits per batch) and the set a ClipSet (db.listening) that a
listening session can put beside the base model's set (run `trainer eval --checkpoint BASE`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from db.errors import CuratorError
from curator.paper import CLIP_SECONDS, EVAL_STEPS, GUIDANCE_SCALE

EVAL_STRATEGY = "eval"


@dataclass(frozen=True)
class EvalSettings:
    steps: int = EVAL_STEPS
    guidance: float = GUIDANCE_SCALE
    duration_s: float = CLIP_SECONDS
    seed: int = 0
    batch_size: int = 4
    limit: int = 0

    def __post_init__(self) -> None:
        bad = []
        if self.steps < 1:
            bad.append(f"steps={self.steps} must be >= 1")
        if self.guidance < 0:
            bad.append(f"guidance={self.guidance} must be >= 0")
        if not 0 < self.duration_s <= 60:
            bad.append(f"duration={self.duration_s} must be in (0, 60] seconds")
        if self.batch_size < 1:
            bad.append(f"batch_size={self.batch_size} must be >= 1")
        if self.limit < 0:
            bad.append(f"limit={self.limit} must be >= 0")
        if bad:
            raise CuratorError("eval: " + "; ".join(bad))


@dataclass
class EvalReport:
    checkpoint: str
    scorers: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)  # prompt, clip sha, scores
    clip_set: str | None = None

    def means(self) -> dict[str, float]:
        return {s: float(np.mean([r["scores"][s] for r in self.rows])) for s in self.scorers} if self.rows else {}

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "clip_set": self.clip_set, "n": len(self.rows),
                "mean": self.means(), "rows": self.rows}

    def write(self, path: str | Path) -> None:
        from curator.audio import atomic_write_bytes

        atomic_write_bytes(Path(path), (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8"))

    def summary_lines(self) -> list[str]:
        lines = [f"{len(self.rows)} prompts with {self.checkpoint}" + (f" → clip set {self.clip_set!r}" if self.clip_set else "")]
        lines += [f"  mean {name}: {value:.4f}" for name, value in self.means().items()]
        return lines


def read_prompts(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise CuratorError(f"--prompts {path} does not exist")
    prompts = list(dict.fromkeys(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()))
    if not prompts:
        raise CuratorError(f"--prompts {path} has no prompts (one per line)")
    return prompts


def _captions(session, prompts: Sequence[str] | None, split: str):
    """Caption rows for PROMPTS (created when new, split SPLIT), or the store's SPLIT captions."""
    from sqlalchemy import select

    from db.models import Caption, text_hash

    if prompts is None:
        rows = list(session.scalars(select(Caption).where(Caption.split == split).order_by(Caption.id)))
        if not rows:
            raise CuratorError(f"the store has no captions of split {split!r} (held-out prompts); give --prompts FILE")
        return rows
    out = []
    for text in prompts:
        row = session.scalars(select(Caption).where(Caption.text_sha == text_hash(text))).first()
        if row is None:
            row = Caption(text=text, text_sha=text_hash(text), source="trainer eval", split=split)
            session.add(row)
            session.flush()
        out.append(row)
    return out


def evaluate(checkpoint: str | Path, scorer_specs: Sequence[str], settings: EvalSettings, *,
             prompts: Sequence[str] | None = None, session=None, audio_store=None, split: str = "test",
             name: str | None = None) -> EvalReport:
    """Generate one clip per prompt with CHECKPOINT, score it; with SESSION store clips + clip set."""
    from curator.audio import resample
    from curator.generate.backends import resolve_generator
    from curator.scoring.specs import make_scorer

    # 1. Check inputs, load the generator and the scorers
    if session is None and prompts is None:
        raise CuratorError("give prompts, or a store to read held-out captions from")
    generator = resolve_generator(None, checkpoint=checkpoint)
    scorers = [make_scorer(spec) for spec in scorer_specs]
    names = [n for n, _ in scorers]
    if len(set(names)) != len(names):
        raise CuratorError(f"two scorers share a name ({', '.join(names)}); name them NAME=SPEC")
    report = EvalReport(checkpoint=generator.checkpoint_id, scorers=names)

    # 2. The prompts (store captions, created for new prompt texts)
    captions = _captions(session, prompts, split) if session is not None else None
    texts = [c.text for c in captions] if captions is not None else list(prompts)
    if settings.limit:
        texts = texts[:settings.limit]
        captions = captions[:settings.limit] if captions is not None else None
    clip_set = _clip_set(session, generator, name) if session is not None else None

    # 3. Generate (skipping prompts already in the store for this checkpoint), score, store
    existing = _existing_clips(session, generator, [c.id for c in captions]) if session is not None else {}
    for start in range(0, len(texts), settings.batch_size):
        idx = list(range(start, min(start + settings.batch_size, len(texts))))
        waves: dict[int, np.ndarray] = {}
        todo = [i for i in idx if captions is None or captions[i].id not in existing]
        if todo:
            seeds = [settings.seed + i for i in todo]
            made = generator.generate([texts[i] for i in todo], steps=settings.steps, guidance=settings.guidance,
                                      seeds=seeds, duration_s=settings.duration_s)
            waves.update(zip(todo, made))
        for i in idx:
            if i not in waves:  # stored by an earlier run
                waves[i] = audio_store.read(existing[captions[i].id].path, generator.sample_rate).wave
        scores = {n: s.score([texts[i] for i in idx], [resample(waves[i], generator.sample_rate, s.sample_rate) for i in idx])
                  for n, s in scorers}
        for j, i in enumerate(idx):
            row = {"prompt": texts[i], "scores": {n: float(scores[n][j]) for n in names}}
            if session is not None:
                clip = existing.get(captions[i].id) or _store_clip(session, audio_store, generator, captions[i], waves[i],
                                                                    settings, seed=settings.seed + i)
                existing[captions[i].id] = clip
                _add_item(session, clip_set, captions[i], clip)
                row["clip_sha"] = clip.sha256
            report.rows.append(row)
        if session is not None:
            session.commit()  # per batch: a rerun resumes after the last finished batch
    if clip_set is not None:
        clip_set.note = json.dumps({"mean": report.means(), "steps": settings.steps, "guidance": settings.guidance})
        report.clip_set = clip_set.name
        session.flush()
    return report


def _clip_set(session, generator, name: str | None):
    from sqlalchemy import select

    from db.listening import ClipSet

    name = (name or f"eval:{generator.checkpoint_id}")[-200:]
    row = session.scalars(select(ClipSet).where(ClipSet.name == name)).first()
    if row is not None and row.checkpoint_id != generator.checkpoint_id:
        raise CuratorError(f"clip set {name!r} holds clips of {row.checkpoint_id}, not {generator.checkpoint_id}; pick another --name")
    if row is None:
        row = ClipSet(name=name, generator=generator.name, checkpoint_id=generator.checkpoint_id, note="")
        session.add(row)
        session.flush()
    return row


def _existing_clips(session, generator, caption_ids):
    from sqlalchemy import select

    from db.models import AudioClip

    rows = session.scalars(select(AudioClip).where(AudioClip.strategy == EVAL_STRATEGY,
                                                   AudioClip.generator == generator.name,
                                                   AudioClip.checkpoint_id == generator.checkpoint_id,
                                                   AudioClip.slot == 0))
    wanted = set(caption_ids)
    return {r.caption_id: r for r in rows if r.caption_id in wanted}


def _store_clip(session, audio_store, generator, caption, wave: np.ndarray, settings: EvalSettings, *, seed: int):
    from db.models import AudioClip

    sha, rel = audio_store.put_wave(wave, generator.sample_rate)
    clip = AudioClip(sha256=sha, path=rel, sample_rate=generator.sample_rate, num_samples=len(wave),
                     duration_s=len(wave) / generator.sample_rate, generator=generator.name,
                     checkpoint_id=generator.checkpoint_id, steps=settings.steps, guidance=settings.guidance,
                     seed=seed, prompt=caption.text, caption_id=caption.id, strategy=EVAL_STRATEGY, slot=0)
    session.add(clip)
    session.flush()
    return clip


def _add_item(session, clip_set, caption, clip) -> None:
    from sqlalchemy import select

    from db.listening import ClipSetItem

    found = session.scalars(select(ClipSetItem).where(ClipSetItem.clip_set_id == clip_set.id,
                                                      ClipSetItem.caption_id == caption.id)).first()
    if found is None:
        session.add(ClipSetItem(clip_set_id=clip_set.id, caption_id=caption.id, clip_id=clip.id))
        session.flush()
