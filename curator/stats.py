"""Statistics of the listening sessions (arXiv 2404.09956 §5.3): mean ± 95 % CI and Krippendorff's α.

* `mean_ci`: the mean of a sample with its Student-t confidence interval (scipy.stats.t), the
  usual way MOS-style ratings are reported.
* `krippendorff_alpha`: Krippendorff's α from the coincidence-matrix definition
  (K. Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011):

      o_ck = Σ_u  #(c,k pairs of values from different raters in unit u) / (m_u − 1)
      n_c  = Σ_k o_ck,   n = Σ_c n_c
      α    = 1 − (n − 1) · Σ_ck o_ck δ²_ck / Σ_ck n_c n_k δ²_ck

  with the ordinal metric δ²_ck = (Σ_{g=c..k} n_g − (n_c + n_k) / 2)², the interval metric
  (c − k)² and the nominal metric [c ≠ k]. Units with fewer than two values are not pairable and
  drop out. Values that never occur have n_g = 0, so the observed values are the whole domain.

Intervals that respect a listening test's design (clips nested in prompts, several raters per
clip, every rater rating many clips). A Student-t interval over all ratings counts a clip rated
by four raters four times and ignores that one rater's ratings move together, so it is too
narrow. Here a rating table is raters × prompts (one clip per prompt and system), and:

* `design_mean_ci`: the mean of the per-clip means, with a two-way cluster bootstrap: prompts
  and raters are resampled independently with replacement (`scipy.stats.bootstrap` with the
  prompt indices and the rater indices as two samples, percentile interval). Resampling prompts
  carries the variation between clips; resampling raters carries each rater's severity, shared
  by every clip that rater heard. The per-clip mean first averages a clip's raters so that a
  clip counts once however many raters it had.
* `paired_difference_ci`: system A − system B on the prompts both have, the same resampling
  (a resampled rater is the same person in both systems), so the shared prompt and rater effects
  cancel in the difference.
* `krippendorff_alpha_ci`: α with a bootstrap over the units (clips), percentile interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
import warnings
from typing import Iterable, Literal, Optional, Sequence

import numpy as np
from scipy import stats as sps

Level = Literal["nominal", "ordinal", "interval"]
LEVELS = ("nominal", "ordinal", "interval")


@dataclass(frozen=True)
class MeanCI:
    """mean ± half_width is the `confidence` interval [low, high]; None where n < 2."""

    n: int
    mean: Optional[float]
    low: Optional[float]
    high: Optional[float]
    half_width: Optional[float]
    std: Optional[float]  # the sample's standard deviation ("t"), or the bootstrap standard error
    confidence: float
    method: str = "t"  # "t": Student-t over independent values; "cluster bootstrap"; "bootstrap"

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self, digits: int = 2) -> str:
        if self.mean is None:
            return "—"
        if self.half_width is None:
            return f"{self.mean:.{digits}f} (n={self.n})"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f} (n={self.n})"


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> MeanCI:
    """Mean and two-sided Student-t interval: mean ± t_{(1+c)/2, n−1} · s / √n."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    x = np.asarray(list(values), dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"mean_ci expects a flat list of values, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("mean_ci got NaN or infinite values")
    n = int(x.size)
    if n == 0:
        return MeanCI(0, None, None, None, None, None, confidence)
    mean = float(x.mean())
    if n == 1:
        return MeanCI(1, mean, None, None, None, None, confidence)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf((1.0 + confidence) / 2.0, df=n - 1) * std / math.sqrt(n))
    return MeanCI(n, mean, mean - half, mean + half, half, std, confidence)


def _as_matrix(data: Sequence[Sequence[Optional[float]]] | np.ndarray) -> np.ndarray:
    """raters × units as float with NaN for a missing value."""
    if isinstance(data, np.ndarray):
        m = data.astype(np.float64)
    else:
        rows = [list(row) if isinstance(row, (list, tuple, np.ndarray)) else row for row in data]
        rows = [[np.nan if v is None else v for v in row] if isinstance(row, list) else row for row in rows]
        m = np.asarray(rows, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"reliability data must be raters × units (2-D), got shape {m.shape}")
    if np.any(np.isinf(m)):
        raise ValueError("reliability data contains infinite values")
    return m


def coincidence_matrix(data) -> tuple[np.ndarray, np.ndarray]:
    """(values (V,), coincidences o (V, V)) of raters × units reliability data."""
    m = _as_matrix(data)
    values = np.unique(m[~np.isnan(m)])
    v = values.size
    o = np.zeros((v, v), dtype=np.float64)
    for unit in m.T:
        present = unit[~np.isnan(unit)]
        mu = present.size
        if mu < 2:
            continue  # not pairable
        counts = np.array([(present == val).sum() for val in values], dtype=np.float64)  # (V,)
        o += (np.outer(counts, counts) - np.diag(counts)) / (mu - 1)
    return values, o


