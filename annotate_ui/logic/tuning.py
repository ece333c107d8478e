"""The admins' threshold view: the filter of arXiv 2404.09956 §4.1.2 recomputed per slider move, checked
against the human audit.

The pair table is loaded once (`TuningData.load`); a slider move is then `view(data, thresholds)`:
the keep mask, kept counts per strategy (Table 2), the α/Δ histograms per model, kept vs dropped
(Figure 2), and the precision of the automatic winner against the rater votes on the audited pairs
the setting keeps, with a Wilson 95 % interval (scipy.stats.binomtest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_ui.logic.audit import VoteArrays, enqueue
from db.errors import CuratorError
from curator.filter import (
    DEFAULT_BINS,
    N_MODELS,
    Histogram,
    PairTable,
    Thresholds,
    evaluate,
    load_pair_table,
    strategy_counts,
)
from db.annotation import DEFAULT_OVERLAP, AuditItem
from db.models import STRATEGIES, ClapModel, Pair

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Precision:
    """How often raters preferred the automatic winner, over votes that chose a side."""

    agree: int
    n: int
    value: float | None
    low: float | None
    high: float | None
    pairs: int  # audited pairs behind those votes
    ties: int  # "both good" / "both bad" votes (not in n)

    def describe(self, what: str) -> str:
        if self.n == 0:
            return f"{what}: no A/B votes yet ({self.ties} both-good/both-bad votes)"
        return (f"{what}: {self.value:.1%} of {self.n} votes on {self.pairs} pairs prefer the automatic winner "
                f"(95 % CI {self.low:.1%}–{self.high:.1%}; {self.ties} both-good/both-bad votes)")


def precision(agree: int, n: int, *, pairs: int = 0, ties: int = 0, confidence: float = CONFIDENCE) -> Precision:
    """agree/n with its Wilson score interval (scipy.stats.binomtest(...).proportion_ci)."""
    if n == 0:
        return Precision(0, 0, None, None, None, pairs, ties)
    ci = binomtest(int(agree), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Precision(int(agree), int(n), agree / n, float(ci.low), float(ci.high), pairs, ties)


@dataclass
class TuningData:
    """The pair table with a pair-id index; loaded once per 'reload', shared read-only by admin sessions."""

    table: PairTable
    order: np.ndarray  # argsort of table.pair_id
    sorted_ids: np.ndarray

    @classmethod
    def load(cls, session: Session, model_names: Sequence[str | None] | None = None) -> "TuningData":
        """The scored pairs. A store without two CLAP models (e.g. only pairs from `curator
        import-pairs`) gives an empty table, so the tab still opens and random mode still fills the queue."""
        if not any(model_names or ()) and session.scalar(select(func.count()).select_from(ClapModel)) < 2:
            return cls.of(unscored_table(session))
        return cls.of(load_pair_table(session, model_names))

    @classmethod
    def of(cls, table: PairTable) -> "TuningData":
        order = np.argsort(table.pair_id, kind="stable")
        return cls(table, order, table.pair_id[order])

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each pair id in the table; -1 where the pair is not in it."""
        if len(self.sorted_ids) == 0 or len(ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.sorted_ids, ids), 0, len(self.sorted_ids) - 1)
        return np.where(self.sorted_ids[pos] == ids, self.order[pos], -1)


@dataclass(frozen=True)
class TuningView:
    counts: dict[str, int]  # kept per strategy + total
    pool: dict[str, int]  # candidates per strategy + total
    histograms: dict[str, Histogram]
    kept_precision: Precision
    dropped_precision: Precision

    def counts_frame(self) -> pd.DataFrame:
        rows = [{"strategy": s, "kept": self.counts[s], "candidates": self.pool[s],
                 "kept %": round(100 * self.counts[s] / self.pool[s], 1) if self.pool[s] else 0.0}
                for s in (*STRATEGIES, "total")]
        return pd.DataFrame(rows)

    def histogram_frame(self, key: str) -> pd.DataFrame:
        """Long format for gr.BarPlot: x = bin centre, y = pairs, color = kept/dropped."""
        h = self.histograms[key]
        centres = np.round((h.edges[:-1] + h.edges[1:]) / 2, 4)
        return pd.DataFrame({"score": np.concatenate([centres, centres]),
                             "pairs": np.concatenate([h.kept, h.dropped]).astype(np.int64),
                             "set": ["kept"] * len(centres) + ["dropped"] * len(centres)})


def _precision_where(votes: VoteArrays, vote_row: np.ndarray, tie_row: np.ndarray, keep: np.ndarray) -> Precision:
    sel = vote_row >= 0
    sel[sel] = keep[vote_row[sel]]
    tsel = tie_row >= 0
    tsel[tsel] = keep[tie_row[tsel]]
    agree = int(np.count_nonzero(votes.agree[sel]))
    return precision(agree, int(np.count_nonzero(sel)), pairs=len(np.unique(votes.pair_id[sel])),
                     ties=int(np.count_nonzero(tsel)))


