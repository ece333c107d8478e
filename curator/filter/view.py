"""What a threshold setting keeps of a `PairTable`: the ensemble keep mask (every condition under
both models, arXiv 2404.09956 §4.1.2), the kept pairs per strategy (the paper's Table 2) and the
kept/dropped histograms of α and Δ per model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from db.errors import CuratorError
from curator.filter.presets import Thresholds
from curator.filter.table import N_MODELS, PairTable
from db.models import STRATEGIES

DEFAULT_BINS = 40


def keep_mask(table: PairTable, thresholds: Thresholds) -> np.ndarray:
    """Boolean (N,): True where every condition of arXiv 2404.09956 §4.1.2 holds under both models."""
    n = len(table)
    mask = np.ones(n, dtype=bool)
    tmp = np.empty(n, dtype=bool)  # per call: a table may be shared by concurrent UI sessions
    for m in range(N_MODELS):
        w, l, d = table.winner[:, m], table.loser[:, m], table.delta[:, m]
        dlo, dhi = thresholds.delta[m]
        np.greater_equal(w, thresholds.alpha[m], out=tmp)
        mask &= tmp
        np.greater_equal(l, thresholds.beta[m], out=tmp)
        mask &= tmp
        np.greater(w, l, out=tmp)
        mask &= tmp
        np.greater_equal(d, dlo, out=tmp)
        mask &= tmp
        np.less_equal(d, dhi, out=tmp)
        mask &= tmp
    return mask


def strategy_counts(table: PairTable, mask: np.ndarray | None = None) -> dict[str, int]:
    """Pairs kept per strategy, like the paper's Table 2: {'1.1', '1.2', '2', '3', 'total'}."""
    b = table.strategy_bounds
    if mask is None:
        counts = {s: int(b[i + 1] - b[i]) for i, s in enumerate(STRATEGIES)}
    else:
        counts = {s: int(np.count_nonzero(mask[b[i]:b[i + 1]])) for i, s in enumerate(STRATEGIES)}
    counts["total"] = sum(counts.values())
    return counts


@dataclass(frozen=True)
class Histogram:
    quantity: str  # "alpha" (winner score) or "delta" (winner − loser)
    model: int  # 1 or 2
    model_name: str
    edges: np.ndarray  # (bins + 1,)
    kept: np.ndarray  # (bins,) int64
    dropped: np.ndarray  # (bins,) int64

    @property
    def key(self) -> str:
        return f"{self.quantity}{self.model}"


def default_range(table: PairTable, quantity: str) -> tuple[float, float]:
    """The span of QUANTITY over both models (so the two models' histograms line up)."""
    if len(table) == 0:
        return (0.0, 1.0)
    key = ("range", quantity)
    if key not in table._bins:
        cols = [table.column(quantity, m) for m in range(N_MODELS)]
        lo, hi = float(min(c.min() for c in cols)), float(max(c.max() for c in cols))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        table._bins[key] = (lo, hi)
    return table._bins[key]


def histograms(table: PairTable, mask: np.ndarray, bins: int = DEFAULT_BINS, *,
               ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, Histogram]:
    """α (winner score) and Δ histograms per model, kept vs dropped: keys alpha1, alpha2, delta1, delta2.

    Counts equal np.histogram(column[mask], bins, range) and np.histogram(column[~mask], ...).
    """
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise CuratorError(f"histogram bins={bins!r} must be a positive integer")
    if len(mask) != len(table):
        raise ValueError(f"mask has {len(mask)} rows, table has {len(table)}")
    mask_i = mask.view(np.uint8)
    out: dict[str, Histogram] = {}
    for quantity in ("alpha", "delta"):
        lo, hi = (ranges or {}).get(quantity) or default_range(table, quantity)
        edges = np.linspace(lo, hi, bins + 1)
        for m in range(N_MODELS):
            idx = table.bin_index(quantity, m, edges)
            # one bincount gives both halves: bins [0, nb) = dropped, [nb, 2nb) = kept; -1 → outside
            combined = np.bincount(idx + 1 + (bins + 1) * mask_i, minlength=2 * (bins + 1))
            dropped, kept = combined[1:bins + 1], combined[bins + 2:]
            out[f"{quantity}{m + 1}"] = Histogram(quantity, m + 1, table.model_names[m], edges, kept, dropped)
    return out


@dataclass(frozen=True)
class FilterView:
    """Everything a threshold view shows for one setting of the sliders."""

    mask: np.ndarray
    counts: dict[str, int]
    histograms: dict[str, Histogram]


def evaluate(table: PairTable, thresholds: Thresholds, bins: int = DEFAULT_BINS) -> FilterView:
    mask = keep_mask(table, thresholds)
    return FilterView(mask, strategy_counts(table, mask), histograms(table, mask, bins))