def _delta2(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(values.size)
    if level == "interval":
        return (values[:, None] - values[None, :]) ** 2
    # ordinal: for c ≤ k, Σ_{g=c..k} n_g − (n_c + n_k)/2 = cum[k] − cum[c] + (n_c − n_k)/2
    cum = np.cumsum(n_c)
    d = cum[None, :] - cum[:, None] + (n_c[:, None] - n_c[None, :]) / 2.0  # valid where c ≤ k
    d = np.triu(d) + np.triu(d, 1).T
    return d**2


def krippendorff_alpha(data, level: Level = "ordinal") -> Optional[float]:
    """Krippendorff's α of raters × units data (None/NaN = missing).

    None where α is undefined: fewer than two pairable values, or a single value throughout
    (no expected disagreement).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    values, o = coincidence_matrix(data)
    n_c = o.sum(axis=1)
    n = float(n_c.sum())
    if n < 2 or values.size < 2:
        return None
    d2 = _delta2(values, n_c, level)
    observed = float((o * d2).sum())
    expected = float((np.outer(n_c, n_c) * d2).sum())
    if expected == 0.0:
        return None
    return 1.0 - (n - 1.0) * observed / expected


# ---------------------------------------------------------------------------------------------
# Intervals that respect the design (module doc)

DEFAULT_RESAMPLES = 2000  # bootstrap resamples; percentile limits settle to ~0.01 on a 1–5 scale


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")


def _rating_table(table) -> np.ndarray:
    """raters × prompts float array, NaN = not rated; rows and columns without a rating dropped."""
    m = _as_matrix(table)
    present = ~np.isnan(m)
    return m[present.any(axis=1)][:, present.any(axis=0)]


def _clip_mean_of(tables: Sequence[np.ndarray], raters: np.ndarray, prompts: np.ndarray) -> float:
    """Mean over PROMPTS (with repeats) of the per-clip means over RATERS (with repeats); with
    several TABLES (same raters × prompts), the per-clip means of tables[0] − tables[1]."""
    means = []
    for t in tables:
        sub = t[np.ix_(raters, prompts)]
        present = ~np.isnan(sub)
        n = present.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(present, sub, 0.0).sum(axis=0) / n)
    clip = means[0] if len(means) == 1 else means[0] - means[1]
    clip = clip[np.isfinite(clip)]
    return float(clip.mean()) if clip.size else float("nan")


def _bootstrap(samples: tuple, statistic, confidence: float, n_resamples: int, seed: int):
    """scipy.stats.bootstrap, percentile method, with the distribution's NaNs (a resample in which
    nothing is defined) left out of the limits; (low, high, standard error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples are handled below
        res = sps.bootstrap(samples, statistic, n_resamples=n_resamples, confidence_level=confidence,
                            method="percentile", vectorized=False, paired=False,
                            rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    finite = dist[np.isfinite(dist)]
    if not finite.size:
        return None, None, None
    if not (math.isfinite(low) and math.isfinite(high)):
        a = (1.0 - confidence) / 2.0
        low, high = (float(q) for q in np.quantile(finite, [a, 1.0 - a]))
    return low, high, float(finite.std(ddof=1)) if finite.size > 1 else 0.0


def _design_ci(tables: Sequence[np.ndarray], confidence: float, n_resamples: int, seed: int) -> MeanCI:
    n_raters, n_prompts = tables[0].shape
    every = (np.arange(n_raters), np.arange(n_prompts))
    estimate = _clip_mean_of(tables, *every)
    if not math.isfinite(estimate):
        return MeanCI(0, None, None, None, None, None, confidence, "cluster bootstrap")
    n_clips = int(np.isfinite(np.nanmean(np.stack(tables), axis=1)).all(axis=0).sum()) if len(tables) > 1 else n_prompts
    if n_prompts < 2:
        return MeanCI(n_clips, estimate, None, None, None, None, confidence, "cluster bootstrap")
    stat = lambda r, p: _clip_mean_of(tables, r, p)  # noqa: E731 - the two resampled index samples
    low, high, se = _bootstrap(every, stat, confidence, n_resamples, seed) if n_raters >= 2 else \
        _bootstrap((every[1],), lambda p: _clip_mean_of(tables, every[0], p), confidence, n_resamples, seed)
    if low is None:
        return MeanCI(n_clips, estimate, None, None, None, None, confidence, "cluster bootstrap")
    return MeanCI(n_clips, estimate, low, high, (high - low) / 2.0, se, confidence, "cluster bootstrap")


def design_mean_ci(table, confidence: float = 0.95, *, n_resamples: int = DEFAULT_RESAMPLES,
                   seed: int = 0) -> MeanCI:
    """Mean of per-clip means of a raters × prompts TABLE (NaN/None = not rated) with a two-way
    cluster bootstrap interval over prompts and raters (module doc). n = clips with a rating."""
    _check_confidence(confidence)
    m = _rating_table(table)
    if m.size == 0:
        return MeanCI(0, None, None, None, None, None, confidence, "cluster bootstrap")
    return _design_ci([m], confidence, n_resamples, seed)


def paired_difference_ci(table_a, table_b, confidence: float = 0.95, *, n_resamples: int = DEFAULT_RESAMPLES,
                         seed: int = 0) -> MeanCI:
    """Mean over shared prompts of (per-clip mean of A − per-clip mean of B). TABLE_A and TABLE_B
    are raters × prompts with the same rows (raters) and columns (prompts); a prompt counts when
    both systems' clips have a rating. n = such prompts."""
    _check_confidence(confidence)
    a, b = _as_matrix(table_a), _as_matrix(table_b)
    if a.shape != b.shape:
        raise ValueError(f"paired tables must have the same raters × prompts, got {a.shape} and {b.shape}")
    both = (~np.isnan(a)).any(axis=0) & (~np.isnan(b)).any(axis=0)
    rows = (~np.isnan(a[:, both])).any(axis=1) | (~np.isnan(b[:, both])).any(axis=1)
    a, b = a[rows][:, both], b[rows][:, both]
    if a.size == 0:
        return MeanCI(0, None, None, None, None, None, confidence, "cluster bootstrap")
    return _design_ci([a, b], confidence, n_resamples, seed)


def _unit_counts(data) -> tuple[np.ndarray, np.ndarray]:
    """(values (V,), counts (pairable units, V)) of raters × units data."""
    m = _as_matrix(data)
    values = np.unique(m[~np.isnan(m)])
    counts = np.stack([(m == v).sum(axis=0) for v in values], axis=1) if values.size else np.zeros((m.shape[1], 0))
    counts = counts[counts.sum(axis=1) >= 2].astype(np.float64)
    return values, counts


def _alpha_from_counts(values: np.ndarray, counts: np.ndarray, weights: np.ndarray, level: str) -> float:
    m_u = counts.sum(axis=1)
    w = weights / (m_u - 1.0)
    o = (counts * w[:, None]).T @ counts - np.diag((counts * w[:, None]).sum(axis=0))
    n_c = o.sum(axis=1)
    n = float(n_c.sum())
    if n < 2:
        return float("nan")
    d2 = _delta2(values, n_c, level)
    expected = float((np.outer(n_c, n_c) * d2).sum())
    if expected == 0.0:
        return float("nan")
    return 1.0 - (n - 1.0) * float((o * d2).sum()) / expected


def krippendorff_alpha_ci(data, level: Level = "ordinal", confidence: float = 0.95, *,
                          n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> MeanCI:
    """Krippendorff's α of raters × units DATA with a bootstrap interval over the pairable units
    (percentile; a resample without expected disagreement is left out). mean = α (None where
    undefined), n = pairable units."""
    _check_confidence(confidence)
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    values, counts = _unit_counts(data)
    n_units = counts.shape[0]
    alpha = _alpha_from_counts(values, counts, np.ones(n_units), level) if values.size >= 2 else float("nan")
    if not math.isfinite(alpha):
        return MeanCI(n_units, None, None, None, None, None, confidence, "bootstrap")
    if n_units < 2:
        return MeanCI(n_units, alpha, None, None, None, None, confidence, "bootstrap")

    def stat(idx):
        return _alpha_from_counts(values, counts, np.bincount(idx, minlength=n_units).astype(np.float64), level)

    low, high, se = _bootstrap((np.arange(n_units),), stat, confidence, n_resamples, seed)
    if low is None:
        return MeanCI(n_units, alpha, None, None, None, None, confidence, "bootstrap")
    return MeanCI(n_units, alpha, low, high, (high - low) / 2.0, se, confidence, "bootstrap")


def loo_agreement(data) -> list[Optional[float]]:
    """Per rater (row of raters × units DATA): Pearson r between the rater's values and the mean
    of the other raters on the same units; None with fewer than 3 shared units or no variation."""
    m = _as_matrix(data)
    present = ~np.isnan(m)
    total, count = np.where(present, m, 0.0).sum(axis=0), present.sum(axis=0)
    out: list[Optional[float]] = []
    for i in range(m.shape[0]):
        others_n = count - present[i]
        ok = present[i] & (others_n > 0)
        if ok.sum() < 3:
            out.append(None)
            continue
        mine = m[i, ok]
        others = (total[ok] - mine) / others_n[ok]
        if np.std(mine) == 0 or np.std(others) == 0:
            out.append(None)
            continue
        out.append(float(np.corrcoef(mine, others)[0, 1]))
    return out
