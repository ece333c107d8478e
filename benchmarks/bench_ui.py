"""Rater-app benchmarks (issue 4, Benchmarks).

1. Next-pair latency with R concurrent raters on loopback: each rater logs in over raw HTTP
   (httpx, Gradio's /gradio_api/call API) and votes V times; a vote returns the next pair, so its
   round trip is the latency a rater waits for the next pair. Also checks the load-test
   invariants (no vote lost or duplicated, no pair over its overlap). Reports p50/p95/max.
2. Threshold view refresh (`annotate_ui.tuning.view` + the frames the plots get) at 100k and 1M
   pairs of random scores.

    .venv/bin/python benchmarks/bench_ui.py [--raters 20] [--votes 200] [--db URL] [--skip-http]

--db must name an EMPTY dedicated store (each run migrates it and adds its own pool and users;
a second run on the same store stops on the CLAP model names already there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def percentile(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


class RawClient:
    """Gradio's HTTP API without gradio_client: POST /gradio_api/call/NAME, then read its SSE result."""

    def __init__(self, url: str, name: str, password: str):
        import httpx

        self.h = httpx.Client(base_url=url, timeout=120)
        r = self.h.post("/login", data={"username": name, "password": password})
        r.raise_for_status()

    def call(self, api_name: str, *data):
        r = self.h.post(f"/gradio_api/call/{api_name}", json={"data": list(data)})
        r.raise_for_status()
        event_id = r.json()["event_id"]
        event = None
        with self.h.stream("GET", f"/gradio_api/call/{api_name}/{event_id}") as s:
            for line in s.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line.split(":", 1)[1].strip()
                    if event == "error":
                        raise RuntimeError(payload)
                    return json.loads(payload)
        raise RuntimeError(f"{api_name}: no result")


