"""Score every clip in the store under every model of the ensemble (arXiv 2404.09956 §4.1.2).

Each AudioClip is scored against the text of its CAPTION — also the loser clips of Strategies
2 and 3, which were generated from a perturbed caption: the pair filter compares
score(caption, caption's clip) with score(caption, perturbed caption's clip). Scores are cached
per (clip sha256, text sha256, model) in the `scores` table, so identical clips are scored once
and a rerun scores nothing twice. The loop commits after every batch (resumable: an interrupted
run keeps what it finished). The models are registered as ClapModel rows whose `position` is
the ensemble order (position 0 = model 1, which ranks the Strategy 1 clips in `curator pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tqdm import tqdm

from curator.audio import AudioStore
from curator.backends import Scorer
from db.errors import CuratorError
from db.models import AudioClip, Caption, ClapModel, Score, text_hash


@dataclass(frozen=True)
class _Item:
    clip_id: int
    sha: str
    path: str
    text: str
    text_sha: str


def register_models(session: Session, scorers: Sequence[Scorer], names: Sequence[str]) -> list[ClapModel]:
    """ClapModel rows for the scorers, positions in this order (0 = model 1); flushes.

    A name already registered with another checkpoint (or another file hash) is refused: its
    scores would silently mix two models. Registered models not in this call keep their relative
    order after these."""
    rows = []
    for scorer, name in zip(scorers, names):
        row = session.scalars(select(ClapModel).where(ClapModel.name == name)).one_or_none()
        if row is None:
            row = ClapModel(name=name, checkpoint=scorer.checkpoint, file_hash=scorer.file_hash, backend=scorer.backend)
            session.add(row)
        else:
            if row.checkpoint != scorer.checkpoint:
                raise CuratorError(f"model name {name!r} is already registered with checkpoint {row.checkpoint}, "
                                   f"not {scorer.checkpoint}: give this one another NAME=")
            if row.file_hash and scorer.file_hash and row.file_hash != scorer.file_hash:
                raise CuratorError(f"model {name!r}: checkpoint {scorer.checkpoint} changed since it was registered "
                                   f"(sha256 {row.file_hash[:12]}… now {scorer.file_hash[:12]}…): give it another NAME=")
            if row.backend != scorer.backend:
                raise CuratorError(f"model name {name!r} is registered as backend {row.backend}, not {scorer.backend}")
            row.file_hash = row.file_hash or scorer.file_hash
        rows.append(row)
    chosen = {id(r) for r in rows}
    others = [r for r in session.scalars(select(ClapModel).order_by(ClapModel.position, ClapModel.id)) if id(r) not in chosen]
    for position, row in enumerate(rows + others):
        row.position = position
    session.flush()
    return rows


def _items(session: Session) -> list[_Item]:
    """One item per distinct (clip sha, caption text), clips in id order."""
    rows = session.execute(
        select(AudioClip.id, AudioClip.sha256, AudioClip.path, Caption.text)
        .join(Caption, Caption.id == AudioClip.caption_id)
        .order_by(AudioClip.id)
    ).all()
    seen: dict[tuple[str, str], _Item] = {}
    for clip_id, sha, path, text in rows:
        t_sha = text_hash(text)
        seen.setdefault((sha, t_sha), _Item(clip_id, sha, path, text, t_sha))
    return list(seen.values())


def _cached(session: Session, model_id: int) -> set[tuple[str, str]]:
    return set(session.execute(select(Score.clip_sha, Score.text_sha).where(Score.model_id == model_id)).tuples())


def run_scoring(session: Session, audio_store: AudioStore, scorers: Sequence[Scorer], *,
                names: Sequence[str] | None = None, batch_size: int = 16, progress: bool = True) -> dict[str, int]:
    """Score every clip against its caption under each scorer; returns counts.

    counts: models, clips (distinct clip/caption items), scored (new Score rows), cached
    (already in the store). Commits after registering the models and after every batch."""
    if not scorers:
        raise CuratorError("scoring needs at least one model")
    if batch_size < 1:
        raise CuratorError(f"batch size must be at least 1, got {batch_size}")
    names = list(names) if names is not None else [s.name for s in scorers]
    if len(names) != len(scorers):
        raise CuratorError(f"{len(names)} names given for {len(scorers)} models")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CuratorError(f"model name {dupes[0]!r} is given twice: each model of the ensemble needs its own NAME=")
    for n in names:
        if not n or not n.strip():
            raise CuratorError("a model name is empty")

    try:
        rows = register_models(session, scorers, names)
    except CuratorError:
        session.rollback()
        raise
    session.commit()

    items = _items(session)
    todo: list[list[_Item]] = []
    cached = 0
    for row in rows:
        done = _cached(session, row.id)
        pending = [it for it in items if (it.sha, it.text_sha) not in done]
        cached += len(items) - len(pending)
        todo.append(pending)

    scored = 0
    total = sum(len(t) for t in todo)
    with tqdm(total=total, desc="scoring", unit="score", disable=total == 0 or not progress) as bar:
        for scorer, row, name, pending in zip(scorers, rows, names, todo):
            bar.set_postfix_str(name)
            for start in range(0, len(pending), batch_size):
                batch = pending[start:start + batch_size]
                waves = [_read(audio_store, it, scorer.sample_rate) for it in batch]
                values = np.asarray(scorer.score([it.text for it in batch], waves), dtype=np.float64)
                if values.shape != (len(batch),):
                    raise CuratorError(f"model {name!r} returned {values.shape} scores for {len(batch)} clips")
                for it, value in zip(batch, values):
                    if not np.isfinite(value):
                        raise CuratorError(f"model {name!r} gave a {value} score for clip {it.clip_id} ({it.path}) "
                                           f"against {it.text[:60]!r}")
                scored += _store(session, row.id, batch, values)  # commits: a rerun skips what this batch stored
                bar.update(len(batch))
    return {"models": len(rows), "clips": len(items), "scored": scored, "cached": cached}


def _store(session: Session, model_id: int, batch: list[_Item], values: np.ndarray) -> int:
    """Insert the batch's scores and commit; rows another process stored meanwhile are kept as they
    are. Returns how many rows this call inserted."""
    rows = [Score(clip_sha=it.sha, text_sha=it.text_sha, text=it.text, model_id=model_id, value=float(v))
            for it, v in zip(batch, values)]
    session.add_all(rows)
    try:
        session.commit()
        return len(rows)
    except IntegrityError:  # a concurrent `curator score` stored some of these first
        session.rollback()
    done = _cached(session, model_id)
    fresh = [Score(clip_sha=r.clip_sha, text_sha=r.text_sha, text=r.text, model_id=model_id, value=r.value)
             for r in rows if (r.clip_sha, r.text_sha) not in done]
    session.add_all(fresh)
    session.commit()
    return len(fresh)


def _read(audio_store: AudioStore, item: _Item, sample_rate: int) -> np.ndarray:
    """The clip's audio at the scorer's rate (curator.audio resamples); one line naming the clip."""
    try:
        return audio_store.read(item.path, target_sr=sample_rate).wave
    except CuratorError as exc:
        raise CuratorError(f"clip {item.clip_id}: {exc}") from None
