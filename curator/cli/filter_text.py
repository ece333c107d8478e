"""Text rendering of the pair filter for the terminal: a histogram with threshold marks, and the
kept pairs per strategy in the layout of the paper's Table 2 (`curator pairs filter`, `curator demo`)."""

from __future__ import annotations

from typing import Iterable

from curator.filter import Histogram, Thresholds
from db.models import STRATEGIES

_LABELS = {"alpha": "α (winner score)", "delta": "Δ (winner − loser)"}


def render_histogram(hist: Histogram, *, width: int = 40, marks: Iterable[tuple[float, str]] = ()) -> str:
    """A text histogram: one line per bin, █ kept and ░ dropped, scaled to the fullest bin.

    MARKS (value, label) are shown beside the bin holding the value (threshold lines)."""
    total = hist.kept + hist.dropped
    peak = int(total.max()) if total.size and total.max() > 0 else 1
    marks = list(marks)
    lines = [f"{_LABELS.get(hist.quantity, hist.quantity)}, model {hist.model} ({hist.model_name}): "
             f"{int(hist.kept.sum())} kept █, {int(hist.dropped.sum())} dropped ░"]
    nb = len(total)
    outside = [f"{label} = {value:g}" for value, label in marks if not hist.edges[0] <= value <= hist.edges[-1]]
    if outside:
        lines[0] += f" ({', '.join(outside)}: outside the range shown)"
    for i in range(nb):
        lo, hi = hist.edges[i], hist.edges[i + 1]
        k = int(round(width * hist.kept[i] / peak))
        d = int(round(width * total[i] / peak)) - k
        tags = [label for value, label in marks if lo <= value < hi or (i == nb - 1 and value == hi)]
        tag = ("  ◀ " + ", ".join(tags)) if tags else ""
        lines.append(f"{lo:+.3f} … {hi:+.3f} │{'█' * k}{'░' * d}{' ' * (width - k - d)}│ "
                     f"{int(hist.kept[i]):>7} / {int(total[i]):<7}{tag}")
    return "\n".join(lines)


def threshold_marks(thresholds: Thresholds, hist: Histogram) -> list[tuple[float, str]]:
    m = hist.model
    if hist.quantity == "alpha":
        return [(thresholds.alpha[m - 1], f"α{m}")]
    if hist.quantity == "delta":
        lo, hi = thresholds.delta[m - 1]
        return [(lo, f"Δ{m} min"), (hi, f"Δ{m} max")]
    return []


def render_counts(counts: dict[str, int], pool: dict[str, int] | None = None) -> str:
    """Table 2 style: strategy, pairs kept (and of how many candidates)."""
    lines = [f"{'strategy':<10}{'kept':>10}" + (f"{'candidates':>12}" if pool else "")]
    for key in (*STRATEGIES, "total"):
        label = "total" if key == "total" else f"S{key}"
        extra = f"{pool.get(key, 0):>12}" if pool else ""
        lines.append(f"{label:<10}{counts.get(key, 0):>10}{extra}")
    return "\n".join(lines)
