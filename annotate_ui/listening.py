"""Listening sessions (arXiv 2404.09956 §5.3): plain functions over a Session.

Flow:
1. Clip sets — one system's clips for a set of prompts: `create_clip_set` (explicit clips) or
   `clip_set_from_generator` (the AudioClips of one generator/checkpoint, strategy "eval" by
   default: what `trainer eval` writes).
2. `create_listening_session`: N prompts (arXiv 2404.09956 §5.3: 50 random held-out prompts, drawn with
   a seed from the captions every chosen clip set covers) × the clip sets, plus gold items.
   A gold item ("mismatch") plays one system's clip of prompt p beside another prompt q, so its
   REL should be low.
3. Raters: `next_item` gives the next clip in the rater's own order (every rater gets every item,
   shuffled by a generator seeded with (session seed, session id, user id); the position is
   recorded), `submit_rating` stores OVL and REL (1–5) with the time on task (server clock, from the
   item being shown), once the media route has sent the clip to the rater (annotate_ui/playback.py),
   `skip_item`, `undo_last`.
   System names never leave these functions on the rater side.
4. Admins: `session_results` (mean ± 95 % CI per system, Krippendorff's α ordinal, ratings per
   rater, raters excluded by the gold items, coverage against `min_raters`) and
   `export_results` (CSV + JSON, written atomically).

Gold screening rule (documented here and shown on the results page): a rater who has rated at
least one gold item and whose mean REL over the gold items is ≥ the session's
`gold_rel_threshold` (default 3.0) is excluded from every statistic; raters who have rated no
gold item yet are kept and reported as unscreened. A rater an admin excluded (annotate_ui/quality.py)
is left out the same way, in every session.

Every function takes the user id of the *authenticated* user from the caller (the UI takes it
from the login, never from the browser). Functions flush; the caller commits.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta, timezone
import json
import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotate_ui import playback
from annotate_ui.stats import MeanCI, design_mean_ci, krippendorff_alpha, krippendorff_alpha_ci, loo_agreement, paired_difference_ci
from curator.audio import AudioStore, Decoded, atomic_write_bytes
from curator.errors import CuratorError
from db.annotation import User
from db.listening import (
    DEFAULT_GOLD_REL_THRESHOLD,
    DEFAULT_MIN_RATERS,
    DEFAULT_N_PROMPTS,
    ClipSet,
    ClipSetItem,
    ListeningItem,
    ListeningRating,
    ListeningSession,
    ListeningSystem,
)
from db.models import AudioClip, Caption, utcnow

# arXiv 2404.09956 §5.3: the two subjective scales, each 1–5.
SCALE = (1, 2, 3, 4, 5)
OVL_DEFINITION = (
    "OVL — overall quality: how good the audio sounds, regardless of the text "
    "(1 = very poor, 5 = excellent)."
)
REL_DEFINITION = (
    "REL — relevance to the text: how well the audio matches the prompt "
    "(1 = not at all, 5 = perfectly)."
)
DEFAULT_GOLD_FRACTION = 0.1  # gold items ≈ 10 % of the real items, at least 2
GOLD_RULE = (
    "A rater who rated at least one gold item (a clip shown with another prompt) and whose mean "
    "REL on the gold items is ≥ {threshold:g} is excluded from all statistics."
)
_NAME_RE = re.compile(r"^[\w .:@+\-/]{1,200}$")


# ---------------------------------------------------------------------------------------------
# clip sets


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
        elif isinstance(c, int) and not isinstance(c, bool):
            ids.append(c)
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
    if isinstance(ref, int) and not isinstance(ref, bool):
        row = session.get(model, ref)
    else:
        row = session.scalar(select(model).where(model.name == str(ref)))
    if row is None:
        raise CuratorError(f"{what} {ref!r} does not exist")
    return row


def get_clip_set(session: Session, ref: ClipSet | int | str) -> ClipSet:
    return _by_id_or_name(session, ClipSet, ref, "clip set")


# ---------------------------------------------------------------------------------------------
# sessions


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


# ---------------------------------------------------------------------------------------------
# rating (the rater side: nothing here names a system)


@dataclass(frozen=True)
class QueueItem:
    """What a rater is shown: no system, generator or file name."""

    session_id: int
    item_id: int
    position: int  # 0-based place in this rater's order
    prompt: str  # raw text; the UI escapes it
    audio_path: Optional[Path]  # resolved inside the audio store, None when missing
    audio_error: Optional[str]  # why there is no audio (the rater can skip)
    done: int  # rated or skipped so far
    total: int


@dataclass(frozen=True)
class Progress:
    rated: int
    skipped: int
    total: int

    @property
    def remaining(self) -> int:
        return self.total - self.rated - self.skipped


def _rater(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise CuratorError("you are not an active user of this store")
    return user


EXCLUDED = "an admin has excluded your answers from the results; nothing was recorded"


def _open_session(session: Session, session_id: int) -> ListeningSession:
    ls = session.get(ListeningSession, session_id) if isinstance(session_id, int) and not isinstance(session_id, bool) else None
    if ls is None:
        raise CuratorError(f"listening session {session_id!r} does not exist")
    if not ls.is_open:
        raise CuratorError(f"listening session {ls.name!r} is closed")
    return ls


def rater_order(ls: ListeningSession, user_id: int, item_ids: Sequence[int]) -> list[int]:
    """ITEM_IDS in this rater's order: a permutation seeded with (seed, session id, user id)."""
    ids = sorted(item_ids)
    perm = _rng(ls.seed, ls.id, user_id).permutation(len(ids))
    return [ids[i] for i in perm]