def view(data: TuningData, thresholds: Thresholds, votes: VoteArrays | None = None,
         bins: int = DEFAULT_BINS) -> TuningView:
    """Everything the threshold view shows for one setting (vectorised; a few ms at 100k pairs)."""
    votes = votes if votes is not None else VoteArrays(np.empty(0, np.int64), np.empty(0, bool))
    fv = evaluate(data.table, thresholds, bins)
    vote_row, tie_row = data.rows(votes.pair_id), data.rows(votes.tie_pair_id)
    return TuningView(fv.counts, strategy_counts(data.table), fv.histograms,
                      _precision_where(votes, vote_row, tie_row, fv.mask),
                      _precision_where(votes, vote_row, tie_row, ~fv.mask))


def thresholds_from_sliders(alpha1, alpha2, beta1, beta2, d1_min, d1_max, d2_min, d2_max) -> Thresholds:
    """Thresholds from slider values; a non-number or an empty range is one clear line (CuratorError)."""
    values = dict(alpha1=alpha1, alpha2=alpha2, beta1=beta1, beta2=beta2, delta1_min=d1_min,
                  delta1_max=d1_max, delta2_min=d2_min, delta2_max=d2_max)
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CuratorError(f"threshold {k}={v!r} is not a number")
    return Thresholds(**values)


# --------------------------------------------------------------------------------------------
# Where to spend human effort
# --------------------------------------------------------------------------------------------


def uncertainty(table: PairTable, thresholds: Thresholds) -> np.ndarray:
    """(N,) priority: higher = the filter is less sure about the pair.

    closeness = the smallest distance of any score to the threshold it is compared with (α, β,
    both Δ bounds, and winner = loser) over both models; priority = −closeness, plus 1 where the
    two CLAP models disagree (they rank winner and loser in opposite order).
    """
    n = len(table)
    if n == 0:
        return np.empty(0)
    dist = np.full(n, np.inf)
    for m in range(N_MODELS):
        w, l, d = table.winner[:, m], table.loser[:, m], table.delta[:, m]
        lo, hi = thresholds.delta[m]
        for gap in (w - thresholds.alpha[m], l - thresholds.beta[m], d - lo, hi - d, d):
            np.minimum(dist, np.abs(gap), out=dist)
    disagree = np.sign(table.delta[:, 0]) != np.sign(table.delta[:, 1])
    return disagree.astype(np.float64) - dist


def pick_uncertain(table: PairTable, thresholds: Thresholds, n: int, *, exclude: set[int] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """The N least-sure pairs not in EXCLUDE: (pair ids, priorities), most uncertain first."""
    prio = uncertainty(table, thresholds)
    order = np.argsort(-prio, kind="stable")
    ids = table.pair_id[order]
    keep = np.fromiter((int(p) not in exclude for p in ids), dtype=bool, count=len(ids)) if exclude else np.ones(len(ids), bool)
    return ids[keep][:n], prio[order][keep][:n]


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or int(n) != n or not 1 <= n <= 1_000_000:
        raise CuratorError(f"number of pairs {n!r} must be a whole number in 1..1000000")
    return int(n)


def unscored_table(session: Session) -> PairTable:
    """An empty pair table whose `n_unscored` counts every pair of the store."""
    empty = np.empty(0, dtype=np.int64)
    total = int(session.scalar(select(func.count()).select_from(Pair)) or 0)
    return PairTable(model_names=("(no CLAP model)", "(no CLAP model)"), model_ids=(0, 0), pair_id=empty,
                     strategy=np.empty(0, dtype=np.int8), caption_id=empty, winner_clip_id=empty,
                     loser_clip_id=empty, winner=np.empty((0, 2)), loser=np.empty((0, 2)), n_unscored=total)


def fill_queue(session: Session, table: PairTable, thresholds: Thresholds, *, n: int, mode: str,
               added_by: str, overlap: int = DEFAULT_OVERLAP, seed: int | None = None) -> int:
    """Add N pairs to the audit queue: the least sure of the scored pairs ("uncertain"), or drawn
    at random from every pair of the store, scored or not ("random": sets from `curator
    import-pairs` carry no scores and are audited this way)."""
    n = _check_n(n)
    queued = set(session.scalars(select(AuditItem.pair_id)))
    if mode == "uncertain":
        if len(table) == 0:
            raise CuratorError("there are no scored pairs to rank by uncertainty (pairs imported without CLAP "
                               "scores): use random mode, or run `curator score`")
        ids, prio = pick_uncertain(table, thresholds, n, exclude=queued)
        return enqueue(session, ids.tolist(), reason="uncertain", added_by=added_by,
                       priorities=prio.tolist(), overlap=overlap)
    if mode == "random":
        free = np.array([p for p in session.scalars(select(Pair.id).order_by(Pair.id)) if p not in queued],
                        dtype=np.int64)
        rng = np.random.default_rng(seed)
        ids = rng.choice(free, size=min(n, len(free)), replace=False) if len(free) else free
        return enqueue(session, sorted(ids.tolist()), reason="random", added_by=added_by, overlap=overlap)
    raise CuratorError(f"fill mode {mode!r} is not 'uncertain' or 'random'")