def bench_http(db_url: str | None, raters: int, votes: int, overlap: int = 3) -> dict:
    from sqlalchemy import select

    from annotate_ui import audit
    from annotate_ui.app import launch, make_context
    from curator.audio import AudioStore
    from db.annotation import AuditAssignment
    from db.session import upgrade
    from test_ui_app import free_port
    from test_ui_fixtures import PASSWORD, make_pool, make_users

    tmp = Path(tempfile.mkdtemp(prefix="bench_ui_"))
    url = db_url or f"sqlite:///{tmp / 'store.db'}"
    upgrade(url)
    store = AudioStore(tmp / "audio")
    ctx = make_context(url, store)
    n_pairs = max(2 * -(-raters * votes // overlap), votes + 10)
    t0 = time.perf_counter()
    with ctx.session() as s:
        pairs = make_pool(s, store, n_pairs, seed=int(time.time()) % 1000)
        make_users(s, n_raters=raters, admins=1, prefix=f"b{int(time.time())}r")
        names = [f"b{int(time.time())}r{i}" for i in range(raters)]
        audit.enqueue(s, pairs, reason="random", added_by="bench", overlap=overlap)
    setup_s = time.perf_counter() - t0
    port = free_port()
    demo = launch(ctx, port=port, prevent_thread_lock=True, concurrency=raters)
    base = f"http://127.0.0.1:{port}/"
    lat_vote, lat_next, errors, cast = [], [], [], {}
    lock = threading.Lock()
    try:
        clients = {n: RawClient(base, n, PASSWORD) for n in names}
        barrier = threading.Barrier(raters)

        def rater(name):
            try:
                c, mine, lv, ln = clients[name], [], [], []
                barrier.wait()
                t = time.perf_counter()
                out = c.call("next")
                ln.append(time.perf_counter() - t)
                for k in range(votes):
                    mine.append(out[0])
                    t = time.perf_counter()
                    out = c.call(("vote_A", "vote_B", "vote_both_good", "vote_both_bad")[k % 4], out[0], "")
                    lv.append(time.perf_counter() - t)
                with lock:
                    lat_vote.extend(lv)
                    lat_next.extend(ln)
                    cast[name] = mine
            except BaseException as exc:  # noqa: BLE001
                errors.append(repr(exc))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=rater, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        demo.close()
    with ctx.session() as s:
        rows = s.execute(select(AuditAssignment.id, AuditAssignment.pair_id, AuditAssignment.user_id,
                                AuditAssignment.state).where(AuditAssignment.pair_id.in_(pairs))).all()
    done = sorted(str(r.id) for r in rows if r.state == "done")
    per_pair = {}
    for r in rows:
        per_pair[r.pair_id] = per_pair.get(r.pair_id, 0) + 1
    return {
        "store": url.split(":")[0], "raters": raters, "votes_each": votes, "pairs": n_pairs, "setup_s": round(setup_s, 1),
        "errors": errors[:3], "votes_recorded": len(done), "votes_expected": raters * votes,
        "no_vote_lost_or_duplicated": done == sorted(a for v in cast.values() for a in v),
        "max_per_pair": max(per_pair.values()) if per_pair else 0, "overlap": overlap,
        "never_twice": len({(r.pair_id, r.user_id) for r in rows}) == len(rows),
        "wall_s": round(wall, 1), "votes_per_s": round(len(lat_vote) / wall, 1),
        "vote_next_ms_p50": round(percentile(lat_vote, 50), 1), "vote_next_ms_p95": round(percentile(lat_vote, 95), 1),
        "vote_next_ms_max": round(percentile(lat_vote, 100), 1),
        "first_next_ms_p95": round(percentile(lat_next, 95), 1),
    }


def bench_logic(db_url: str | None, raters: int, votes: int, overlap: int = 3) -> dict:
    """The same load without HTTP: next_assignment + vote per rater thread, one session each."""
    from annotate_ui import audit
    from curator.audio import AudioStore
    from db.session import open_store, upgrade
    from test_ui_fixtures import make_pool, make_users

    tmp = Path(tempfile.mkdtemp(prefix="bench_ui_logic_"))
    url = db_url or f"sqlite:///{tmp / 'store.db'}"
    upgrade(url)
    factory = open_store(url)
    with factory() as s:
        pairs = make_pool(s, AudioStore(tmp / "audio"), max(2 * -(-raters * votes // overlap), votes + 10), write_audio=False,
                          seed=int(time.time()) % 1000 + 1)
        users = make_users(s, n_raters=raters, admins=0, prefix=f"l{int(time.time())}r")
        audit.enqueue(s, pairs, reason="random", added_by="bench", overlap=overlap)
        s.commit()
    lat, lock = [], threading.Lock()

    def rater(u):
        mine = []
        for _ in range(votes):
            t = time.perf_counter()
            with factory() as s:
                task = audit.next_assignment(s, u)
                s.commit()
                audit.vote(s, u, task.assignment_id, "A")
                s.commit()
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=rater, args=(u,)) for u in users]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"store": url.split(":")[0], "raters": raters, "votes_each": votes, "wall_s": round(time.perf_counter() - t0, 1),
            "next+vote_ms_p50": round(percentile(lat, 50), 1), "next+vote_ms_p95": round(percentile(lat, 95), 1)}


def bench_view(n: int, repeats: int = 20) -> dict:
    from annotate_ui import audit, tuning
    from curator.filter import PairTable, Thresholds

    rng = np.random.default_rng(0)
    w = np.column_stack([rng.normal(0.55, 0.12, n), rng.normal(0.7, 0.12, n)])
    table = PairTable(model_names=("m1", "m2"), model_ids=(1, 2), pair_id=np.arange(1, n + 1),
                      strategy=rng.integers(0, 4, n).astype(np.int8), caption_id=np.arange(n),
                      winner_clip_id=np.arange(n), loser_clip_id=np.arange(n) + n,
                      winner=w, loser=w - rng.uniform(-0.05, 0.45, (n, 2)))
    data = tuning.TuningData.of(table)
    nv = 5000
    votes = audit.VoteArrays(pair_id=rng.integers(1, n + 1, nv), agree=rng.random(nv) < 0.8)
    times = []
    for i in range(repeats + 2):
        th = Thresholds(alpha1=0.40 + 0.005 * (i % 10), beta1=0.35)
        t = time.perf_counter()
        v = tuning.view(data, th, votes)
        v.counts_frame()
        for k in ("alpha1", "alpha2", "delta1", "delta2"):
            v.histogram_frame(k)
        if i >= 2:  # the first calls fill the bin cache (once per loaded table)
            times.append(time.perf_counter() - t)
    return {"pairs": n, "refresh_ms_p50": round(percentile(times, 50), 1), "refresh_ms_p95": round(percentile(times, 95), 1),
            "kept": v.counts["total"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=20)
    ap.add_argument("--votes", type=int, default=200)
    ap.add_argument("--db", action="append", default=None, help="store URL(s); default a fresh SQLite file")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-view", action="store_true")
    args = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)
    if not args.skip_view:
        for n in (100_000, 1_000_000):
            print(json.dumps({"bench": "threshold_view", **bench_view(n)}), flush=True)
    if not args.skip_http:
        for url in args.db or [None]:
            print(json.dumps({"bench": "logic_no_http", **bench_logic(url, args.raters, min(args.votes, 50))}), flush=True)
            print(json.dumps({"bench": "http_next_pair", **bench_http(url, args.raters, args.votes)}), flush=True)


if __name__ == "__main__":
    main()
