"""Candidate pairs (arXiv 2404.09956 §4.1.2): rules per strategy, PairScore per model, idempotence, bad scores, CLI."""

from __future__ import annotations

import json
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from curator.cli import app
from db.errors import CuratorError
from curator.pairs import build_pairs, describe
from db.models import AudioClip, Pair, PairScore
from db.session import open_store
from builders.pairs import add_caption, add_group, add_models, add_score, paper_world

runner = CliRunner()


def pairs_of(session):
    rows = session.execute(select(Pair.strategy, Pair.winner_clip_id, Pair.loser_clip_id)).all()
    slot = dict(session.execute(select(AudioClip.id, AudioClip.slot)).all())
    return sorted((s, slot[w], slot[lo]) for s, w, lo in rows)


def test_strategy1_top_clip_under_model1_beats_each_other(session, audio_store):
    models = add_models(session)
    cap = add_caption(session, "a dog barks")
    # model 1 ranks slot 1 first; model 2 would rank slot 3 first: model 1 decides
    add_group(session, audio_store, models, cap, "1.1", [(0.5, 0.1), (0.9, 0.2), (0.7, 0.3), (0.6, 0.99)])
    counts = build_pairs(session, progress=False)
    session.commit()
    assert counts.created["1.1"] == 3
    assert pairs_of(session) == [("1.1", 1, 0), ("1.1", 1, 2), ("1.1", 1, 3)]
    # one PairScore per model with the clip scores of that model
    ps = session.execute(select(PairScore.model_id, PairScore.winner_score, PairScore.loser_score)
                         .join(Pair).join(AudioClip, AudioClip.id == Pair.loser_clip_id)
                         .where(AudioClip.slot == 3)).all()
    assert sorted(ps) == [(models[0].id, 0.9, 0.6), (models[1].id, 0.2, 0.99)]


def test_strategies_1_1_and_1_2_are_separate_groups(session, audio_store):
    models = add_models(session)
    cap = add_caption(session, "rain")
    add_group(session, audio_store, models, cap, "1.1", [(0.1, 0.1), (0.2, 0.2), (0.3, 0.3), (0.4, 0.4)])
    add_group(session, audio_store, models, cap, "1.2", [(0.9, 0.9), (0.2, 0.2), (0.3, 0.3), (0.4, 0.4)])
    build_pairs(session, progress=False)
    assert pairs_of(session) == [("1.1", 3, 0), ("1.1", 3, 1), ("1.1", 3, 2),
                                 ("1.2", 0, 1), ("1.2", 0, 2), ("1.2", 0, 3)]


def test_strategies_2_3_keep_only_where_caption_clip_wins_under_model1(session, audio_store):
    models = add_models(session)
    a, b, c = (add_caption(session, t) for t in ("engine idles", "birds chirp", "a man talks then a door shuts"))
    add_group(session, audio_store, models, a, "2", [(0.6, 0.1), (0.5, 0.9)])  # kept (model 2 irrelevant here)
    add_group(session, audio_store, models, b, "2", [(0.5, 0.9), (0.5, 0.1)])  # tie → not kept
    add_group(session, audio_store, models, c, "3", [(0.4, 0.5), (0.7, 0.1)])  # perturbed wins → not kept
    counts = build_pairs(session, progress=False)
    assert pairs_of(session) == [("2", 0, 1)]
    assert counts.not_kept == {"2": 1, "3": 1}
    assert "not kept" in describe(counts)


def test_rerun_adds_nothing_and_fills_late_scores(session, audio_store):
    models = add_models(session)
    cap = add_caption(session, "a bell rings")
    clips = add_group(session, audio_store, models, cap, "1.1",
                      [(0.5, 0.5), (0.9, None), (0.7, 0.6), (0.6, 0.6)])
    first = build_pairs(session, progress=False)
    session.commit()
    assert first.total_created == 3
    assert first.missing_scores == {"judge-b": 3}  # the winner has no model-2 score: counted, not a crash
    assert session.scalar(select(func.count()).select_from(PairScore)) == 3
    again = build_pairs(session, progress=False)
    session.commit()
    assert again.total_created == 0 and again.existing == 3 and again.missing_scores == {"judge-b": 3}
    # the missing score arrives: a rerun fills exactly the missing PairScore rows
    add_score(session, clips[1], cap, models[1], 0.8)
    session.commit()
    third = build_pairs(session, progress=False)
    session.commit()
    assert third.total_created == 0 and third.pair_scores_added == 3 and not third.missing_scores
    assert session.scalar(select(func.count()).select_from(PairScore)) == 6
    assert session.scalar(select(func.count()).select_from(Pair)) == 3


def test_incomplete_and_unranked_groups_wait(session, audio_store):
    models = add_models(session)
    a, b = add_caption(session, "wind"), add_caption(session, "thunder")
    add_group(session, audio_store, models, a, "1.2", [(0.5, 0.5), (0.9, 0.9), (0.7, 0.6)])  # 3 of 4 clips
    add_group(session, audio_store, models, b, "1.1", [(0.5, 0.5), (None, 0.9), (0.7, 0.6), (0.2, 0.2)])
    counts = build_pairs(session, progress=False)
    assert counts.total_created == 0
    assert counts.incomplete_groups == 1 and counts.unranked_groups == 1
    text = describe(counts)
    assert "too few clips" in text and "lack a model-1 score" in text


def test_infinite_score_refused_naming_the_clip(session, audio_store):
    models = add_models(session)
    cap = add_caption(session, "a cat meows")
    clips = add_group(session, audio_store, models, cap, "2", [(0.6, 0.5), (0.4, float("inf"))])
    session.commit()
    with pytest.raises(CuratorError, match=rf"clip {clips[1].id} \({clips[1].path}\) has a inf score under model 'judge-b'"):
        build_pairs(session, progress=False)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Pair)) == 0