def ensure_assignments(session: Session, session_id: int, user_id: int) -> int:
    """Give the rater every item of the session, in their own order; returns how many rows were added.

    Safe to call concurrently for one rater: the rows are deterministic, a unique violation
    means another request wrote them first (done inside a savepoint).
    """
    ls = _open_session(session, session_id)
    _rater(session, user_id)
    have = set(session.scalars(select(ListeningRating.item_id).where(
        ListeningRating.session_id == ls.id, ListeningRating.user_id == user_id)))
    item_ids = list(session.scalars(select(ListeningItem.id).where(ListeningItem.session_id == ls.id)))
    if len(have) == len(item_ids):
        return 0
    order = rater_order(ls, user_id, item_ids)
    rows = [ListeningRating(session_id=ls.id, item_id=item, user_id=user_id, position=pos)
            for pos, item in enumerate(order) if item not in have]
    try:
        with session.begin_nested():
            session.add_all(rows)
    except IntegrityError:
        return 0  # a concurrent request of the same rater wrote them
    return len(rows)


def progress(session: Session, session_id: int, user_id: int) -> Progress:
    r = ListeningRating
    rated, skipped, total = session.execute(
        select(func.count(r.rated_at), func.count(r.skipped_at), func.count())
        .where(r.session_id == session_id, r.user_id == user_id)).one()
    return Progress(int(rated), int(skipped), int(total))


def _audio_for(audio_store: Optional[AudioStore], clip: AudioClip) -> tuple[Optional[Path], Optional[str]]:
    if audio_store is None:
        return None, None
    try:
        path = audio_store.resolve(clip.path)
    except CuratorError as exc:
        return None, f"{exc}; skip this clip"
    if not path.is_file():
        return None, "the audio of this clip is missing from the audio store; skip this clip"
    return path, None


