"""The admin views' charts and tables as data: threshold lines, mean ± CI per system, agreement, empty tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from annotate_ui.web import charts
from annotate_ui.logic.listening.results import RaterSummary, SystemSummary
from curator.stats import MeanCI, design_mean_ci
from curator.filter import Thresholds


def _hist():
    centres = np.round(np.linspace(-0.95, 0.95, 20), 4)
    return pd.DataFrame({"score": np.concatenate([centres, centres]), "pairs": np.arange(40, dtype=np.int64),
                         "set": ["kept"] * 20 + ["dropped"] * 20})


def test_threshold_lines_are_full_height_bars_beside_the_bins():
    th = Thresholds()
    assert charts.histogram_lines("alpha1", th) == [("α1", th.alpha1)]
    assert charts.histogram_lines("delta2", th) == [("Δ2 min", th.delta2_min), ("Δ2 max", th.delta2_max)]
    hist = _hist()
    out = charts.with_threshold_lines(hist, [("a", 0.45), ("b", -0.05)])
    lines = out[out["set"] == charts.THRESHOLD]
    tallest = int(hist.groupby("score")["pairs"].sum().max())
    assert list(lines["pairs"]) == [tallest, tallest] and np.allclose(lines["score"], [0.45, -0.05], atol=1e-5)
    assert not set(lines["score"]) & set(hist["score"])  # never stacked on a bin
    assert out.iloc[: len(hist)].equals(hist)
    assert charts.with_threshold_lines(hist, [("none", None)]).equals(hist)
    chart = json.loads(charts.histogram_chart(hist, [("α1", 0.45)], "α").to_json())
    assert any(layer["mark"]["type"] == "rule" for layer in chart["layer"] if isinstance(layer["mark"], dict))


def _system(name, table):
    t = np.asarray(table, dtype=float)
    return SystemSummary(1, name, "world", "w", t.shape[1], int((~np.isnan(t)).sum()), design_mean_ci(t),
                         design_mean_ci(6 - t))


def test_systems_and_agreement_frames():
    a = _system("five", [[1, 2, 3, 2], [2, 2, 3, 1]])
    empty = SystemSummary(2, "unrated", "world", "w", 4, 0, design_mean_ci([[None]]), design_mean_ci([[None]]))
    data = charts.systems_frame([a, empty])
    assert list(data["system"]) == ["five", "five"] and list(data["scale"]) == ["OVL", "REL"]
    assert (data["low"] <= data["mean"]).all() and (data["mean"] <= data["high"]).all()
    assert data["mean"].iloc[0] == np.mean([1.5, 2, 3, 1.5])
    assert "no data yet" in charts.systems_chart([empty]).to_json()
    raters = [RaterSummary(1, "ann", 4, 4, 0, 3.0, 3.0, 0, None, False, False, 0.8, None),
              RaterSummary(2, "bob", 4, 4, 0, 3.0, 3.0, 1, 5.0, True, True, -0.2, 0.1)]
    agree = charts.agreement_frame(raters)
    assert agree.to_dict("records") == [
        {"rater": "ann", "scale": "OVL", "r": 0.8, "excluded": False},
        {"rater": "bob", "scale": "OVL", "r": -0.2, "excluded": True},
        {"rater": "bob", "scale": "REL", "r": 0.1, "excluded": True}]


def test_empty_tables_say_no_data_yet():
    assert list(charts.frame([]).iloc[:, 0]) == ["no data yet"]
    assert list(charts.frame([{"x": 1}], ["x"])["x"]) == [1]
    assert MeanCI(0, None, None, None, None, None, 0.95).text() == "—"