def test_no_models_is_one_line(session):
    with pytest.raises(CuratorError, match="no CLAP scores yet"):
        build_pairs(session, progress=False)


def test_batches_commit_and_resume(session, audio_store):
    models, _ = paper_world(session, audio_store)
    session.commit()
    counts = build_pairs(session, batch_size=2, progress=False)
    session.commit()
    assert counts.total_created == 8
    assert session.scalar(select(func.count()).select_from(PairScore)) == 16


def test_cli_pairs_stats_presets(store_url, tmp_path):
    from curator.audio import AudioStore

    factory = open_store(store_url)
    with factory() as s:
        paper_world(s, AudioStore(tmp_path / "audio"))
        s.commit()
    res = runner.invoke(app, ["pairs", "--help"])
    assert res.exit_code == 0 and "model 1" in res.output
    res = runner.invoke(app, ["pairs", "--db", store_url])
    assert res.exit_code == 0, res.output
    assert "created 8 pairs" in res.output
    res = runner.invoke(app, ["pairs", "--db", store_url])
    assert "created 0 pairs" in res.output and "8 already" in res.output
    res = runner.invoke(app, ["stats", "--db", store_url])
    assert res.exit_code == 0, res.output
    assert "S1.1" in res.output and "α (winner score), model 1 (judge-a)" in res.output
    assert "Δ (winner − loser), model 2 (judge-b)" in res.output
    total_line = [line for line in res.output.splitlines() if line.startswith("total")][0]
    assert total_line.split()[1:] == ["4", "8"]
    res = runner.invoke(app, ["presets", "save", "loose", "--delta2", "0:0.7", "--author", "ana", "--db", store_url])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["stats", "--preset", "loose", "--db", store_url])
    total_line = [line for line in res.output.splitlines() if line.startswith("total")][0]
    assert total_line.split()[1:] == ["7", "8"]
    res = runner.invoke(app, ["presets", "list", "--db", store_url])
    assert "paper" in res.output and "loose" in res.output and "ana" in res.output
    # --json: the same facts as one JSON document
    res = runner.invoke(app, ["stats", "--preset", "loose", "--json", "--db", store_url])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert (doc["kept"]["total"], doc["pool"]["total"], doc["preset"]) == (7, 8, "loose")
    assert doc["thresholds"]["delta2_min"] == 0.0 and doc["models"] == ["judge-a", "judge-b"]
    h = doc["histograms"]["alpha1"]
    assert len(h["edges"]) == len(h["kept"]) + 1 and sum(h["kept"]) == 7 and sum(h["kept"]) + sum(h["dropped"]) == 8
    res = runner.invoke(app, ["presets", "list", "--json", "--db", store_url])
    presets = {p["name"]: p for p in json.loads(res.output)}
    assert set(presets) == {"paper", "loose"} and presets["loose"]["author"] == "ana"
    assert presets["paper"]["alpha1"] == 0.45
    res = runner.invoke(app, ["presets", "show", "loose", "--db", store_url])
    assert res.exit_code == 0 and "delta2_min" in res.output and "0.0" in res.output
    # bad input: one line, exit 2
    res = runner.invoke(app, ["presets", "save", "bad", "--delta1", "0.4:0.1", "--author", "x", "--db", store_url])
    assert res.exit_code == 2 and "delta1 range 0.4:0.1 is empty" in res.output
    res = runner.invoke(app, ["presets", "save", "bad", "--alpha1", "2", "--author", "x", "--db", store_url])
    assert res.exit_code == 2 and "alpha1=2.0 is outside" in res.output
    res = runner.invoke(app, ["stats", "--preset", "ghost", "--db", store_url])
    assert res.exit_code == 2 and "'ghost' does not exist" in res.output


def test_cli_refuses_unmigrated_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'raw.db'}"
    for cmd in (["pairs"], ["stats"], ["presets", "list"]):
        res = runner.invoke(app, [*cmd, "--db", url])
        assert res.exit_code == 2 and "not migrated" in res.output, cmd


def test_ingest_returns_ids_in_order(session, audio_store):
    from curator.pairs import ingest_pairs

    models = add_models(session)
    cap = add_caption(session, "a drum")
    clips = add_group(session, audio_store, models, cap, "1.1", [(0.1, 0.1)] * 4)
    session.commit()
    rows = [(cap.id, clips[w].id, clips[lo].id, "1.1", "auto") for w, lo in ((0, 1), (2, 3), (3, 0), (1, 2))]
    ids = ingest_pairs(session, rows, [[(models[0].id, 0.5 + i, 0.25), (models[1].id, 0.1, 0.2 + i)]
                                       for i in range(4)])
    session.commit()
    assert len(set(ids)) == 4
    for i, (pid, row) in enumerate(zip(ids, rows)):
        pair = session.get(Pair, pid)
        assert (pair.winner_clip_id, pair.loser_clip_id) == row[1:3]
        got = {ps.model_id: (ps.winner_score, ps.loser_score) for ps in pair.scores}
        assert got == {models[0].id: (0.5 + i, 0.25), models[1].id: (0.1, 0.2 + i)}
    assert ingest_pairs(session, []) == []


def test_cli_unreachable_store_is_one_line():
    res = runner.invoke(app, ["stats", "--db", "postgresql://postgres@127.0.0.1:1/none"])
    assert res.exit_code == 2 and "cannot reach store" in res.output
    assert len(res.output.strip().splitlines()) == 1