def next_item(session: Session, session_id: int, user_id: int,
              audio_store: Optional[AudioStore] = None) -> Optional[QueueItem]:
    """The rater's next unrated, unskipped item (None when finished, or when an admin excluded the
    rater: their ratings would count nowhere)."""
    ensure_assignments(session, session_id, user_id)
    if session.scalar(select(User.excluded_at).where(User.id == user_id)) is not None:
        return None
    r = ListeningRating
    row = session.scalar(select(r).where(r.session_id == session_id, r.user_id == user_id,
                                         r.rated_at.is_(None), r.skipped_at.is_(None))
                         .order_by(r.position).limit(1))
    if row is None:
        return None
    if row.served_at is None:  # time on task runs from the first showing
        row.served_at = utcnow()
        session.flush()
    item = row.item
    path, error = _audio_for(audio_store, item.clip)
    prog = progress(session, session_id, user_id)
    return QueueItem(session_id=session_id, item_id=item.id, position=row.position, prompt=item.prompt,
                     audio_path=path, audio_error=error, done=prog.rated + prog.skipped, total=prog.total)


def item_audio_path(session: Session, audio_store: AudioStore, session_id: int, user_id: int, item_id: Any) -> Path:
    """The stored file of an item in the rater's queue (what the media route sends, as a blind copy);
    one line naming nothing when it is missing."""
    row = _own_row(session, session_id, user_id, item_id)
    path, error = _audio_for(audio_store, row.item.clip)
    if path is None:
        raise CuratorError(error or "the audio of this clip is missing or unreadable; skip this clip")
    return path


def item_audio(session: Session, audio_store: AudioStore, session_id: int, user_id: int, item_id: Any) -> Decoded:
    """The decoded audio of an item in the rater's queue, read from the audio store only.

    A missing or unreadable file is one clear line (the rater can skip); nothing names the file.
    """
    row = _own_row(session, session_id, user_id, item_id)
    try:
        return audio_store.read(row.item.clip.path)
    except CuratorError:
        raise CuratorError("the audio of this clip is missing or unreadable; skip this clip") from None


