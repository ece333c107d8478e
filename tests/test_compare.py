"""`trainer compare` on tiny Tangos in the real layout: the same prompts and seeds for every
checkpoint, world-judge scores and temporal metrics, FAD, intervals and paired differences,
splits, the three output files, clip sets and a listening session in the store, and the bad
inputs that must end in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from trainer.compare import CompareSettings, compare, frechet_distance, summarise, world_reference

DUR = 2.56
PROMPTS = ["A dog barking then a bell ringing", "Rain falling", "A whistle blowing twice",
           "A bird chirping while an engine humming"]


@pytest.fixture(scope="module")
def tangos(tmp_path_factory):
    from curator.models.tiny import build_tiny_tango

    root = tmp_path_factory.mktemp("tangos")
    return build_tiny_tango(root / "a", seed=0), build_tiny_tango(root / "b", seed=1)


def _settings(**kw):
    return CompareSettings(**{"steps": 2, "duration_s": DUR, "seeds": (0, 1), "bootstrap": 20, **kw})


def test_compare_writes_tables_with_intervals_and_splits(tangos, tmp_path, one_torch_thread):
    a, b = tangos
    out = tmp_path / "cmp"
    res = compare([("base", a), ("other", b), ("same", a)], ["world-judge-a", "world-judge-b"], _settings(),
                  prompts=PROMPTS, out_dir=out, progress=False, warn=lambda s: None)
    data = json.loads((out / "results.json").read_text())
    assert data == json.loads(json.dumps(res.results))
    assert data["metrics"] == ["world-judge-a", "world-judge-b", "presence_recall", "presence_precision",
                               "ordering_error_rate", "onset_error_s", "count_error_rate", "fad"]
    table = data["all"]["metrics"]
    # FAD over the clips whose caption has a faithful render of that length and seed
    n_refs = sum(world_reference(p, s * 100003 + i, DUR) is not None for i, p in enumerate(PROMPTS) for s in (0, 1))
    assert n_refs >= 6
    for name in ("base", "other", "same"):
        for m in ("world-judge-a", "world-judge-b", "presence_recall", "fad"):
            cell = table[name][m]
            assert cell["ci95"][0] <= cell["mean"] <= cell["ci95"][1]
        assert table[name]["world-judge-a"]["n"] == 4 and table[name]["fad"]["n"] == n_refs
    # the same checkpoint under another name: the same prompts and seeds give the same clips
    for m, cell in data["all"]["paired"]["same"].items():
        assert cell["mean"] == pytest.approx(0.0, abs=1e-9) and cell["ci95"] == pytest.approx([0.0, 0.0], abs=1e-9), m
    assert set(data["all"]["paired"]) == {"other", "same"}
    # ordering error only where the prompt orders events, count error only where it counts
    assert data["all"]["metrics"]["base"]["ordering_error_rate"]["n"] == 1
    assert data["splits"].keys() == {"events=1", "events=2", "non-temporal", "temporal"}
    assert data["splits"]["temporal"]["n_prompts"] == 2 and data["splits"]["events=1"]["n_prompts"] == 2
    assert len(data["rows"]) == 3 * 4 * 2
    md = (out / "table.md").read_text()
    assert "| Δ other − base |" in md and "## temporal (2 prompts)" in md
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a rerun generates nothing new: the clips are read back
    stamps = {p: p.stat().st_mtime_ns for p in (out / "clips").rglob("*.npy")}
    again = compare([("base", a), ("other", b), ("same", a)], ["world-judge-a", "world-judge-b"], _settings(),
                    prompts=PROMPTS, out_dir=out, progress=False, warn=lambda s: None)
    assert {p: p.stat().st_mtime_ns for p in (out / "clips").rglob("*.npy")} == stamps
    assert again.results["all"] == data["all"]


def test_paired_difference_is_over_prompts_pooled_over_seeds():
    rows = {"a": [], "b": []}
    base = {0: [1.0, 3.0], 1: [2.0, 2.0], 2: [0.0, 1.0]}
    for i, vals in base.items():
        for s, v in enumerate(vals):
            rows["a"].append({"prompt_index": i, "seed": s, "values": {"m": v}})
            rows["b"].append({"prompt_index": i, "seed": s, "values": {"m": v + 0.5 + 0.1 * i}})
    table, paired = summarise(rows, ["m"], [0, 1, 2], 3, "a")
    assert table["a"]["m"]["mean"] == pytest.approx(np.mean([2.0, 2.0, 0.5])) and table["a"]["m"]["n"] == 3
    from scipy import stats

    d = np.array([0.5, 0.6, 0.7])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert paired["b"]["m"]["mean"] == pytest.approx(0.6)
    assert paired["b"]["m"]["ci95"] == pytest.approx([0.6 - half, 0.6 + half])


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 6)), rng.normal(loc=1.0, scale=2.0, size=(200, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b, fast=True) == pytest.approx(frechet_distance(a, b), rel=1e-6)
    # Gaussians N(0, I) and N(1, 4I) in 6 dimensions: 6·1² + 6·(1 + 4 − 2·2) = 12
    assert frechet_distance(a, b) == pytest.approx(12.0, rel=0.25)


def test_store_clip_sets_and_a_listening_session(tangos, tmp_path, store_url, one_torch_thread):
    from sqlalchemy import func, select

    from annotate_ui.logic.listening.design import create_listening_session
    from curator.audio import AudioStore
    from db.listening import ClipSet, ListeningSession
    from db.session import open_store

    a, b = tangos
    with open_store(store_url)() as session:
        res = compare([("base", a), ("dpo", b)], ["world-judge-a"], _settings(seeds=(0,)), prompts=PROMPTS[:3],
                      out_dir=tmp_path / "cmp", session=session, audio_store=AudioStore(tmp_path / "audio"),
                      listening="base-vs-dpo", create_listening=create_listening_session, progress=False,
                      warn=lambda s: None)
        assert res.clip_sets == {"base": "compare:cmp:base", "dpo": "compare:cmp:dpo"}
        sets = list(session.scalars(select(ClipSet).order_by(ClipSet.name)))
        assert [len(s.items) for s in sets] == [3, 3]
        ls = session.scalars(select(ListeningSession).where(ListeningSession.name == "base-vs-dpo")).one()
        assert ls is not None and res.listening == "base-vs-dpo"
        assert session.scalar(select(func.count()).select_from(ClipSet)) == 2


@pytest.mark.parametrize("case", ["not-loading", "bad-scorer", "listening-without-db", "bad-spec"])
def test_bad_input_is_one_line(case, tangos, tmp_path):
    from trainer.cli import app

    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "main_config.json").write_text("{}")
    args = ["compare", "--checkpoint", f"base={tangos[0]}", "--prompts", str(prompts), "--scorer", "world-judge-a",
            "--out", str(tmp_path / "out"), "--steps", "1", "--duration", str(DUR), "--quiet"]
    expect = {"not-loading": "checkpoint broken=", "bad-scorer": "cannot be built",
              "listening-without-db": "--listening needs --db", "bad-spec": "expected name=dir"}[case]
    if case == "not-loading":
        args += ["--checkpoint", f"broken={broken}"]
    elif case == "bad-scorer":
        args += ["--scorer", "nowhere/clap.pt"]
    elif case == "listening-without-db":
        args += ["--listening", "x"]
    else:
        args += ["--checkpoint", str(tangos[1])]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and expect in lines[0].lower(), res.output
    assert not (tmp_path / "out").exists()


def test_prompts_among_the_training_captions_are_named(tangos, tmp_path, one_torch_thread):
    from trainer.cli import app

    trained = tmp_path / "trained"
    shutil.copytree(tangos[0], trained)
    (trained / "train_captions.txt").write_text(PROMPTS[0] + "\n" + PROMPTS[2].lower() + "\nsomething else\n")
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS[:3]) + "\n")
    res = CliRunner().invoke(app, ["compare", "--checkpoint", f"pre={trained}", "--checkpoint", f"plain={tangos[1]}",
                                   "--prompts", str(prompts), "--scorer", "world-judge-a", "--out",
                                   str(tmp_path / "out"), "--steps", "1", "--duration", str(DUR), "--quiet"])
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "2 of 3 prompts are training captions of pre" in warnings[0]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["warnings"] == warnings
