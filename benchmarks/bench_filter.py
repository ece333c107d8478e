"""Preset filter + per-strategy counts + α/Δ histograms over N pairs vs bare numpy over the same arrays.

    .venv/bin/python benchmarks/bench_filter.py [--n 1000000] [--bins 40] [--repeat 20]

Ours: curator.filter.keep_mask + strategy_counts + histograms (kept and dropped, α and Δ, both models)
on a PairTable. Bare numpy ("minimal"): one boolean expression of the ten conditions plus
np.histogram of the kept values of the four columns. Bare numpy ("same work"): the same mask plus
np.histogram of kept AND dropped values (8 histograms) and np.bincount per strategy. Warm = median
of REPEAT runs after one warm-up run (the first call caches the histogram bin of every row).
Goal: ours ≤ 3× minimal and ≤ 100 ms warm at N = 1,000,000.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curator.filter import PairTable, Thresholds, histograms, keep_mask, strategy_counts  # noqa: E402


def make_table(n: int, seed: int = 0) -> PairTable:
    """CLAP-like scores: winner ~ U(0.1, 0.9), loser = winner − U(−0.1, 0.7), per model."""
    rng = np.random.default_rng(seed)
    winner = rng.uniform(0.1, 0.9, (n, 2))
    loser = winner - rng.uniform(-0.1, 0.7, (n, 2))
    ids = np.arange(1, n + 1)
    strategy = rng.choice(4, size=n, p=[0.35, 0.35, 0.2, 0.1]).astype(np.int8)
    strategy.sort()
    return PairTable(("model-1", "model-2"), (1, 2), ids, strategy, ids // 3, ids, ids + n, winner, loser)


def ours(table: PairTable, th: Thresholds, bins: int, ranges):
    mask = keep_mask(table, th)
    return mask, strategy_counts(table, mask), histograms(table, mask, bins, ranges=ranges)


def bare_minimal(cols, th: Thresholds, bins: int, ranges):
    w1, l1, d1, w2, l2, d2 = cols
    mask = ((w1 >= th.alpha1) & (l1 >= th.beta1) & (w1 > l1) & (d1 >= th.delta1_min) & (d1 <= th.delta1_max)
            & (w2 >= th.alpha2) & (l2 >= th.beta2) & (w2 > l2) & (d2 >= th.delta2_min) & (d2 <= th.delta2_max))
    hs = [np.histogram(c[mask], bins=bins, range=ranges[q]) for c, q in
          ((w1, "alpha"), (w2, "alpha"), (d1, "delta"), (d2, "delta"))]
    return mask, hs


def bare_same_work(cols, strategy, th: Thresholds, bins: int, ranges):
    mask, hs = bare_minimal(cols, th, bins, ranges)
    w1, _, d1, w2, _, d2 = cols
    inv = ~mask
    hs += [np.histogram(c[inv], bins=bins, range=ranges[q]) for c, q in
           ((w1, "alpha"), (w2, "alpha"), (d1, "delta"), (d2, "delta"))]
    counts = np.bincount(strategy[mask], minlength=4)
    return mask, hs, counts


def timed(fn, repeat: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="pairs (default 1,000,000)")
    ap.add_argument("--bins", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    table = make_table(args.n)
    th = Thresholds()  # the paper preset, arXiv 2404.09956 §4.1.2
    # the same ranges on both sides (the span over both models, as the threshold view uses)
    ranges = {q: (float(min(table.column(q, m).min() for m in range(2))),
                  float(max(table.column(q, m).max() for m in range(2)))) for q in ("alpha", "delta")}
    # bare numpy gets plain contiguous copies of the same columns
    cols = [np.ascontiguousarray(a) for a in (table.winner[:, 0], table.loser[:, 0], table.delta[:, 0],
                                              table.winner[:, 1], table.loser[:, 1], table.delta[:, 1])]
    strategy = np.ascontiguousarray(table.strategy)

    # same answers
    mask, counts, hs = ours(table, th, args.bins, ranges)
    bmask, bhs = bare_minimal(cols, th, args.bins, ranges)
    assert np.array_equal(mask, bmask)
    assert all(np.array_equal(h.kept, b[0]) for h, b in zip((hs["alpha1"], hs["alpha2"], hs["delta1"],
                                                              hs["delta2"]), bhs))
    table._bins.clear()  # measure ours from cold

    first, warm = timed(lambda: ours(table, th, args.bins, ranges), args.repeat)
    _, bare_min = timed(lambda: bare_minimal(cols, th, args.bins, ranges), args.repeat)
    _, bare_same = timed(lambda: bare_same_work(cols, strategy, th, args.bins, ranges), args.repeat)
    print(f"pairs: {args.n:,}  kept by 'paper': {counts['total']:,}  bins: {args.bins}")
    print(f"ours (mask + counts + 8 histograms): first call {first * 1e3:.1f} ms, warm {warm * 1e3:.1f} ms")
    print(f"bare numpy minimal (mask + 4 np.histogram of kept): {bare_min * 1e3:.1f} ms")
    print(f"bare numpy same work (mask + 8 np.histogram + bincount): {bare_same * 1e3:.1f} ms")
    print(f"ratio ours/minimal: {warm / bare_min:.2f}x (goal <= 3x); ours/same-work: {warm / bare_same:.2f}x; "
          f"warm {'<=' if warm <= 0.1 else '>'} 100 ms")


if __name__ == "__main__":
    main()
