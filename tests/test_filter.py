"""Thresholds, presets, the ensemble keep mask, per-strategy counts and histograms (arXiv 2404.09956 §4.1.2)."""

from __future__ import annotations

import numpy as np
import pytest

from curator.cli.filter_text import render_counts, render_histogram, threshold_marks
from db.errors import CuratorError
from curator.filter import (
    DEFAULT_PRESET,
    PairTable,
    Thresholds,
    delete_preset,
    ensure_default_preset,
    evaluate,
    get_preset,
    histograms,
    keep_mask,
    list_presets,
    load_pair_table,
    load_preset_table,
    parse_range,
    save_preset,
    strategy_counts,
    thresholds_of,
)
from curator.pairs import build_pairs
from builders.pairs import add_models, paper_world


def random_table(n=5000, seed=0) -> PairTable:
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.2, 0.95, (n, 2))
    lo = w - rng.uniform(-0.1, 0.7, (n, 2))
    ids = rng.permutation(n) + 1
    return PairTable(("a", "b"), (1, 2), ids, rng.integers(0, 4, n), ids, ids, ids + n, w, lo)


def bare_mask(t: PairTable, th: Thresholds) -> np.ndarray:
    keep = np.ones(len(t), bool)
    for m in range(2):
        w, lo = t.winner[:, m], t.loser[:, m]
        d = w - lo
        keep &= (w >= th.alpha[m]) & (lo >= th.beta[m]) & (w > lo) & (d >= th.delta[m][0]) & (d <= th.delta[m][1])
    return keep


def test_paper_defaults():
    th = Thresholds()
    assert (th.alpha1, th.alpha2, th.beta1, th.beta2) == (0.45, 0.60, 0.40, 0.0)
    assert th.delta == ((0.05, 0.35), (0.08, 0.70))


@pytest.mark.parametrize("changes, message", [
    ({"alpha1": float("nan")}, "alpha1=nan is not finite"),
    ({"beta2": 1.5}, r"beta2=1.5 is outside \[-1, 1\]"),
    ({"delta1_min": 0.4, "delta1_max": 0.3}, "delta1 range 0.4:0.3 is empty"),
    ({"alpha2": "high"}, "alpha2='high' is not a number"),
    ({"delta2_max": 3.0}, "delta2_max=3.0 is outside"),
])
def test_thresholds_validation_names_the_bad_value(changes, message):
    with pytest.raises(CuratorError, match=message):
        Thresholds(**changes)


def test_parse_range():
    assert parse_range("0.05:0.35", name="--delta1") == (0.05, 0.35)
    with pytest.raises(CuratorError, match="--delta1 '0.05' is not a range"):
        parse_range("0.05", name="--delta1")
    with pytest.raises(CuratorError, match="two numbers"):
        parse_range("a:b", name="--delta2")


def test_keep_mask_matches_the_rule_on_random_pairs():
    t = random_table()
    for th in (Thresholds(), Thresholds(alpha1=0.3, beta2=0.2, delta1_min=-0.5, delta2_max=0.2)):
        mask = keep_mask(t, th)
        assert np.array_equal(mask, bare_mask(t, th))
        assert 0 < mask.sum() < len(t)


def test_winner_must_beat_loser_even_when_delta_range_allows_ties():
    t = PairTable(("a", "b"), (1, 2), np.array([1, 2]), np.array([0, 0]), np.array([1, 1]), np.array([1, 2]),
                  np.array([3, 4]), np.array([[0.7, 0.7], [0.7, 0.7]]), np.array([[0.7, 0.5], [0.5, 0.5]]))
    th = Thresholds(delta1_min=-0.1, delta2_min=-0.1)
    assert keep_mask(t, th).tolist() == [False, True]


def test_table_is_sorted_by_strategy_and_counts_match():
    t = random_table()
    assert np.all(np.diff(t.strategy) >= 0)
    for s in range(4):
        ids = t.pair_id[t.strategy == s]
        assert np.all(np.diff(ids) > 0)
    mask = keep_mask(t, Thresholds())
    counts = strategy_counts(t, mask)
    for i, s in enumerate(("1.1", "1.2", "2", "3")):
        assert counts[s] == int(np.sum(mask & (t.strategy == i)))
    assert counts["total"] == int(mask.sum())
    assert strategy_counts(t)["total"] == len(t)


