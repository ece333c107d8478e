"""The threshold view logic, the precision statistic and the least-sure queue fill."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import func, select

from annotate_ui.logic import audit, tuning
from db.errors import CuratorError
from curator.filter import PairTable, Thresholds, get_preset, keep_mask, save_preset, thresholds_of
from db.annotation import AuditAssignment, AuditItem
from builders.ui import make_pool, make_users, play_pair


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval written out (independent of scipy)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 5), (7, 10), (45, 50), (10, 10), (123, 200)])
def test_precision_wilson_interval(k, n):
    p = tuning.precision(k, n, pairs=3, ties=2)
    lo, hi = wilson(k, n)
    assert p.value == pytest.approx(k / n)
    assert p.low == pytest.approx(lo, abs=1e-9) and p.high == pytest.approx(hi, abs=1e-9)
    assert f"of {n} votes on 3 pairs" in p.describe("Kept")


def test_precision_without_votes():
    p = tuning.precision(0, 0, ties=4)
    assert p.value is None and "no A/B votes" in p.describe("Kept")


def _table(winner, loser, strategy=None) -> PairTable:
    n = len(winner)
    return PairTable(model_names=("m1", "m2"), model_ids=(1, 2), pair_id=np.arange(1, n + 1),
                     strategy=np.array(strategy if strategy is not None else [0] * n, dtype=np.int8),
                     caption_id=np.arange(n), winner_clip_id=np.arange(n), loser_clip_id=np.arange(n) + 100,
                     winner=np.array(winner, float), loser=np.array(loser, float))


def test_view_counts_and_precision_by_hand():
    # pair 1 kept by paper; pair 2 dropped (α2 fails); pair 3 kept
    t = _table([[0.70, 0.80], [0.70, 0.50], [0.60, 0.75]], [[0.50, 0.60], [0.50, 0.30], [0.45, 0.60]], [0, 2, 3])
    data = tuning.TuningData.of(t)
    votes = audit.VoteArrays(pair_id=np.array([1, 1, 1, 2, 2, 3, 99]), agree=np.array([1, 1, 0, 0, 0, 1, 1], bool),
                             n_both_good=1, n_both_bad=0, tie_pair_id=np.array([3]), tie_good=np.array([True]))
    v = tuning.view(data, Thresholds(), votes)
    assert v.counts == {"1.1": 1, "1.2": 0, "2": 0, "3": 1, "total": 2}
    assert v.pool["total"] == 3
    assert (v.kept_precision.agree, v.kept_precision.n, v.kept_precision.pairs, v.kept_precision.ties) == (3, 4, 2, 1)
    assert (v.dropped_precision.agree, v.dropped_precision.n) == (0, 2)  # vote on pair 99 (not in table) ignored
    frame = v.histogram_frame("alpha1")
    assert frame["pairs"].sum() == 3 and set(frame["set"]) == {"kept", "dropped"}
    assert frame[frame.set == "kept"]["pairs"].sum() == 2
    counts = v.counts_frame()
    assert list(counts["strategy"]) == ["1.1", "1.2", "2", "3", "total"]
    # moving α2 down keeps pair 2 as well: counts change and its votes move to "kept"
    v2 = tuning.view(data, Thresholds(alpha2=0.5, beta2=0.0), votes)
    assert v2.counts["total"] == 3 and v2.kept_precision.n == 6


def test_thresholds_from_sliders_refuses_bad_values():
    assert tuning.thresholds_from_sliders(.45, .6, .4, 0, .05, .35, .08, .7) == Thresholds()
    with pytest.raises(CuratorError, match="empty"):
        tuning.thresholds_from_sliders(.45, .6, .4, 0, .5, .35, .08, .7)
    with pytest.raises(CuratorError, match="not a number"):
        tuning.thresholds_from_sliders(.45, "x", .4, 0, .05, .35, .08, .7)
    with pytest.raises(CuratorError, match="outside"):
        tuning.thresholds_from_sliders(5, .6, .4, 0, .05, .35, .08, .7)


def test_uncertainty_ranks_near_threshold_and_disagreement_first():
    th = Thresholds()
    t = _table(
        [[0.90, 0.95], [0.451, 0.80], [0.70, 0.80], [0.70, 0.80]],
        [[0.60, 0.70], [0.30, 0.60], [0.50, 0.85], [0.69, 0.60]],
    )
    # 1: far from every threshold; 2: α1 just above 0.45 (and β1 fails by .10);
    # 3: models disagree on the order (Δ2 < 0); 4: Δ1 = .01 close to 0 and below Δ1 min
    prio = tuning.uncertainty(t, th)
    order = list(t.pair_id[np.argsort(-prio)])
    assert order[0] == 3 and order[-1] == 1
    assert prio[1] > prio[0]
    ids, _ = tuning.pick_uncertain(t, th, 2, exclude={3})
    assert 3 not in ids.tolist() and len(ids) == 2


def test_fill_queue_uncertain_and_random(session, audio_store):
    pairs = make_pool(session, audio_store, 30, write_audio=False)
    data = tuning.TuningData.load(session)
    added = tuning.fill_queue(session, data.table, Thresholds(), n=10, mode="uncertain", added_by="admin0")
    assert added == 10
    items = session.scalars(select(AuditItem).order_by(AuditItem.priority.desc())).all()
    prio = tuning.uncertainty(data.table, Thresholds())
    top = set(data.table.pair_id[np.argsort(-prio)[:10]].tolist())
    assert {i.pair_id for i in items} == top and all(i.reason == "uncertain" and i.overlap == 3 for i in items)
    added = tuning.fill_queue(session, data.table, Thresholds(), n=100, mode="random", added_by="admin0", seed=1, overlap=2)
    assert added == 20  # only the pairs not queued yet
    assert session.scalar(select(func.count()).select_from(AuditItem)) == 30
    with pytest.raises(CuratorError, match="fill mode"):
        tuning.fill_queue(session, data.table, Thresholds(), n=1, mode="everything", added_by="a")
    for bad in (0, -1, 1.5, float("nan")):
        with pytest.raises(CuratorError, match="whole number"):
            tuning.fill_queue(session, data.table, Thresholds(), n=bad, mode="random", added_by="a")
    assert set(pairs) == set(session.scalars(select(AuditItem.pair_id)))


def test_precision_against_store_votes(session, audio_store):
    pairs = make_pool(session, audio_store, 12)
    users = make_users(session, n_raters=3, admins=0)
    audit.enqueue(session, pairs, reason="random", added_by="t")
    for u, verdict in zip(users, ("A", "B", "both_bad")):
        while (task := audit.next_assignment(session, u)) is not None:
            play_pair(session, audio_store, u, task.assignment_id)
            audit.vote(session, u, task.assignment_id, verdict)
    data = tuning.TuningData.load(session)
    votes = audit.vote_arrays(session)
    v = tuning.view(data, Thresholds(), votes)
    mask = keep_mask(data.table, Thresholds())
    kept = set(data.table.pair_id[mask].tolist())
    rows = session.execute(select(AuditAssignment.pair_id, AuditAssignment.outcome)).all()
    side = [(p, o) for p, o in rows if o in ("winner", "loser")]
    expect_n = sum(1 for p, _ in side if p in kept)
    expect_k = sum(1 for p, o in side if p in kept and o == "winner")
    assert (v.kept_precision.agree, v.kept_precision.n) == (expect_k, expect_n)
    assert v.kept_precision.ties == sum(1 for p, o in rows if p in kept and o == "both_bad")
    assert v.kept_precision.n + v.dropped_precision.n == 24


def test_presets_round_trip_for_the_view(session, audio_store):
    make_pool(session, audio_store, 3, write_audio=False)
    th = Thresholds(alpha1=0.3, delta2_max=0.9)
    save_preset(session, "loose", th, author="admin0")
    assert thresholds_of(get_preset(session, "loose")) == th
    assert thresholds_of(get_preset(session, "paper")) == Thresholds()
    with pytest.raises(CuratorError, match="cannot be changed"):
        save_preset(session, "paper", th, author="admin0")
