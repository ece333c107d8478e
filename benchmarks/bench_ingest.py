"""Ingest N candidate pairs with two scores each: our path vs the raw driver, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_ingest.py [--n 1000000] [--batch 5000] [--pg URL | --no-pg]

Ours: curator.pairs.ingest_pairs, the bulk insert build_pairs uses (SQLAlchemy Core multi-row
INSERT … RETURNING id for the pairs, then an executemany of the pair_scores), committing every
BATCH pairs as build_pairs does. Raw: the same rows through the driver alone, with the ids assigned
by the client (no RETURNING needed), committing every BATCH pairs too:
- SQLite: sqlite3 `executemany` (same pragmas: WAL, synchronous=NORMAL, foreign keys on);
- PostgreSQL: psycopg 3 `executemany` (pipeline mode), and also `COPY … FROM STDIN`.
Each side gets a fresh migrated store with the same clips; the sides take the same batches in turn
(rotating who goes first), so load from other processes falls on all alike. Goal: ours ≥ 0.5× raw.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from curator.pairs import ingest_pairs  # noqa: E402
from db.session import dispose_engines, open_store, upgrade  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def make_rows(n: int):
    """N distinct (winner, loser) pairs over K clips, caption = the winner's caption; two scores each."""
    k = 2
    while k * (k - 1) < n:
        k *= 2
    k = int(k * 0.75) if int(k * 0.75) * (int(k * 0.75) - 1) >= n else k
    pairs, scores = [], []
    strategies = ("1.1", "1.2", "2", "3")
    i = 0
    for w in range(1, k + 1):
        for lo in range(1, k + 1):
            if lo == w:
                continue
            caption = (w - 1) // 4 + 1
            s1, s2 = 0.3 + (i % 97) / 200, 0.5 + (i % 89) / 300
            pairs.append((caption, w, lo, strategies[i % 4], "auto"))
            scores.append([(1, s1, s1 - 0.1), (2, s2, s2 - 0.2)])
            i += 1
            if i == n:
                return k, pairs, scores
    return k, pairs, scores


def setup_store(url: str, n_clips: int) -> None:
    """Migrate, then captions, two CLAP models and N_CLIPS clips (raw SQL, not timed)."""
    upgrade(url)
    factory = open_store(url)
    now = dt.datetime.now(dt.timezone.utc)
    with factory() as s:
        n_caps = (n_clips + 3) // 4
        s.execute(text("INSERT INTO captions (id, text, text_sha, source, split, temporal, created_at) "
                       "VALUES (:id, :t, :sha, 'bench', 'train', false, :now)"),
                  [{"id": i, "t": f"caption {i}", "sha": f"{i:064d}", "now": now} for i in range(1, n_caps + 1)])
        s.execute(text("INSERT INTO clap_models (id, name, checkpoint, backend, position, created_at) "
                       "VALUES (1, 'm1', 'm1', 'world', 0, :now), (2, 'm2', 'm2', 'world', 1, :now)"), {"now": now})
        s.execute(text("INSERT INTO audio_clips (id, sha256, path, sample_rate, num_samples, duration_s, generator, "
                       "checkpoint_id, prompt, caption_id, strategy, slot, created_at) VALUES (:id, :sha, :p, 16000, "
                       "16000, 1.0, 'bench', 'bench', 'p', :cap, '1.1', :slot, :now)"),
                  [{"id": i, "sha": f"{i:064x}", "p": f"x/{i}.wav", "cap": (i - 1) // 4 + 1, "slot": (i - 1) % 4,
                    "now": now} for i in range(1, n_clips + 1)])
        s.commit()


class Ours:
    """Our path: ingest_pairs in the session, a commit per batch (as build_pairs does)."""

    def __init__(self, url: str):
        self.session = open_store(url)()

    def batch(self, start: int, pairs, scores) -> None:
        ingest_pairs(self.session, pairs, scores)
        self.session.commit()

    def close(self) -> None:
        self.session.close()