def _check_score(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value not in SCALE:
        raise CuratorError(f"{what} must be a whole number from 1 to 5, got {value!r}")
    return int(value)


def _own_row(session: Session, session_id: int, user_id: int, item_id: Any) -> ListeningRating:
    if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
        raise CuratorError(f"item {item_id!r} is not in your queue for this session")
    row = session.scalar(select(ListeningRating).where(
        ListeningRating.session_id == session_id, ListeningRating.user_id == user_id,
        ListeningRating.item_id == int(item_id)))
    if row is None:
        raise CuratorError(f"item {item_id} is not in your queue for this session")
    return row


@dataclass(frozen=True)
class SubmitResult:
    item_id: int
    ovl: int
    rel: int
    time_on_task_ms: Optional[int]  # server clock, from the item being shown to this rating


def _answered(row: ListeningRating, item_id: Any) -> CuratorError:
    """Why an answered row takes no rating (a replay, a second rating, a skipped item)."""
    if row.skipped_at is not None:
        return CuratorError(f"item {item_id} was skipped; undo the skip to rate it")
    return CuratorError(f"item {item_id} already has your rating (OVL {row.ovl}, REL {row.rel}; submitted twice?); "
                        "nothing was changed: use undo to change your last rating")


def submit_rating(session: Session, session_id: int, user_id: int, item_id: int, ovl: Any, rel: Any, *,
                  min_played_share: float = playback.DEFAULT_MIN_PLAYED_SHARE) -> SubmitResult:
    """Store OVL and REL of ITEM_ID for the rater, with the time on task (server clock).

    Refused, with nothing written: a replay or a second rating of the item, a rater an admin
    excluded, and a rating before the media route has sent MIN_PLAYED_SHARE of the clip to the
    rater (annotate_ui/playback.py)."""
    ovl = _check_score(ovl, "OVL")
    rel = _check_score(rel, "REL")
    _open_session(session, session_id)
    user = _rater(session, user_id)
    row = _own_row(session, session_id, user_id, item_id)
    if row.rated_at is not None or row.skipped_at is not None:
        raise _answered(row, item_id)
    if user.excluded_at is not None:
        raise CuratorError(EXCLUDED)
    playback.require_item_played(session, user_id, row.item_id, min_played_share)
    now = utcnow()
    # conditional update: only an unrated, unskipped row is written (safe under a concurrent replay)
    res = session.execute(
        update(ListeningRating)
        .where(ListeningRating.id == row.id, ListeningRating.rated_at.is_(None), ListeningRating.skipped_at.is_(None))
        .values(ovl=ovl, rel=rel, rated_at=now, skip_reason=None,
                time_on_task_ms=playback.elapsed_ms(row.served_at or row.created_at, now))
        .execution_options(synchronize_session=False))
    session.refresh(row)
    if res.rowcount != 1:
        raise _answered(row, item_id)
    return SubmitResult(row.item_id, ovl, rel, row.time_on_task_ms)


def skip_item(session: Session, session_id: int, user_id: int, item_id: int, reason: str = "skipped") -> bool:
    """Skip ITEM_ID (e.g. its audio is missing); True when it was skipped now, False on a replay."""
    _open_session(session, session_id)
    _rater(session, user_id)
    row = _own_row(session, session_id, user_id, item_id)
    res = session.execute(
        update(ListeningRating)
        .where(ListeningRating.id == row.id, ListeningRating.rated_at.is_(None), ListeningRating.skipped_at.is_(None))
        .values(skipped_at=utcnow(), skip_reason=(reason or "skipped")[:500])
        .execution_options(synchronize_session=False))
    session.refresh(row)
    if res.rowcount == 1:
        return True
    if row.rated_at is not None:
        raise CuratorError(f"item {item_id} is already rated; use undo to change your last rating")
    return False


UNDO_WINDOW_S = 120.0  # undo reaches the rater's last answer for this long after it
UNDONE = "undone"  # skip_reason of a row reopened by undo, until it is answered again


def undo_last(session: Session, session_id: int, user_id: int, *, window_s: float = UNDO_WINDOW_S) -> Optional[int]:
    """Clear the rater's last rating or skip; returns its item id (None: nothing to undo).

    Only the last answer, given less than WINDOW_S seconds ago, and only once: the reopened row is
    marked (skip_reason "undone") until it is answered again, and while it is, undo does nothing,
    so repeated undos cannot reach back through earlier ratings.
    """
    _open_session(session, session_id)
    _rater(session, user_id)
    r = ListeningRating
    mine = (r.session_id == session_id, r.user_id == user_id)
    if session.scalar(select(r.id).where(*mine, r.rated_at.is_(None), r.skipped_at.is_(None),
                                         r.skip_reason == UNDONE).limit(1)) is not None:
        return None
    rows = list(session.scalars(select(r).where(*mine, (r.rated_at.is_not(None)) | (r.skipped_at.is_not(None)))))
    if not rows:
        return None
    last = max(rows, key=lambda x: (max(t for t in (x.rated_at, x.skipped_at) if t is not None), x.id))
    when = max(t for t in (last.rated_at, last.skipped_at) if t is not None)
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)  # SQLite gives naive UTC
    if when < utcnow() - timedelta(seconds=float(window_s)):
        return None
    last.ovl = last.rel = None
    last.rated_at = last.skipped_at = None
    last.time_on_task_ms = None
    last.served_at = utcnow()  # shown again now: the next answer's time on task runs from here
    last.skip_reason = UNDONE
    session.flush()
    return last.item_id


# ---------------------------------------------------------------------------------------------
# results (the admin side)


@dataclass
class RaterSummary:
    user_id: int
    name: str
    n_assigned: int
    n_rated: int
    n_skipped: int
    mean_ovl: Optional[float]
    mean_rel: Optional[float]
    n_gold: int
    gold_mean_rel: Optional[float]
    screened: bool
    excluded: bool  # by the gold rule or by an admin
    # Pearson r of this rater's real-item ratings with the other kept raters' mean on the same
    # clips (None: excluded, fewer than 3 shared clips, or no variation)
    agreement_ovl: Optional[float] = None
    agreement_rel: Optional[float] = None
    excluded_by_admin: bool = False


@dataclass
class SystemSummary:
    clip_set_id: int
    name: str
    generator: str
    checkpoint_id: str
    n_clips: int
    n_ratings: int
    ovl: MeanCI  # mean of per-clip means, two-way cluster bootstrap CI over prompts and raters
    rel: MeanCI


