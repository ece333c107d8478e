"""Candidate pairs from scored clips (arXiv 2404.09956 §4.1.2).

- Strategies 1.1 and 1.2 (each on its own): of the four clips of a caption, the one with the
  highest CLAP score for the caption under MODEL 1 of the ensemble (the first ClapModel by
  position) is the winner; each of the other three is a loser → 3 pairs per caption.
- Strategies 2 and 3: the caption's clip (slot 0) against the perturbed caption's clip (slot 1),
  kept only where score(caption, caption's clip) > score(caption, perturbed clip) under model 1.

Every clip is scored against its CAPTION's text (also the perturbed clips), so a score is looked
up by (clip sha, caption text sha, model). Each pair gets one PairScore per model of the ensemble.
`build_pairs` is idempotent and resumable: pairs already in the store are skipped, PairScore rows
missing for a model that has since been scored are filled in, and it commits per batch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from sqlalchemy import select, text
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from db.errors import CuratorError
from db.models import STRATEGIES, ClapModel, Pair, utcnow

RANKED_STRATEGIES = ("1.1", "1.2")  # winner = top clip of the group under model 1
GROUP_SIZE = 4  # clips per caption for strategies 1.1 and 1.2 (arXiv 2404.09956 §4.1)
PERTURBED_STRATEGIES = ("2", "3")  # slot 0 = caption's clip, slot ≥ 1 = perturbed caption's clip
IMPORT_GENERATOR = "import"  # clips of imported preference sets come with their pairs
AUTO_SOURCE = "auto"
DEFAULT_BATCH = 5000


@dataclass
class PairCounts:
    created: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STRATEGIES})
    existing: int = 0  # pairs already in the store (rerun)
    not_kept: dict[str, int] = field(default_factory=lambda: {s: 0 for s in PERTURBED_STRATEGIES})
    incomplete_groups: int = 0  # too few clips yet (generation not finished)
    unranked_groups: int = 0  # some clip has no model-1 score yet (scoring not finished)
    missing_scores: dict[str, int] = field(default_factory=dict)  # model → pairs lacking its score
    pair_scores_added: int = 0

    @property
    def total_created(self) -> int:
        return sum(self.created.values())

    def as_dict(self) -> dict:
        return {"created": dict(self.created), "total_created": self.total_created, "existing": self.existing,
                "not_kept": dict(self.not_kept), "incomplete_groups": self.incomplete_groups,
                "unranked_groups": self.unranked_groups, "missing_scores": dict(self.missing_scores),
                "pair_scores_added": self.pair_scores_added}


@dataclass(frozen=True)
class _Clip:
    id: int
    slot: int
    path: str


# --------------------------------------------------------------------------------------------
# Bulk insert (shared with import-pairs and benchmarks/bench_ingest.py)
# --------------------------------------------------------------------------------------------


def ingest_pairs(session: Session, pairs: Sequence[tuple[int, int, int, str, str]],
                 scores: Sequence[Sequence[tuple[int, float, float]]] | None = None) -> list[int]:
    """Insert PAIRS (caption_id, winner_clip_id, loser_clip_id, strategy, source) and, per pair, its
    (model_id, winner_score, loser_score) rows, in bulk through the driver:

    - SQLite: one executemany; the writer holds the database lock for the rest of the transaction,
      so the new rowids are the consecutive block ending at MAX(id) (checked on both ends);
    - PostgreSQL: ids reserved from the table's sequence (safe beside concurrent writers), then COPY;

    Returns the new pair ids in the order of PAIRS. Runs in the session's transaction; does not commit."""
    if scores is not None and len(scores) != len(pairs):
        raise ValueError(f"{len(scores)} score lists for {len(pairs)} pairs")
    if not pairs:
        return []
    session.flush()  # ORM rows added earlier (captions, clips) go first
    conn = session.connection()
    now = utcnow()
    name = conn.dialect.name
    if name == "sqlite":
        ids = _ingest_sqlite(conn, pairs, now)
    elif name == "postgresql":
        ids = _ingest_postgres(conn, pairs, now)
    else:
        raise CuratorError(f"store dialect {name!r} is not supported (sqlite, postgresql)")
    if scores is not None:
        insert_pair_scores(session, [(pid, m, ws, ls) for pid, per_pair in zip(ids, scores)
                                     for m, ws, ls in per_pair])
    return ids


_PAIR_COLS = "caption_id, winner_clip_id, loser_clip_id, strategy, source, created_at"
_SCORE_COLS = "pair_id, model_id, winner_score, loser_score"


