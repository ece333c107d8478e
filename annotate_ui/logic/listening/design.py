"""Listening-session design (arXiv 2404.09956 §5.3): `create_listening_session` draws N prompts
(50 random held-out prompts in the paper, drawn with a seed from the captions every chosen clip set
covers) × the clip sets, plus gold items. A gold item ("mismatch") plays one system's clip of
prompt p beside another prompt q, so its REL should be low. Plain functions over a Session; they
flush, the caller commits.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_ui.logic.listening.clipsets import _by_id_or_name, _check_name, get_clip_set
from db.errors import CuratorError
from db.listening import (
    DEFAULT_GOLD_REL_THRESHOLD,
    DEFAULT_MIN_RATERS,
    DEFAULT_N_PROMPTS,
    ClipSet,
    ListeningItem,
    ListeningSession,
    ListeningSystem,
)
from db.models import Caption

DEFAULT_GOLD_FRACTION = 0.1  # gold items ≈ 10 % of the real items, at least 2


def common_captions(session: Session, clip_sets: Sequence[ClipSet], *, split: Optional[str] = None) -> list[int]:
    """Caption ids every clip set covers (optionally only captions of SPLIT), ascending."""
    common: Optional[set[int]] = None
    for cs in clip_sets:
        ids = {i.caption_id for i in cs.items}
        common = ids if common is None else common & ids
    ids = sorted(common or ())
    if split is not None and ids:
        ids = sorted(session.scalars(select(Caption.id).where(Caption.id.in_(ids), Caption.split == split)))
    return ids


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) for p in parts])


def create_listening_session(
    session: Session,
    name: str,
    clip_sets: Sequence[ClipSet | int | str],
    *,
    n_prompts: int = DEFAULT_N_PROMPTS,
    caption_ids: Optional[Sequence[int]] = None,
    split: Optional[str] = None,
    seed: int = 0,
    n_gold: Optional[int] = None,
    min_raters: int = DEFAULT_MIN_RATERS,
    gold_rel_threshold: float = DEFAULT_GOLD_REL_THRESHOLD,
    created_by: Optional[int] = None,
) -> ListeningSession:
    """Prompts × systems, with gold items (see the module doc).

    caption_ids: the prompts to use (each must be in every clip set); else N_PROMPTS drawn with
    SEED from the captions all clip sets cover (of SPLIT when given). n_gold: None = 10 % of the
    real items (at least 2); 0 = no gold items (no screening).
    """
    # 1. Check inputs
    name = _check_name(name, "listening session")
    if session.scalar(select(ListeningSession.id).where(ListeningSession.name == name)) is not None:
        raise CuratorError(f"listening session {name!r} already exists")
    if not clip_sets:
        raise CuratorError("a listening session needs at least one clip set (system)")
    sets = [get_clip_set(session, c) for c in clip_sets]
    if len({cs.id for cs in sets}) != len(sets):
        raise CuratorError("a clip set is listed twice for this listening session")
    if not (isinstance(min_raters, int) and min_raters >= 1):
        raise CuratorError(f"min_raters must be a whole number ≥ 1, got {min_raters!r}")
    if not (isinstance(gold_rel_threshold, (int, float)) and 1 <= gold_rel_threshold <= 5):
        raise CuratorError(f"gold_rel_threshold must be between 1 and 5, got {gold_rel_threshold!r}")
    if not isinstance(seed, int) or seed < 0:
        raise CuratorError(f"seed must be a whole number ≥ 0, got {seed!r}")

    # 2. The prompts
    available = common_captions(session, sets, split=split)
    if caption_ids is not None:
        bad = [c for c in caption_ids if isinstance(c, bool) or not isinstance(c, (int, np.integer))]
        if bad:
            raise CuratorError(f"caption ids must be whole numbers, got {bad[0]!r}")
        prompts = list(dict.fromkeys(int(c) for c in caption_ids))
        missing = [c for c in prompts if c not in set(available)]
        if missing:
            raise CuratorError(f"caption(s) {', '.join(map(str, missing[:10]))} are not covered by every clip set"
                               + (f" (split {split!r})" if split else ""))
        if not prompts:
            raise CuratorError("caption_ids is empty")
    else:
        if not (isinstance(n_prompts, int) and n_prompts >= 1):
            raise CuratorError(f"n_prompts must be a whole number ≥ 1, got {n_prompts!r}")
        if n_prompts > len(available):
            raise CuratorError(f"asked for {n_prompts} prompts but the chosen clip sets have only "
                               f"{len(available)} in common" + (f" in split {split!r}" if split else ""))
        picked = _rng(seed).choice(len(available), size=n_prompts, replace=False)
        prompts = sorted(available[i] for i in picked)

    n_real = len(prompts) * len(sets)
    if n_gold is None:
        n_gold = max(2, math.ceil(DEFAULT_GOLD_FRACTION * n_real)) if len(prompts) >= 2 else 0
    if not (isinstance(n_gold, int) and n_gold >= 0):
        raise CuratorError(f"n_gold must be a whole number ≥ 0, got {n_gold!r}")
    if n_gold and len(prompts) < 2:
        raise CuratorError("gold items need at least 2 prompts (a clip is shown with another prompt)")
    if n_gold > n_real:
        raise CuratorError(f"n_gold {n_gold} is more than the {n_real} real items")

    # 3. The items
    texts = dict(session.execute(select(Caption.id, Caption.text).where(Caption.id.in_(prompts))).all())
    ls = ListeningSession(name=name, seed=seed, min_raters=min_raters, gold_rel_threshold=float(gold_rel_threshold),
                          created_by=created_by)
    clip_of: dict[tuple[int, int], int] = {}
    for pos, cs in enumerate(sets):
        ls.systems.append(ListeningSystem(clip_set_id=cs.id, position=pos))
        clips = {i.caption_id: i.clip_id for i in cs.items}
        for cap in prompts:
            clip_of[(cs.id, cap)] = clips[cap]
            ls.items.append(ListeningItem(clip_set_id=cs.id, clip_id=clips[cap], caption_id=cap,
                                          prompt=texts[cap], is_gold=False))

    # 4. Gold items: a clip of prompt p shown with another prompt q (REL should be low)
    rng = _rng(seed, 1)
    real = [(cs.id, cap) for cs in sets for cap in prompts]
    used: set[tuple[int, int]] = set()
    for idx in rng.permutation(len(real)):
        if len(used) >= n_gold:
            break
        cs_id, cap = real[idx]
        others = [q for q in prompts if q != cap and (cs_id, q) not in used]
        if not others:
            continue
        shown = others[int(rng.integers(len(others)))]
        used.add((cs_id, shown))
        ls.items.append(ListeningItem(clip_set_id=cs_id, clip_id=clip_of[(cs_id, cap)], caption_id=shown,
                                      prompt=texts[shown], is_gold=True, gold_kind="mismatch"))
    if len(used) < n_gold:
        raise CuratorError(f"could only make {len(used)} of {n_gold} gold items; ask for fewer")
    session.add(ls)
    session.flush()
    return ls


def get_session(session: Session, ref: ListeningSession | int | str) -> ListeningSession:
    return _by_id_or_name(session, ListeningSession, ref, "listening session")


def list_sessions(session: Session, *, open_only: bool = False) -> list[dict[str, Any]]:
    q = select(ListeningSession).order_by(ListeningSession.id)
    if open_only:
        q = q.where(ListeningSession.is_open.is_(True))
    n_items = dict(session.execute(select(ListeningItem.session_id, func.count()).group_by(ListeningItem.session_id)).all())
    return [{"id": s.id, "name": s.name, "is_open": s.is_open, "n_items": n_items.get(s.id, 0),
             "min_raters": s.min_raters, "created_at": s.created_at.isoformat()} for s in session.scalars(q)]


def set_session_open(session: Session, ref: ListeningSession | int | str, is_open: bool) -> ListeningSession:
    ls = get_session(session, ref)
    ls.is_open = bool(is_open)
    session.flush()
    return ls