@dataclass
class PairedDifference:
    """system_a − system_b on the prompts both have (per-clip means, same cluster bootstrap)."""

    system_a: str
    system_b: str
    n_prompts: int
    ovl: MeanCI
    rel: MeanCI


@dataclass
class Results:
    session_id: int
    session_name: str
    seed: int
    min_raters: int
    gold_rel_threshold: float
    gold_rule: str
    n_prompts: int
    n_items: int
    n_gold_items: int
    systems: list[SystemSummary]
    alpha_ovl: Optional[float]
    alpha_rel: Optional[float]
    raters: list[RaterSummary]
    excluded_raters: list[str]
    n_items_covered: int  # real items with ≥ min_raters ratings from kept raters
    complete: bool
    warnings: list[str] = field(default_factory=list)
    differences: list[PairedDifference] = field(default_factory=list)
    alpha_ovl_ci: Optional[MeanCI] = None  # α with a bootstrap CI over clips
    alpha_rel_ci: Optional[MeanCI] = None
    ci_method: str = ("per-clip means (a clip counts once however many raters it had); 95 % CI by a two-way "
                      "cluster bootstrap over prompts and raters (scipy.stats.bootstrap, percentile)")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RatingRow:
    item_id: int
    clip_set_id: int
    system: str
    caption_id: int
    clip_id: int
    prompt: str
    is_gold: bool
    gold_kind: Optional[str]
    user_id: int
    rater: str
    position: int
    ovl: Optional[int]
    rel: Optional[int]
    rated_at: Optional[str]
    skipped: bool
    skip_reason: Optional[str]
    time_on_task_ms: Optional[int] = None  # server clock, from the item being shown to the rating


def rating_rows(session: Session, session_id: int) -> list[RatingRow]:
    """Every assignment of the session with its rating, in (item, rater) order (admin view)."""
    r, i = ListeningRating, ListeningItem
    q = (select(r, i, ClipSet.name, User.name)
         .join(i, i.id == r.item_id).join(ClipSet, ClipSet.id == i.clip_set_id).join(User, User.id == r.user_id)
         .where(r.session_id == session_id).order_by(i.id, r.user_id))
    out = []
    for rating, item, system, rater in session.execute(q):
        out.append(RatingRow(item.id, item.clip_set_id, system, item.caption_id, item.clip_id, item.prompt,
                             item.is_gold, item.gold_kind, rating.user_id, rater, rating.position, rating.ovl,
                             rating.rel, rating.rated_at.isoformat() if rating.rated_at else None,
                             rating.skipped_at is not None, rating.skip_reason, rating.time_on_task_ms))
    return out


def _mean(xs: Sequence[float]) -> Optional[float]:
    return float(np.mean(xs)) if len(xs) else None


