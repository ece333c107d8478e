"""Rendering, event detection and the judge of the miniature world (500 seeded cases each)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from curator.backends import Generator, Perturber, Scorer
from curator.world import make_generator, make_judge, make_perturber
from curator.world.grammar import EVENTS, CaptionError, parse_caption, random_scene
from curator.world.judge import detect_cached, temporal_metrics
from curator.world.render import SAMPLE_RATE, applicable_defects, render

N_CASES = 500
DURATION = 5.0  # short clips keep the 500-case tests fast; the layout logic is the same as 10.24 s
JUDGES = ("world-judge-a", "world-judge-b")


_FAITHFUL: dict[tuple[str, int], np.ndarray] = {}


def _cases(defect: str | None, n: int = N_CASES, seed: int = 0):
    """(scene, seed, faithful wave, defect wave) where the defect applies and both renders fit."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        scene = random_scene(rng)
        if defect is not None and defect not in applicable_defects(scene):
            continue
        k = len(out)
        try:
            key = (scene.text(), k)
            if key not in _FAITHFUL:
                _FAITHFUL[key] = render(scene, k, duration_s=DURATION).wave
            bad = render(scene, k, defect=defect, duration_s=DURATION).wave if defect else None
        except CaptionError:
            continue
        out.append((scene, k, _FAITHFUL[key], bad))
    return out


@pytest.fixture(scope="module")
def faithful_scores():
    """Faithful renders' scores under both judges (shared by the defect tests)."""
    judges = {name: make_judge(name) for name in JUDGES}
    cache: dict[tuple[str, int], dict[str, float]] = {}

    def get(scene, seed, wave):
        key = (scene.text(), seed)
        if key not in cache:
            cache[key] = {n: j.score_one(scene.text(), wave) for n, j in judges.items()}
        return cache[key]

    return get, judges


def test_backends_follow_the_protocols():
    assert isinstance(make_generator(), Generator)
    assert isinstance(make_perturber(), Perturber)
    for name in JUDGES:
        j = make_judge(name)
        assert isinstance(j, Scorer) and j.backend == "world" and j.sample_rate == SAMPLE_RATE and j.name == name


def test_detection_precision_and_recall_on_clean_renders():
    tp = fp = fn = 0
    oer, onset = [], []
    for scene, seed, _, _ in _cases(None, seed=1):
        r = render(scene, seed, duration_s=DURATION)
        det = detect_cached(r.wave)
        truth = {e.event for e in r.events}
        found = set(det.present())
        tp += len(truth & found)
        fp += len(found - truth)
        fn += len(truth - found)
        m = temporal_metrics(r.events, det)
        oer.append(m.ordering_error_rate)
        if m.onset_error_s is not None:
            onset.append(m.onset_error_s)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert precision >= 0.95, precision
    assert recall >= 0.95, recall
    assert np.mean(oer) < 0.05 and np.mean(onset) < 0.25


def test_event_counts_heard_on_clean_renders_of_counted_captions():
    """The judge counts each counted event's occurrences from the audio (never the render's truth)."""
    rng = np.random.default_rng(4)
    right = total = 0
    cer = []
    while total < N_CASES:
        scene = random_scene(rng)
        counted = [m for m in scene.mentions if m.count is not None]
        if not counted:
            continue
        try:
            r = render(scene, total, duration_s=DURATION)
        except CaptionError:
            continue
        det = detect_cached(r.wave)
        for m in counted:
            total += 1
            right += det.count.get(m.event) == m.count  # an event not heard at all is counted wrong too
        m = temporal_metrics(r.events, det)
        assert m.n_counted <= sum(not EVENTS[e.event].texture for e in r.events)
        cer.append(m.count_error_rate)
    assert right / total >= 0.95, right / total
    assert np.mean(cer) < 0.05, np.mean(cer)


@pytest.mark.parametrize("defect", ["missing", "swap", "extra", "noise", "count"])
def test_judges_rank_faithful_above_defect(defect, faithful_scores):
    get, judges = faithful_scores
    wins = {n: 0 for n in JUDGES}
    faithful = {n: [] for n in JUDGES}
    for scene, seed, wave, bad in _cases(defect, seed=2):
        good = get(scene, seed, wave)
        for n, j in judges.items():
            wins[n] += good[n] > j.score_one(scene.text(), bad)
            faithful[n].append(good[n])
    for n in JUDGES:
        assert wins[n] / N_CASES >= 0.95, (n, defect, wins[n])
        assert 0.6 <= float(np.median(faithful[n])) <= 0.8, (n, np.median(faithful[n]))