def _ingest_sqlite(conn, pairs, now) -> list[int]:
    stamp = Pair.__table__.c.created_at.type.bind_processor(conn.dialect)
    now_db = stamp(now) if stamp else now
    n = len(pairs)
    conn.exec_driver_sql(f"INSERT INTO pairs ({_PAIR_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                         [(*p, now_db) for p in pairs])
    last = conn.exec_driver_sql("SELECT MAX(id) FROM pairs").scalar_one()
    ids = list(range(last - n + 1, last + 1))
    for pid, p in ((ids[0], pairs[0]), (ids[-1], pairs[-1])):
        got = conn.exec_driver_sql("SELECT winner_clip_id, loser_clip_id FROM pairs WHERE id = ?", (pid,)).first()
        if got is None or tuple(got) != (p[1], p[2]):
            raise RuntimeError("pair ids of a bulk insert are not consecutive; rerun `curator pairs`")
    return ids


def _ingest_postgres(conn, pairs, now) -> list[int]:
    ids = [r[0] for r in conn.exec_driver_sql(
        "SELECT nextval(pg_get_serial_sequence('pairs', 'id')) FROM generate_series(1, %(n)s)",
        {"n": len(pairs)})]
    cur = conn.connection.driver_connection.cursor()
    with cur.copy(f"COPY pairs (id, {_PAIR_COLS}) FROM STDIN") as cp:
        for pid, p in zip(ids, pairs):
            cp.write_row((pid, *p, now))
    cur.close()
    return ids


def insert_pair_scores(session: Session, rows: Sequence[tuple[int, int, float, float]]) -> None:
    """PairScore rows (pair_id, model_id, winner_score, loser_score), in bulk through the driver."""
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"INSERT INTO pair_scores ({_SCORE_COLS}) VALUES (?, ?, ?, ?)", list(rows))
    elif conn.dialect.name == "postgresql":
        cur = conn.connection.driver_connection.cursor()
        with cur.copy(f"COPY pair_scores ({_SCORE_COLS}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        cur.close()
    else:
        raise CuratorError(f"store dialect {conn.dialect.name!r} is not supported (sqlite, postgresql)")


# --------------------------------------------------------------------------------------------
# build_pairs
# --------------------------------------------------------------------------------------------


def ensemble(session: Session) -> list[ClapModel]:
    """The CLAP models in ensemble order (position, then id); model 1 ranks Strategy 1."""
    models = session.scalars(select(ClapModel).order_by(ClapModel.position, ClapModel.id)).all()
    if not models:
        raise CuratorError("the store has no CLAP scores yet: run `curator score --model ...` first")
    return list(models)


def _load_scores(session: Session) -> dict[tuple[int, int], float]:
    """(clip id, model id) → score of the clip against its caption's text."""
    rows = session.execute(text(
        "SELECT c.id, s.model_id, s.value FROM audio_clips c "
        "JOIN captions cap ON cap.id = c.caption_id "
        "JOIN scores s ON s.clip_sha = c.sha256 AND s.text_sha = cap.text_sha"
    ))
    return {(cid, mid): value for cid, mid, value in rows}


class _Scores:
    def __init__(self, values: dict[tuple[int, int], float], models: list[ClapModel], paths: dict[int, str]):
        self.values, self.models, self.paths = values, models, paths

    def get(self, clip_id: int, model: ClapModel) -> float | None:
        value = self.values.get((clip_id, model.id))
        if value is None:
            return None
        value = float(value)
        if not math.isfinite(value):
            raise CuratorError(f"clip {clip_id} ({self.paths.get(clip_id, '?')}) has a {value} score under "
                               f"model {model.name!r}; rescore it (`curator score`) before building pairs")
        return value

    def pair_rows(self, winner: int, loser: int) -> tuple[list[tuple[int, float, float]], list[str]]:
        """PairScore rows for every model with both scores, and the names of models lacking one."""
        rows, missing = [], []
        for m in self.models:
            ws, ls = self.get(winner, m), self.get(loser, m)
            if ws is None or ls is None:
                missing.append(m.name)
            else:
                rows.append((m.id, ws, ls))
        return rows, missing


def _candidates(groups: dict, scores: _Scores, model1: ClapModel, counts: PairCounts, bar=None
                ) -> Iterable[tuple[int, int, int, str]]:
    """(caption_id, winner, loser, strategy) of every candidate pair the rules of §4.1.2 give."""
    for (caption_id, strategy, _gen, _ckpt), clips in sorted(groups.items()):
        if bar is not None:
            bar.update(1)
        clips = sorted(clips, key=lambda c: (c.slot, c.id))
        if strategy in RANKED_STRATEGIES:
            if len(clips) < GROUP_SIZE:
                counts.incomplete_groups += 1
                continue
            s1 = [scores.get(c.id, model1) for c in clips]
            if any(v is None for v in s1):
                counts.unranked_groups += 1
                continue
            # highest model-1 score wins; a tie goes to the lower slot (deterministic)
            top = max(range(len(clips)), key=lambda i: (s1[i], -i))
            for i, c in enumerate(clips):
                if i != top:
                    yield caption_id, clips[top].id, c.id, strategy
        else:
            head = clips[0] if clips and clips[0].slot == 0 else None
            losers = [c for c in clips if c.slot >= 1]
            if head is None or not losers:
                counts.incomplete_groups += 1
                continue
            s_head = scores.get(head.id, model1)
            s_losers = [scores.get(c.id, model1) for c in losers]
            if s_head is None or any(v is None for v in s_losers):
                counts.unranked_groups += 1
                continue
            for c, s in zip(losers, s_losers):
                if s_head > s:
                    yield caption_id, head.id, c.id, strategy
                else:
                    counts.not_kept[strategy] += 1


def build_pairs(session: Session, *, batch_size: int = DEFAULT_BATCH, progress: bool = True) -> PairCounts:
    """Make the candidate pairs of arXiv 2404.09956 §4.1.2 and their per-model scores.

    Commits after every BATCH_SIZE new pairs (so an interrupted run keeps its work and a rerun
    resumes); the caller commits the tail."""
    models = ensemble(session)
    model1 = models[0]
    counts = PairCounts()

    # 1. Clips by group: (caption, strategy, generator, checkpoint) → clips
    clip_rows = session.execute(text(
        "SELECT id, caption_id, strategy, slot, generator, checkpoint_id, path FROM audio_clips "
        "WHERE generator <> :imp"), {"imp": IMPORT_GENERATOR}).all()
    groups: dict[tuple, list[_Clip]] = defaultdict(list)
    paths: dict[int, str] = {}
    for cid, caption_id, strategy, slot, gen, ckpt, path in clip_rows:
        paths[cid] = path
        if strategy in STRATEGIES:
            groups[(caption_id, strategy, gen, ckpt)].append(_Clip(cid, slot, path))
    for cid, path in session.execute(text("SELECT id, path FROM audio_clips WHERE generator = :imp"),
                                     {"imp": IMPORT_GENERATOR}):
        paths[cid] = path
    scores = _Scores(_load_scores(session), models, paths)

    # 2. What is already there
    existing = {(w, lo): pid for pid, w, lo in session.execute(
        text("SELECT id, winner_clip_id, loser_clip_id FROM pairs"))}
    have_scores = set(session.execute(text("SELECT pair_id, model_id FROM pair_scores")).tuples())

    # 3. PairScore rows missing on existing pairs (a model scored since, or imported pairs)
    fill: list[tuple[int, int, float, float]] = []
    for (w, lo), pid in existing.items():
        for m in models:
            if (pid, m.id) in have_scores:
                continue
            ws, ls = scores.get(w, m), scores.get(lo, m)
            if ws is not None and ls is not None:
                fill.append((pid, m.id, ws, ls))
                have_scores.add((pid, m.id))
    for start in range(0, len(fill), batch_size):
        insert_pair_scores(session, fill[start:start + batch_size])
        session.commit()
    counts.pair_scores_added += len(fill)

    # 4. New pairs, inserted and committed per batch
    pending: list[tuple[int, int, int, str, str]] = []
    pending_scores: list[list[tuple[int, float, float]]] = []

    def flush() -> None:
        ingest_pairs(session, pending, pending_scores)
        counts.pair_scores_added += sum(len(s) for s in pending_scores)
        session.commit()
        pending.clear()
        pending_scores.clear()

    bar = tqdm(total=len(groups), desc="pairs", unit="group", disable=not progress)
    for caption_id, winner, loser, strategy in _candidates(groups, scores, model1, counts, bar):
        if (winner, loser) in existing:
            counts.existing += 1
            continue
        rows, missing = scores.pair_rows(winner, loser)
        for name in missing:
            counts.missing_scores[name] = counts.missing_scores.get(name, 0) + 1
        existing[(winner, loser)] = -1
        pending.append((caption_id, winner, loser, strategy, AUTO_SOURCE))
        pending_scores.append(rows)
        counts.created[strategy] += 1
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    bar.close()
    # pairs of existing rows that still lack some model's score
    for (w, lo), pid in existing.items():
        if pid == -1:
            continue
        for m in models:
            if (pid, m.id) not in have_scores and (scores.get(w, m) is None or scores.get(lo, m) is None):
                counts.missing_scores[m.name] = counts.missing_scores.get(m.name, 0) + 1
    return counts


def describe(counts: PairCounts) -> str:
    """A short human summary for the CLI."""
    c = counts
    made = ", ".join(f"S{s}: {n}" for s, n in c.created.items())
    lines = [f"created {c.total_created} pairs ({made}); {c.existing} already in the store; "
             f"{c.pair_scores_added} pair scores written"]
    if any(c.not_kept.values()):
        lines.append("not kept (perturbed caption's clip scored ≥ the caption's under model 1): "
                     + ", ".join(f"S{s}: {n}" for s, n in c.not_kept.items()))
    if c.incomplete_groups:
        lines.append(f"{c.incomplete_groups} caption group(s) have too few clips yet (run `curator generate`)")
    if c.unranked_groups:
        lines.append(f"{c.unranked_groups} caption group(s) lack a model-1 score (run `curator score`)")
    for name, n in c.missing_scores.items():
        lines.append(f"{n} pair(s) lack a score under model {name!r}; they cannot pass the filter until "
                     "`curator score` fills it and `curator pairs` reruns")
    return "\n".join(lines)