def session_results(session: Session, ref: ListeningSession | int | str, confidence: float = 0.95) -> Results:
    """Mean ± CI per system, α (ordinal), per-rater summaries and gold screening (module doc)."""
    ls = get_session(session, ref)
    rows = rating_rows(session, ls.id)
    items = list(session.scalars(select(ListeningItem).where(ListeningItem.session_id == ls.id)))
    real_items = [it for it in items if not it.is_gold]

    # 1. Raters and the gold screening
    by_user: dict[int, list[RatingRow]] = defaultdict(list)
    for row in rows:
        by_user[row.user_id].append(row)
    raters: list[RaterSummary] = []
    kept: set[int] = set()
    by_admin = set(session.scalars(select(User.id).where(User.id.in_(list(by_user)), User.excluded_at.is_not(None))))
    for uid, rs in sorted(by_user.items(), key=lambda kv: kv[1][0].rater):
        rated = [x for x in rs if x.ovl is not None]
        real = [x for x in rated if not x.is_gold]
        gold = [x for x in rated if x.is_gold]
        gold_rel = _mean([x.rel for x in gold])
        excluded = (gold_rel is not None and gold_rel >= ls.gold_rel_threshold) or uid in by_admin
        if not excluded:
            kept.add(uid)
        raters.append(RaterSummary(uid, rs[0].rater, len(rs), len(rated), sum(x.skipped for x in rs),
                                   _mean([x.ovl for x in real]), _mean([x.rel for x in real]), len(gold),
                                   gold_rel, bool(gold), excluded, excluded_by_admin=uid in by_admin))

    # 2. Per system over kept raters' ratings of real items: raters × prompts tables (one clip per
    # prompt and system), the mean of per-clip means with a cluster bootstrap over prompts and raters
    usable = [x for x in rows if x.ovl is not None and not x.is_gold and x.user_id in kept]
    users = sorted({x.user_id for x in usable})
    prompts = sorted({it.caption_id for it in real_items})
    row_of = {u: k for k, u in enumerate(users)}
    col_of = {c: j for j, c in enumerate(prompts)}
    tables: dict[int, dict[str, np.ndarray]] = {}
    for sysrow in ls.systems:
        tables[sysrow.clip_set_id] = {k: np.full((len(users), len(prompts)), np.nan) for k in ("ovl", "rel")}
    for x in usable:
        for k in ("ovl", "rel"):
            tables[x.clip_set_id][k][row_of[x.user_id], col_of[x.caption_id]] = getattr(x, k)
    boot = dict(confidence=confidence, seed=ls.seed)
    systems = []
    for sysrow in ls.systems:
        cs = sysrow.clip_set
        mine = [x for x in usable if x.clip_set_id == cs.id]
        t = tables[cs.id]
        systems.append(SystemSummary(
            cs.id, cs.name, cs.generator, cs.checkpoint_id,
            n_clips=sum(1 for it in real_items if it.clip_set_id == cs.id), n_ratings=len(mine),
            ovl=design_mean_ci(t["ovl"], **boot), rel=design_mean_ci(t["rel"], **boot)))
    differences = []
    for i, a in enumerate(systems):
        for b in systems[i + 1:]:
            ta, tb = tables[a.clip_set_id], tables[b.clip_set_id]
            ovl_d = paired_difference_ci(ta["ovl"], tb["ovl"], **boot)
            differences.append(PairedDifference(a.name, b.name, ovl_d.n, ovl_d,
                                                paired_difference_ci(ta["rel"], tb["rel"], **boot)))

    # 3. Krippendorff's α (ordinal) over raters × real items, with a bootstrap CI over clips;
    # each kept rater's agreement with the others
    col = {it.id: j for j, it in enumerate(real_items)}
    ovl_m = np.full((len(users), len(real_items)), np.nan)
    rel_m = np.full_like(ovl_m, np.nan)
    per_item: dict[int, int] = defaultdict(int)
    for x in usable:
        ovl_m[row_of[x.user_id], col[x.item_id]] = x.ovl
        rel_m[row_of[x.user_id], col[x.item_id]] = x.rel
        per_item[x.item_id] += 1
    alpha_ovl = krippendorff_alpha(ovl_m, "ordinal") if users else None
    alpha_rel = krippendorff_alpha(rel_m, "ordinal") if users else None
    alpha_ovl_ci = krippendorff_alpha_ci(ovl_m, "ordinal", **boot) if users else None
    alpha_rel_ci = krippendorff_alpha_ci(rel_m, "ordinal", **boot) if users else None
    agree = {"ovl": loo_agreement(ovl_m), "rel": loo_agreement(rel_m)} if users else {}
    for r in raters:
        if r.user_id in row_of:
            r.agreement_ovl = agree["ovl"][row_of[r.user_id]]
            r.agreement_rel = agree["rel"][row_of[r.user_id]]

    # 4. Coverage and warnings
    covered = sum(1 for it in real_items if per_item.get(it.id, 0) >= ls.min_raters)
    warnings = []
    if covered < len(real_items):
        warnings.append(f"{len(real_items) - covered} of {len(real_items)} clips have fewer than "
                        f"{ls.min_raters} ratings from kept raters (arXiv 2404.09956 §5.3 asks for at least {ls.min_raters})")
    unscreened = [r.name for r in raters if not r.screened and r.n_rated]
    if unscreened and any(it.is_gold for it in items):
        warnings.append(f"not yet screened (no gold item rated): {', '.join(unscreened)}")
    if alpha_ovl is None or alpha_rel is None:
        warnings.append("Krippendorff's α is undefined until at least two ratings of one clip differ in value")
    return Results(
        session_id=ls.id, session_name=ls.name, seed=ls.seed, min_raters=ls.min_raters,
        gold_rel_threshold=ls.gold_rel_threshold, gold_rule=GOLD_RULE.format(threshold=ls.gold_rel_threshold),
        n_prompts=len({it.caption_id for it in real_items}), n_items=len(real_items),
        n_gold_items=len(items) - len(real_items), systems=systems, alpha_ovl=alpha_ovl, alpha_rel=alpha_rel,
        raters=raters, excluded_raters=[r.name for r in raters if r.excluded], n_items_covered=covered,
        complete=bool(real_items) and covered == len(real_items), warnings=warnings, differences=differences,
        alpha_ovl_ci=alpha_ovl_ci, alpha_rel_ci=alpha_rel_ci)


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode("utf-8")