class RawSqlite:
    """sqlite3 executemany with the store's pragmas, client-assigned ids, a commit per batch."""

    def __init__(self, path: str):
        self.conn = sqlite3.connect(path)
        for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.now = dt.datetime.now(dt.timezone.utc).isoformat(" ")

    def batch(self, start: int, pairs, scores) -> None:
        ids = range(start + 1, start + 1 + len(pairs))
        self.conn.executemany("INSERT INTO pairs (id, caption_id, winner_clip_id, loser_clip_id, strategy, source, "
                              "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              [(i, *p, self.now) for i, p in zip(ids, pairs)])
        self.conn.executemany("INSERT INTO pair_scores (pair_id, model_id, winner_score, loser_score) "
                              "VALUES (?, ?, ?, ?)", [(i, *row) for i, per in zip(ids, scores) for row in per])
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class RawPg:
    """psycopg 3 executemany (pipeline mode) or COPY, client-assigned ids, a commit per batch."""

    def __init__(self, url: str, copy: bool):
        import psycopg

        self.conn = psycopg.connect(url)
        self.copy = copy
        self.now = dt.datetime.now(dt.timezone.utc)

    def batch(self, start: int, pairs, scores) -> None:
        ids = range(start + 1, start + 1 + len(pairs))
        prow = [(i, *p, self.now) for i, p in zip(ids, pairs)]
        srow = [(i, *row) for i, per in zip(ids, scores) for row in per]
        with self.conn.cursor() as cur:
            if self.copy:
                with cur.copy("COPY pairs (id, caption_id, winner_clip_id, loser_clip_id, strategy, source, "
                              "created_at) FROM STDIN") as cp:
                    for r in prow:
                        cp.write_row(r)
                with cur.copy("COPY pair_scores (pair_id, model_id, winner_score, loser_score) FROM STDIN") as cp:
                    for r in srow:
                        cp.write_row(r)
            else:
                cur.executemany("INSERT INTO pairs (id, caption_id, winner_clip_id, loser_clip_id, strategy, "
                                "source, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)", prow)
                cur.executemany("INSERT INTO pair_scores (pair_id, model_id, winner_score, loser_score) "
                                "VALUES (%s, %s, %s, %s)", srow)
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def race(sides: dict, pairs, scores, batch: int) -> dict[str, float]:
    """Feed every side the same batches, interleaved (the order rotates per batch), so background load on
    a shared machine hits all sides alike; returns the seconds each side spent in its own batches."""
    spent = {name: 0.0 for name in sides}
    names = list(sides)
    for b, start in enumerate(range(0, len(pairs), batch)):
        chunk, chunk_scores = pairs[start:start + batch], scores[start:start + batch]
        k = b % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            sides[name].batch(start, chunk, chunk_scores)
            spent[name] += time.perf_counter() - t0
    for side in sides.values():
        side.close()
    return spent


def count(url: str) -> tuple[int, int]:
    factory = open_store(url)
    with factory() as s:
        return (s.execute(text("SELECT COUNT(*) FROM pairs")).scalar_one(),
                s.execute(text("SELECT COUNT(*) FROM pair_scores")).scalar_one())


def report(label: str, n: int, t_ours: float, t_raw: float, raw_label: str) -> None:
    print(f"{label}: ours {t_ours:.2f} s ({n / t_ours:,.0f} pairs/s), {raw_label} {t_raw:.2f} s "
          f"({n / t_raw:,.0f} pairs/s); speed ratio ours/raw = {t_raw / t_ours:.2f}x (goal >= 0.5x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5000, help="pairs per commit (build_pairs' default)")
    ap.add_argument("--pg", default=PG_ADMIN, help="admin URL of a PostgreSQL server (fresh databases are made)")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = ap.parse_args()

    k, pairs, scores = make_rows(args.n)
    n = len(pairs)
    print(f"{n:,} pairs, {2 * n:,} pair scores, over {k:,} clips; commit every {args.batch:,} pairs")

    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "ours.db", Path(tmp) / "raw.db"
        for p in (a, b):
            setup_store(f"sqlite:///{p}", k)
        t = race({"ours": Ours(f"sqlite:///{a}"), "raw": RawSqlite(str(b))}, pairs, scores, args.batch)
        t_ours, t_raw = t["ours"], t["raw"]
        assert count(f"sqlite:///{a}") == count(f"sqlite:///{b}") == (n, 2 * n)
        report("SQLite", n, t_ours, t_raw, "sqlite3.executemany")
        dispose_engines()

    if args.no_pg:
        return
    import psycopg

    try:
        psycopg.connect(args.pg, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001
        print(f"PostgreSQL skipped: no server at {args.pg}: {str(exc).splitlines()[0]}")
        return
    names = [f"bench_ingest_{uuid.uuid4().hex[:8]}" for _ in range(3)]
    base = args.pg.rsplit("/", 1)[0]
    with psycopg.connect(args.pg, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        urls = [f"{base}/{name}" for name in names]
        for u in urls:
            setup_store(u, k)
        t = race({"ours": Ours(urls[0]), "many": RawPg(urls[1], copy=False), "copy": RawPg(urls[2], copy=True)},
                 pairs, scores, args.batch)
        t_ours, t_many, t_copy = t["ours"], t["many"], t["copy"]
        assert count(urls[0]) == count(urls[1]) == count(urls[2]) == (n, 2 * n)
        report("PostgreSQL", n, t_ours, t_many, "psycopg executemany")
        report("PostgreSQL", n, t_ours, t_copy, "psycopg COPY")
    finally:
        dispose_engines()
        with psycopg.connect(args.pg, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
