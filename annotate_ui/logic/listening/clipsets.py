"""Clip sets (arXiv 2404.09956 §5.3): one system's clips for a set of prompts, the unit a listening
session compares. `create_clip_set` takes explicit clips; `clip_set_from_generator` takes the
AudioClips of one generator/checkpoint (strategy "eval" by default: what `trainer eval` writes).
Plain functions over a Session; they flush, the caller commits.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from curator.validate import is_int
from db.errors import CuratorError
from db.listening import ClipSet, ClipSetItem
from db.models import AudioClip

_NAME_RE = re.compile(r"^[\w .:@+\-/]{1,200}$")


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise CuratorError(f"{what} name must not be empty")
    name = name.strip()
    if not _NAME_RE.match(name):
        raise CuratorError(
            f"{what} name {name!r} may only use letters, digits, space and . : @ + - / _ (at most 200)"
        )
    return name


def _clip_rows(session: Session, clips: Iterable[AudioClip | int]) -> list[AudioClip]:
    rows: list[AudioClip] = []
    ids = []
    for c in clips:
        if isinstance(c, AudioClip):
            rows.append(c)
        elif is_int(c):
            ids.append(int(c))
        else:
            raise CuratorError(f"a clip set takes AudioClip rows or clip ids, got {c!r}")
    if ids:
        found = {c.id: c for c in session.scalars(select(AudioClip).where(AudioClip.id.in_(ids)))}
        missing = [i for i in ids if i not in found]
        if missing:
            raise CuratorError(f"audio clip(s) {', '.join(map(str, missing[:10]))} do not exist in the store")
        rows.extend(found[i] for i in ids)
    return rows


def create_clip_set(
    session: Session,
    name: str,
    clips: Iterable[AudioClip | int],
    *,
    note: str = "",
    exist_ok: bool = False,
) -> ClipSet:
    """A clip set of CLIPS (one per caption, all of one generator and checkpoint).

    exist_ok: a set of that name with exactly these clips is returned as it is (so a rerun of
    `trainer eval` is a no-op); a set of that name with other clips is always refused.
    """
    name = _check_name(name, "clip set")
    rows = _clip_rows(session, clips)
    if not rows:
        raise CuratorError(f"clip set {name!r}: no clips given")
    makers = sorted({(c.generator, c.checkpoint_id) for c in rows})
    if len(makers) > 1:
        shown = "; ".join(f"{g} @ {ck}" for g, ck in makers[:4])
        raise CuratorError(f"clip set {name!r} mixes clips of {len(makers)} generators/checkpoints ({shown}); "
                           "a clip set is one system")
    by_caption: dict[int, AudioClip] = {}
    for c in rows:
        if c.caption_id in by_caption and by_caption[c.caption_id].id != c.id:
            raise CuratorError(f"clip set {name!r}: caption {c.caption_id} has two clips "
                               f"({by_caption[c.caption_id].id} and {c.id}); give one clip per prompt")
        by_caption[c.caption_id] = c
    existing = session.scalar(select(ClipSet).where(ClipSet.name == name))
    if existing is not None:
        have = {(i.caption_id, i.clip_id) for i in existing.items}
        want = {(cap, c.id) for cap, c in by_caption.items()}
        if exist_ok and have == want:
            return existing
        raise CuratorError(f"clip set {name!r} already exists" + (" with other clips" if exist_ok else ""))
    generator, checkpoint_id = makers[0]
    cs = ClipSet(name=name, generator=generator, checkpoint_id=checkpoint_id, note=note or "")
    for cap, c in sorted(by_caption.items()):
        cs.items.append(ClipSetItem(caption_id=cap, clip_id=c.id))
    session.add(cs)
    session.flush()
    return cs


def clip_set_from_generator(
    session: Session,
    name: str,
    *,
    generator: str,
    checkpoint_id: Optional[str] = None,
    strategy: str = "eval",
    caption_ids: Optional[Sequence[int]] = None,
    note: str = "",
    exist_ok: bool = False,
) -> ClipSet:
    """A clip set of the existing AudioClips of GENERATOR (and CHECKPOINT_ID) made with STRATEGY.

    Per caption the clip with the lowest slot is taken. Without checkpoint_id the generator
    must have clips of exactly one checkpoint for that strategy (else: name one).
    """
    q = select(AudioClip).where(AudioClip.generator == generator, AudioClip.strategy == strategy)
    if checkpoint_id is not None:
        q = q.where(AudioClip.checkpoint_id == checkpoint_id)
    if caption_ids is not None:
        q = q.where(AudioClip.caption_id.in_(list(caption_ids)))
    rows = list(session.scalars(q.order_by(AudioClip.caption_id, AudioClip.slot, AudioClip.id)))
    if not rows:
        where = f"generator {generator!r}" + (f" checkpoint {checkpoint_id!r}" if checkpoint_id else "")
        raise CuratorError(f"no audio clips of {where} with strategy {strategy!r} in the store")
    checkpoints = sorted({c.checkpoint_id for c in rows})
    if len(checkpoints) > 1:
        raise CuratorError(f"generator {generator!r} has clips of {len(checkpoints)} checkpoints "
                           f"({', '.join(checkpoints[:4])}); choose one with checkpoint_id")
    first: dict[int, AudioClip] = {}
    for c in rows:
        first.setdefault(c.caption_id, c)
    return create_clip_set(session, name, list(first.values()), note=note, exist_ok=exist_ok)


def list_clip_sets(session: Session) -> list[dict[str, Any]]:
    counts = dict(session.execute(select(ClipSetItem.clip_set_id, func.count()).group_by(ClipSetItem.clip_set_id)).all())
    return [
        {"id": cs.id, "name": cs.name, "generator": cs.generator, "checkpoint_id": cs.checkpoint_id,
         "n_clips": counts.get(cs.id, 0), "created_at": cs.created_at.isoformat()}
        for cs in session.scalars(select(ClipSet).order_by(ClipSet.id))
    ]


def _by_id_or_name(session: Session, model, ref, what: str):
    """A row of MODEL given as the row itself, its id, or its unique name; one line if missing."""
    if isinstance(ref, model):
        return ref
    if is_int(ref):
        row = session.get(model, int(ref))
    else:
        row = session.scalar(select(model).where(model.name == str(ref)))
    if row is None:
        raise CuratorError(f"{what} {ref!r} does not exist")
    return row


def get_clip_set(session: Session, ref: ClipSet | int | str) -> ClipSet:
    return _by_id_or_name(session, ClipSet, ref, "clip set")