def export_results(session: Session, ref: ListeningSession | int | str, out_dir: str | Path) -> dict[str, Path]:
    """Write results.json, systems.csv, differences.csv, raters.csv and ratings.csv into OUT_DIR (each atomically)."""
    res = session_results(session, ref)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CuratorError(f"export folder {out} is a file")
    rows = rating_rows(session, res.session_id)
    excluded = {r.user_id for r in res.raters if r.excluded}
    paths = {name: out / name for name in ("results.json", "systems.csv", "differences.csv", "raters.csv", "ratings.csv")}
    payload = res.as_dict()
    payload["ratings"] = [asdict(x) | {"rater_excluded": x.user_id in excluded} for x in rows]
    atomic_write_bytes(paths["results.json"], json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8"))
    atomic_write_bytes(paths["systems.csv"], _csv_bytes(
        ["system", "generator", "checkpoint_id", "n_clips", "n_ratings", "ovl_mean", "ovl_ci_low", "ovl_ci_high",
         "rel_mean", "rel_ci_low", "rel_ci_high", "ci_method"],
        ([s.name, s.generator, s.checkpoint_id, s.n_clips, s.n_ratings, s.ovl.mean, s.ovl.low, s.ovl.high,
          s.rel.mean, s.rel.low, s.rel.high, s.ovl.method] for s in res.systems)))
    atomic_write_bytes(paths["differences.csv"], _csv_bytes(
        ["system_a", "system_b", "n_prompts", "ovl_diff", "ovl_ci_low", "ovl_ci_high", "rel_diff", "rel_ci_low",
         "rel_ci_high"],
        ([d.system_a, d.system_b, d.n_prompts, d.ovl.mean, d.ovl.low, d.ovl.high, d.rel.mean, d.rel.low, d.rel.high]
         for d in res.differences)))
    atomic_write_bytes(paths["raters.csv"], _csv_bytes(
        ["rater", "n_assigned", "n_rated", "n_skipped", "mean_ovl", "mean_rel", "n_gold", "gold_mean_rel",
         "screened", "excluded", "agreement_ovl", "agreement_rel"],
        ([r.name, r.n_assigned, r.n_rated, r.n_skipped, r.mean_ovl, r.mean_rel, r.n_gold, r.gold_mean_rel,
          r.screened, r.excluded, r.agreement_ovl, r.agreement_rel] for r in res.raters)))
    atomic_write_bytes(paths["ratings.csv"], _csv_bytes(
        list(RatingRow.__dataclass_fields__) + ["rater_excluded"],
        ([*asdict(x).values(), x.user_id in excluded] for x in rows)))
    return paths