def test_histograms_equal_numpy():
    t = random_table(20000, seed=3)
    mask = keep_mask(t, Thresholds())
    hs = histograms(t, mask, bins=37)
    assert set(hs) == {"alpha1", "alpha2", "delta1", "delta2"}
    for h in hs.values():
        col = (t.winner if h.quantity == "alpha" else t.winner - t.loser)[:, h.model - 1]
        lo = min(((t.winner if h.quantity == "alpha" else t.delta)[:, m]).min() for m in range(2))
        hi = max(((t.winner if h.quantity == "alpha" else t.delta)[:, m]).max() for m in range(2))
        kept, edges = np.histogram(col[mask], bins=37, range=(lo, hi))
        dropped, _ = np.histogram(col[~mask], bins=37, range=(lo, hi))
        assert np.allclose(edges, h.edges)
        assert np.array_equal(kept, h.kept) and np.array_equal(dropped, h.dropped)
        assert h.kept.sum() + h.dropped.sum() == len(t)
    # a fixed range leaves values outside out of both halves, as np.histogram does
    hs = histograms(t, mask, bins=10, ranges={"alpha": (0.5, 0.8), "delta": (0.0, 0.3)})
    col = t.winner[:, 0]
    assert np.array_equal(hs["alpha1"].kept, np.histogram(col[mask], bins=10, range=(0.5, 0.8))[0])
    assert np.array_equal(hs["alpha1"].dropped, np.histogram(col[~mask], bins=10, range=(0.5, 0.8))[0])
    with pytest.raises(CuratorError, match="bins=0"):
        histograms(t, mask, bins=0)


def test_text_histogram_and_counts_render():
    t = random_table(2000)
    th = Thresholds()
    view = evaluate(t, th, bins=8)
    h = view.histograms["alpha1"]
    text = render_histogram(h, width=20, marks=threshold_marks(th, h))
    lines = text.splitlines()
    assert len(lines) == 9 and "model 1 (a)" in lines[0]
    assert "◀ α1" in text
    assert f"{int(h.kept.sum())} kept" in lines[0]
    far = render_histogram(h, width=20, marks=[(5.0, "far")])
    assert "far = 5: outside the range shown" in far.splitlines()[0] and "◀" not in far
    table = render_counts(view.counts, strategy_counts(t))
    assert "S1.1" in table and "total" in table and str(view.counts["total"]) in table


def test_nan_scores_refused_in_table():
    with pytest.raises(CuratorError, match="pair 2 has a NaN"):
        PairTable(("a", "b"), (1, 2), np.array([1, 2]), np.array([0, 1]), np.array([1, 1]), np.array([1, 2]),
                  np.array([3, 4]), np.array([[0.7, 0.7], [np.nan, 0.7]]), np.zeros((2, 2)))


# ------------------------------------------------------------------ store-backed


def test_presets_crud(session):
    paper = ensure_default_preset(session)
    assert paper.name == DEFAULT_PRESET and thresholds_of(paper) == Thresholds()
    assert ensure_default_preset(session).id == paper.id  # idempotent
    add_models(session, ("m-a", "m-b"))
    strict = save_preset(session, "strict", Thresholds(alpha2=0.7), author="ana", model1="m-b", model2="m-a")
    session.commit()
    assert [p.name for p in list_presets(session)] == ["paper", "strict"]
    got = get_preset(session, "strict")
    assert thresholds_of(got).alpha2 == 0.7 and (got.model1, got.model2, got.author) == ("m-b", "m-a", "ana")
    save_preset(session, "strict", Thresholds(alpha2=0.65), author="bo")  # update in place
    session.commit()
    assert thresholds_of(get_preset(session, "strict")).alpha2 == 0.65
    assert len(list_presets(session)) == 2
    with pytest.raises(CuratorError, match="'nope' does not exist.*known: paper, strict"):
        get_preset(session, "nope")
    with pytest.raises(CuratorError, match="cannot be changed"):
        save_preset(session, "paper", Thresholds(), author="x")
    with pytest.raises(CuratorError, match="model1 'zzz' is not a CLAP model"):
        save_preset(session, "x", Thresholds(), author="x", model1="zzz")
    with pytest.raises(CuratorError, match="both 'm-a'"):
        save_preset(session, "x", Thresholds(), author="x", model1="m-a", model2="m-a")
    delete_preset(session, "strict")
    session.commit()
    assert [p.name for p in list_presets(session)] == ["paper"]


def test_ensemble_rule_on_the_store(session, audio_store):
    models, expected = paper_world(session, audio_store)
    build_pairs(session, progress=False)
    session.commit()
    table = load_pair_table(session)
    assert table.model_names == ("judge-a", "judge-b") and len(table) == 8
    paper = get_preset(session, "paper")
    mask = keep_mask(load_preset_table(session, paper), thresholds_of(paper))
    counts = strategy_counts(table, mask)
    assert counts == {"1.1": 2, "1.2": 0, "2": 1, "3": 1, "total": 4}
    # S1.2 pairs pass under model 1 alone: widening Δ2 (model 2) lets them through
    loose = Thresholds(delta2_min=0.0)
    assert strategy_counts(table, keep_mask(table, loose))["1.2"] == 3
    # swapping the models (model1 = judge-b) changes the verdict: the filter follows the preset's models
    swapped = load_pair_table(session, ("judge-b", "judge-a"))
    assert swapped.model_names == ("judge-b", "judge-a")
    assert np.array_equal(swapped.winner[:, 0], table.winner[:, 1])


def test_table_needs_two_models(session):
    add_models(session, ("only",))
    with pytest.raises(CuratorError, match="has 1 CLAP model.*needs 2"):
        load_pair_table(session)
    with pytest.raises(CuratorError, match="model2 'ghost' is not a CLAP model"):
        load_pair_table(session, ("only", "ghost"))