def test_render_and_scores_are_deterministic():
    caption = "A dog barking twice then a bell ringing while rain falling"
    a, b = render(caption, 7), render(caption, 7)
    assert np.array_equal(a.wave, b.wave) and a.events == b.events
    assert a.wave.dtype == np.float32 and a.wave.size == int(10.24 * SAMPLE_RATE)
    assert not np.array_equal(a.wave, render(caption, 8).wave)
    for name in JUDGES:
        assert make_judge(name).score([caption], [a.wave])[0] == make_judge(name).score([caption], [b.wave])[0]
    sa = make_judge("world-judge-a").score_one(caption, a.wave)
    sb = make_judge("world-judge-b").score_one(caption, a.wave)
    assert sa != sb


def test_generator_steps_order_quality_and_seeds_vary():
    g = make_generator()
    caps = [c[0].text() for c in _cases(None, n=60, seed=3)]
    judge = make_judge("world-judge-a")
    mean = {}
    for steps in (5, 25, 50, 100):
        waves = g.generate(caps, steps=steps, guidance=3.0, seeds=list(range(len(caps))), duration_s=DURATION)
        mean[steps] = float(np.mean(judge.score(caps, waves)))
    assert mean[5] < mean[25] < mean[50] < mean[100], mean
    four = g.generate([caps[0]] * 4, steps=50, guidance=3.0, seeds=[0, 1, 2, 3], duration_s=DURATION)
    assert len({w.tobytes() for w in four}) == 4
    again = g.generate([caps[0]], steps=50, guidance=3.0, seeds=[0], duration_s=DURATION)
    assert np.array_equal(again[0], four[0])


def test_bad_input(caplog):
    judge = make_judge("world-judge-a")
    wave = render("a dog barking", 0, duration_s=3.0).wave
    with caplog.at_level(logging.WARNING, logger="curator.world.judge"):
        scores = judge.score(["a cat meowing", "a cat meowing"], [wave, wave])
    assert scores.tolist() == [0.0, 0.0]
    warnings = [r for r in caplog.records if "a cat meowing" in r.getMessage()]
    assert len(warnings) == 1  # warned once per caption
    with pytest.raises(CaptionError, match="zero-length"):
        judge.score(["a dog barking"], [np.zeros(0, dtype=np.float32)])
    g = make_generator()
    with pytest.raises(CaptionError, match="a cat meowing"):
        g.generate(["a cat meowing"], steps=50, guidance=3, seeds=[0], duration_s=4)
    with pytest.raises(CaptionError, match="absurd"):
        g.generate(["a dog barking 99 times"], steps=50, guidance=3, seeds=[0], duration_s=4)
    with pytest.raises(CaptionError, match="zero-length"):
        g.generate(["a dog barking"], steps=50, guidance=3, seeds=[0], duration_s=0)
    with pytest.raises(CaptionError, match="does not fit"):
        render("a bell ringing ten times then a whistle blowing ten times", 0, duration_s=2.0)
    with pytest.raises(CaptionError, match="does not apply"):
        render("a dog barking", 0, defect="swap")
    with pytest.raises(CaptionError, match="no counted event"):
        render("a dog barking", 0, defect="count")
    with pytest.raises(Exception, match="unknown world judge"):
        make_judge("world-judge-z")


def test_temporal_metrics_against_caption():
    scene = parse_caption("A dog barking then a bell ringing")
    swapped = render(scene, 3, defect="swap", duration_s=DURATION)
    m = temporal_metrics(scene, detect_cached(swapped.wave))
    assert m.ordering_error_rate == 1.0 and m.presence_recall == 1.0 and m.onset_error_s is None
    missing = render(scene, 3, defect="missing", duration_s=DURATION)
    assert temporal_metrics(scene, detect_cached(missing.wave)).presence_recall == 0.5
    counted = parse_caption("A dog barking twice then a bell ringing three times")
    faithful = temporal_metrics(counted, detect_cached(render(counted, 3, duration_s=DURATION).wave))
    assert faithful.count_error_rate == 0.0 and faithful.n_counted == 2
    wrong = render(counted, 3, defect="count", duration_s=DURATION)
    assert sorted(e.count for e in wrong.events) != [2, 3]  # one repeat dropped or added
    m = temporal_metrics(counted, detect_cached(wrong.wave))
    assert m.count_error_rate == 0.5 and m.n_counted == 2 and m.ordering_error_rate == 0.0
    assert temporal_metrics(wrong.events, detect_cached(wrong.wave)).count_error_rate == 0.0  # heard as rendered
