"""Statistics of the listening sessions (PAPER.md §5.3): mean ± 95 % CI and Krippendorff's α.

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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
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
    std: Optional[float]
    confidence: float

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
