"""The generation strategies of arXiv 2404.09956 §4.1, run over the store.

| strategy | captions | slots (AudioClip.slot)                                   | steps        |
|----------|----------|----------------------------------------------------------|--------------|
| 1.1      | T1       | 0..3 → 5, 25, 50, 100 denoising steps                    | 5/25/50/100  |
| 1.2      | T1       | 0..3 → four seeds                                        | 50           |
| 2        | T1       | 0 → the caption, 1 → one of its Strategy-2 perturbations | 50           |
| 3        | T2       | 0 → the caption, 1 → one of its Strategy-3 perturbations | 50           |
All with guidance 3 (arXiv 2404.09956 §3.1/§4.1).

Seeds are derived from (seed, caption text, strategy, slot) and recorded per clip. Within a
caption, 1.1's four step counts share one seed (the clips differ only in steps) and 2/3's caption
and perturbed caption share one seed (they differ only in the prompt); 1.2's four slots get four
seeds. The perturbed caption of 2/3 is picked deterministically among the caption's stored
perturbations (by seed and caption); captions without any are skipped and counted.

Work is ordered (steps, caption id, slot), split across processes as `shard=(rank, world)`
(item i goes to rank i % world), batched by step count, and resumable: clips already in the store
for (caption, strategy, slot, generator, checkpoint) are skipped. Each clip is written to the
content-addressed audio store (atomic), then its AudioClip row; the session commits once per batch
(the caller owns the session; a crash loses at most the batch in flight).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from curator.audio import AudioStore
from curator.backends import Generator
from db.errors import CuratorError
from curator.paper import CLIP_SECONDS as DURATION_S
from curator.paper import GUIDANCE_SCALE as GUIDANCE
from curator.paper import SLOTS_1_2, STEPS, STEPS_1_1
from curator.validate import check_int, is_int
from db.models import STRATEGIES, AudioClip, Caption, Perturbation


@dataclass(frozen=True)
class WorkItem:
    caption_id: int
    slot: int
    prompt: str
    steps: int
    seed: int
    perturbation_id: int | None


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise CuratorError(f"unknown strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})")
    return strategy


def derive_seed(seed: int, caption: Caption, strategy: str, slot: int) -> int:
    """A 31-bit seed from the run seed, the caption's text hash, the strategy and the slot."""
    digest = hashlib.sha256(f"{seed}:{caption.text_sha}:{strategy}:{slot}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _captions_for(session: Session, strategy: str) -> list[Caption]:
    from curator.captions import t1_captions, t2_captions

    if strategy == "3":
        captions = t2_captions(session)
        if not captions:
            raise CuratorError("no T2 (temporal) captions in the store: import captions first (`curator captions import`)")
    else:
        captions = t1_captions(session)
        if not captions:
            raise CuratorError(f"strategy {strategy} runs on T1, which is empty: run `curator captions select` first")
    return captions


def plan(session: Session, strategy: str, captions: Sequence[Caption], *, seed: int = 0) -> tuple[list[WorkItem], int]:
    """Every clip the strategy asks for on CAPTIONS, and how many captions had no perturbation."""
    check_strategy(strategy)
    items: list[WorkItem] = []
    skipped = 0
    perturbations: dict[int, list[Perturbation]] = {}
    if strategy in ("2", "3") and captions:
        rows = session.scalars(
            select(Perturbation)
            .where(Perturbation.strategy == strategy, Perturbation.caption_id.in_([c.id for c in captions]))
            .order_by(Perturbation.id)
        )
        for p in rows:
            perturbations.setdefault(p.caption_id, []).append(p)
    for cap in captions:
        if strategy == "1.1":
            s = derive_seed(seed, cap, strategy, 0)
            items += [WorkItem(cap.id, slot, cap.text, steps, s, None) for slot, steps in enumerate(STEPS_1_1)]
        elif strategy == "1.2":
            items += [WorkItem(cap.id, slot, cap.text, STEPS, derive_seed(seed, cap, strategy, slot), None)
                      for slot in range(SLOTS_1_2)]
        else:
            options = perturbations.get(cap.id, [])
            if not options:
                skipped += 1
                continue
            s = derive_seed(seed, cap, strategy, 0)
            chosen = options[derive_seed(seed, cap, f"{strategy}/pick", 0) % len(options)]
            items.append(WorkItem(cap.id, 0, cap.text, STEPS, s, None))
            items.append(WorkItem(cap.id, 1, chosen.text, STEPS, s, chosen.id))
    for w in items:
        if not w.prompt.strip():
            what = f"perturbation {w.perturbation_id}" if w.perturbation_id else f"caption {w.caption_id}"
            raise CuratorError(f"{what} has an empty text; fix or delete it before generating")
    items.sort(key=lambda w: (w.steps, w.caption_id, w.slot))
    return items, skipped


def shard_items(items: Sequence[WorkItem], shard: tuple[int, int]) -> list[WorkItem]:
    rank, world = shard
    if not (is_int(world) and world >= 1 and is_int(rank) and 0 <= rank < world):
        raise CuratorError(f"bad shard {shard!r}: need 0 <= rank < world")
    return list(items[rank::world])


def _existing(session: Session, strategy: str, generator: Generator, caption_ids: set[int]) -> set[tuple[int, int]]:
    rows = session.execute(
        select(AudioClip.caption_id, AudioClip.slot).where(
            AudioClip.strategy == strategy,
            AudioClip.generator == generator.name,
            AudioClip.checkpoint_id == generator.checkpoint_id,
        )
    )
    return {(c, s) for c, s in rows if c in caption_ids}


def _clip_row(item: WorkItem, wave: np.ndarray, sha: str, rel: str, generator: Generator, strategy: str,
              guidance: float) -> AudioClip:
    return AudioClip(
        sha256=sha, path=rel, sample_rate=int(generator.sample_rate), num_samples=int(wave.shape[0]),
        duration_s=float(wave.shape[0]) / generator.sample_rate, generator=generator.name,
        checkpoint_id=generator.checkpoint_id, steps=item.steps, guidance=guidance, seed=item.seed,
        prompt=item.prompt, caption_id=item.caption_id, perturbation_id=item.perturbation_id,
        strategy=strategy, slot=item.slot,
    )


def _commit(session: Session, rows: list[AudioClip]) -> int:
    """Commit a batch; if another process got there first for some rows, keep the others."""
    session.add_all(rows)
    try:
        session.commit()
        return len(rows)
    except IntegrityError:
        session.rollback()
    written = 0
    for row in rows:
        try:
            with session.begin_nested():
                session.add(row)
            written += 1
        except IntegrityError:
            pass
    session.commit()
    return written


def run_generation(
    session: Session,
    audio_store: AudioStore,
    generator: Generator,
    strategy: str,
    *,
    seed: int = 0,
    batch_size: int = 8,
    limit: int | None = None,
    shard: tuple[int, int] = (0, 1),
    captions: Sequence[Caption] | None = None,
    duration_s: float = DURATION_S,
    progress: bool = True,
) -> dict[str, int]:
    """Generate this shard's missing clips of STRATEGY (see the module docstring).

    captions: the caption set (default: T1 for 1.1/1.2/2, T2 for 3); limit: only its first N
    captions (by id). Returns counts: captions, planned, existing, generated, no_perturbation.
    """
    check_strategy(strategy)
    check_int("batch size", batch_size, low=1)
    if limit is not None and limit < 1:
        raise CuratorError(f"limit must be positive, got {limit!r}")
    if not (duration_s > 0):
        raise CuratorError(f"duration must be positive, got {duration_s!r}")
    caps = list(captions) if captions is not None else _captions_for(session, strategy)
    caps.sort(key=lambda c: c.id)
    if limit is not None:
        caps = caps[:limit]
    items, no_perturbation = plan(session, strategy, caps, seed=seed)
    mine = shard_items(items, shard)
    done = _existing(session, strategy, generator, {c.id for c in caps})
    todo = [w for w in mine if (w.caption_id, w.slot) not in done]
    counts = {"captions": len(caps), "planned": len(mine), "existing": len(mine) - len(todo), "generated": 0,
              "no_perturbation": no_perturbation}

    bar = tqdm(total=len(todo), unit="clip", desc=f"strategy {strategy} [{shard[0]}/{shard[1]}]",
               disable=not progress, position=shard[0])
    try:
        i = 0
        while i < len(todo):
            # a batch shares one step count (the list is sorted by steps)
            batch = [todo[i]]
            while len(batch) < batch_size and i + len(batch) < len(todo) and todo[i + len(batch)].steps == batch[0].steps:
                batch.append(todo[i + len(batch)])
            i += len(batch)
            waves = generator.generate([w.prompt for w in batch], steps=batch[0].steps, guidance=GUIDANCE,
                                       seeds=[w.seed for w in batch], duration_s=duration_s)
            if len(waves) != len(batch):
                raise CuratorError(f"generator {generator.name} returned {len(waves)} clips for {len(batch)} prompts")
            rows = []
            for item, wave in zip(batch, waves):
                wave = np.asarray(wave, dtype=np.float32)
                if wave.ndim != 1 or wave.size == 0:
                    raise CuratorError(f"generator {generator.name} returned audio of shape {wave.shape} for "
                                       f"caption {item.caption_id}")
                sha, rel = audio_store.put_wave(wave, generator.sample_rate)  # atomic, content-addressed
                rows.append(_clip_row(item, wave, sha, rel, generator, strategy, GUIDANCE))
            counts["generated"] += _commit(session, rows)
            bar.update(len(batch))
    finally:
        bar.close()
    return counts
