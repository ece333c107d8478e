"""Charts and tables the admin views show: plain functions from results to Altair charts (rendered
by gr.Plot in the browser, Vega-Lite) and to pandas frames.

* `no_data`: the frame an empty table shows ("no data yet"), instead of Gradio's placeholder
  headers or a header row over nothing.
* `histogram_chart`: a threshold histogram (kept / dropped pairs per score bin) with the current
  thresholds drawn as vertical lines (Altair).
* `with_threshold_lines`: the same lines for the live tuning view's native gr.BarPlot (a slider
  drag redraws four histograms, so there the frame is all that is sent): one full-height bar of
  the set "threshold" at each threshold, beside (never stacked on) the bins.
* `systems_chart`: mean with its 95 % CI per system, OVL and REL side by side.
* `agreement_chart`: each rater's agreement with the other raters (Pearson r), OVL and REL.
* `curves_chart`: training curves (loss, implicit accuracy, reward margin) against the step.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import altair as alt
import pandas as pd

NO_DATA = "no data yet"
KEPT, DROPPED = "#2b8a3e", "#c92a2a"
SCALE_COLOURS = {"OVL": "#1c7ed6", "REL": "#f08c00"}


def no_data(message: str = NO_DATA) -> pd.DataFrame:
    """One cell saying there is nothing to show yet."""
    return pd.DataFrame({"": [message]})


def frame(rows: Sequence[dict], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """ROWS as a frame, or `no_data()` when there are none."""
    if not rows:
        return no_data()
    return pd.DataFrame(list(rows), columns=list(columns) if columns else None)


def _empty_chart(title: str) -> alt.Chart:
    return (alt.Chart(pd.DataFrame({"text": [NO_DATA]})).mark_text(size=14, color="#868e96")
            .encode(text="text:N").properties(title=title, height=80, width="container"))


THRESHOLD = "threshold"
THRESHOLD_COLOUR = "#212529"
HISTOGRAM_COLOURS = {"kept": KEPT, "dropped": DROPPED, THRESHOLD: THRESHOLD_COLOUR}


def histogram_lines(key: str, thresholds) -> list[tuple[str, Optional[float]]]:
    """The thresholds on the axis of tuning histogram KEY ("alpha1", "alpha2", "delta1", "delta2")."""
    k = key[-1]
    if key.startswith("alpha"):
        return [(f"α{k}", getattr(thresholds, f"alpha{k}"))]
    return [(f"Δ{k} min", getattr(thresholds, f"delta{k}_min")), (f"Δ{k} max", getattr(thresholds, f"delta{k}_max"))]


def with_threshold_lines(hist: pd.DataFrame, lines: Iterable[tuple[str, Optional[float]]]) -> pd.DataFrame:
    """HIST (score, pairs, set) plus one bar per threshold as tall as the tallest bin. The bar sits a
    hair (1e-6) beside the value, so it never stacks on a bin centre that equals a threshold."""
    values = [float(v) for _, v in lines if v is not None and math.isfinite(float(v))]
    if not values:
        return hist
    tallest = int(hist.groupby("score")["pairs"].sum().max()) if len(hist) else 0
    extra = pd.DataFrame({"score": [round(v, 4) + 1e-6 for v in values], "pairs": [max(tallest, 1)] * len(values),
                          "set": [THRESHOLD] * len(values)})
    return pd.concat([hist, extra], ignore_index=True).astype({"pairs": "int64"})


def histogram_chart(hist: pd.DataFrame, lines: Iterable[tuple[str, Optional[float]]], title: str) -> alt.Chart:
    """HIST: columns score (bin centre), pairs, set ("kept"/"dropped"), as tuning.histogram_frame makes it.
    LINES: (label, value) of the thresholds on this axis (None: not set, not drawn)."""
    if hist is None or len(hist) == 0 or int(hist["pairs"].sum()) == 0:
        return _empty_chart(title)
    centres = sorted(set(hist["score"]))
    width = (centres[1] - centres[0]) if len(centres) > 1 else 0.05
    data = hist.assign(lo=hist["score"] - width / 2, hi=hist["score"] + width / 2)
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("lo:Q", title="score", bin="binned"), x2="hi:Q",
        y=alt.Y("pairs:Q", stack=True, title="pairs"),
        color=alt.Color("set:N", scale=alt.Scale(domain=["kept", "dropped"], range=[KEPT, DROPPED]), title=None),
        tooltip=["score:Q", "set:N", "pairs:Q"])
    marks = [(label, float(v)) for label, v in lines if v is not None]
    layers = [bars]
    if marks:
        rules = pd.DataFrame({"threshold": [m[0] for m in marks], "value": [m[1] for m in marks]})
        base = alt.Chart(rules)
        layers.append(base.mark_rule(color="#212529", strokeWidth=2, strokeDash=[5, 3])
                      .encode(x="value:Q", tooltip=["threshold:N", "value:Q"]))
        layers.append(base.mark_text(align="left", dx=4, dy=-4, baseline="top", color="#212529")
                      .encode(x="value:Q", y=alt.value(0), text="threshold:N"))
    return alt.layer(*layers).properties(title=title, height=180, width="container")


def systems_frame(systems) -> pd.DataFrame:
    """Long frame (system, scale, mean, low, high, clips) of listening.SystemSummary rows."""
    rows = []
    for s in systems:
        for scale, ci in (("OVL", s.ovl), ("REL", s.rel)):
            if ci.mean is not None:
                rows.append({"system": s.name, "scale": scale, "mean": ci.mean, "low": ci.low if ci.low is not None
                             else ci.mean, "high": ci.high if ci.high is not None else ci.mean, "clips": ci.n})
    return pd.DataFrame(rows, columns=["system", "scale", "mean", "low", "high", "clips"])


def systems_chart(systems, title: str = "Mean and 95 % CI per system") -> alt.Chart:
    data = systems_frame(systems)
    if data.empty:
        return _empty_chart(title)
    colour = alt.Color("scale:N", scale=alt.Scale(domain=list(SCALE_COLOURS), range=list(SCALE_COLOURS.values())))
    base = alt.Chart(data).encode(x=alt.X("system:N", title=None, axis=alt.Axis(labelAngle=0)), xOffset="scale:N",
                                  color=colour)
    y = alt.Y("mean:Q", scale=alt.Scale(domain=[1, 5]), title="rating (1–5)")
    bars = base.mark_rule(strokeWidth=3).encode(y=alt.Y("low:Q", scale=alt.Scale(domain=[1, 5]), title="rating (1–5)"),
                                                y2="high:Q")
    points = base.mark_point(filled=True, size=80).encode(
        y=y, tooltip=["system:N", "scale:N", alt.Tooltip("mean:Q", format=".2f"), alt.Tooltip("low:Q", format=".2f"),
                      alt.Tooltip("high:Q", format=".2f"), "clips:Q"])
    return alt.layer(bars, points).properties(title=title, height=240, width="container")


def agreement_frame(raters) -> pd.DataFrame:
    rows = []
    for r in raters:
        for scale, value in (("OVL", r.agreement_ovl), ("REL", r.agreement_rel)):
            if value is not None:
                rows.append({"rater": r.name, "scale": scale, "r": value, "excluded": bool(r.excluded)})
    return pd.DataFrame(rows, columns=["rater", "scale", "r", "excluded"])


def agreement_chart(raters, title: str = "Agreement of each rater with the others (Pearson r)") -> alt.Chart:
    data = agreement_frame(raters)
    if data.empty:
        return _empty_chart(title)
    colour = alt.Color("scale:N", scale=alt.Scale(domain=list(SCALE_COLOURS), range=list(SCALE_COLOURS.values())))
    return (alt.Chart(data).mark_bar().encode(
        x=alt.X("rater:N", title=None, axis=alt.Axis(labelAngle=0)), xOffset="scale:N",
        y=alt.Y("r:Q", scale=alt.Scale(domain=[-1, 1]), title="r with the others' mean"), color=colour,
        tooltip=["rater:N", "scale:N", alt.Tooltip("r:Q", format=".2f"), "excluded:N"])
        .properties(title=title, height=220, width="container"))


def curves_chart(curves: pd.DataFrame, title: str = "Training curves") -> alt.Chart:
    """CURVES: long frame (step, metric, value)."""
    if curves is None or curves.empty:
        return _empty_chart(title)
    charts = []
    for metric in dict.fromkeys(curves["metric"]):
        part = curves[curves["metric"] == metric]
        charts.append(alt.Chart(part).mark_line(point=len(part) < 50).encode(
            x=alt.X("step:Q", title="optimizer step"), y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
            tooltip=["step:Q", alt.Tooltip("value:Q", format=".4g")]).properties(title=metric, height=150, width=520))
    return alt.vconcat(*charts).properties(title=title)


__all__ = ["NO_DATA", "no_data", "frame", "histogram_lines", "with_threshold_lines", "histogram_chart", "systems_frame", "systems_chart", "agreement_frame",
           "agreement_chart", "curves_chart"]
