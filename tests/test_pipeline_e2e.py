"""The whole automatic pipeline through the `curator` CLI, on SQLite and on PostgreSQL.

captions import → select (real MiniLM) → perturb 2 and 3 (real openai client, loopback server)
→ generate all four strategies (tiny Tango saved in the declare-lab layout and loaded from disk)
→ score (tiny CLAP ensemble: model 1 from a laion-style .pt, model 2 a transformers folder)
→ pairs → a saved preset → stats → export → `datasets` loads it with Audio features.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from curator.cli import app
from curator.models.tiny import build_tiny_tango
from curator.scoring.tiny import build_tiny_clap, build_tiny_laion
from db.models import AudioClip, Caption, ClapModel, Pair, PairScore, Perturbation, Score, SelectionRun
from db.session import open_store
from builders.llm_server import FakeLLM

runner = CliRunner()

CAPTIONS = [
    "A dog barks while a car passes by",
    "Rain falls on a tin roof",
    "A bell rings then a man speaks",
    "Birds chirp in the morning",
    "An engine idles and then revs up",
    "A baby cries before a woman sings",
    "Water runs from a tap",
    "Footsteps followed by a door closing",
    "A siren wails in the distance",
    "Wind blows through the trees",
    "A crowd cheers after a whistle",
    "A cat meows softly",
]


def cli(*args: str) -> str:
    res = runner.invoke(app, list(args), catch_exceptions=False)
    assert res.exit_code == 0, f"curator {' '.join(args)} failed:\n{res.output}"
    return res.output


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    tango = build_tiny_tango(d / "tiny-tango")
    pt, tok = build_tiny_laion(d / "laion")
    clap = build_tiny_clap(d / "tiny-clap", seed=1)
    return tango, pt, tok, clap


@pytest.mark.slow
def test_captions_to_datasets(empty_store_url, tmp_path, tiny_models, monkeypatch):
    import datasets

    tango, pt, tok, clap = tiny_models
    db = ["--db", empty_store_url]
    audio = ["--audio-root", str(tmp_path / "audio")]
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    cli("db", "upgrade", *db)

    # 1. Captions: import (with a duplicate line) and select T1 with KMeans.
    src = tmp_path / "captions.txt"
    src.write_text("\n".join(CAPTIONS + CAPTIONS[:2]) + "\n")
    cli("captions", "import", str(src), *db)
    cli("captions", "select", "--clusters", "3", "--per-cluster", "2", "--seed", "0", *db)

    # 2. Perturbations through the real client against a loopback server.
    with FakeLLM() as llm:
        for strategy in ("2", "3"):
            cli("perturb", "--strategy", strategy, "--model", "fake-gpt", "--base-url", llm.url, *db)
        asked = llm.total
        cli("perturb", "--strategy", "2", "--model", "fake-gpt", "--base-url", llm.url, *db)
        assert llm.total == asked, "a rerun must not ask the LLM again"

    # 3. Clips for all four strategies from the tiny Tango loaded from its folder.
    for strategy in ("1.1", "1.2", "2", "3"):
        cli("generate", "--strategy", strategy, "--model", str(tango), "--duration", "1.0",
            "--batch-size", "4", *db, *audio)

    # 4. The ensemble: model 1 from a laion .pt, model 2 a transformers CLAP folder.
    cli("score", "--model", f"clap-laion={pt}", "--model", f"clap-hf={clap}", "--tokenizer", str(tok), *db, *audio)
    cli("pairs", *db)
    cli("presets", "save", "e2e", "--author", "ci", "--alpha1", "-1", "--alpha2", "-1", "--beta1", "-1",
        "--beta2", "-1", "--delta1", "0:2", "--delta2", "0:2", *db)
    stats = cli("stats", "--preset", "e2e", *db)
    assert "1.1" in stats and "total" in stats.lower()

    factory = open_store(empty_store_url)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Caption)) == len(CAPTIONS)
        run = s.scalars(select(SelectionRun)).one()
        assert run.n_selected == 6
        n_t2 = s.scalar(select(func.count()).select_from(Caption).where(Caption.temporal))
        assert n_t2 == 6
        assert s.scalar(select(func.count()).select_from(Perturbation)) > 0
        clips = s.scalars(select(AudioClip)).all()
        by_strategy = {k: sum(c.strategy == k for c in clips) for k in ("1.1", "1.2", "2", "3")}
        assert by_strategy == {"1.1": 24, "1.2": 24, "2": 12, "3": 12}
        assert {c.steps for c in clips if c.strategy == "1.1"} == {5, 25, 50, 100}
        assert all(c.sample_rate == 16000 and c.generator == "tango" for c in clips)
        models = s.scalars(select(ClapModel).order_by(ClapModel.position)).all()
        assert [m.name for m in models] == ["clap-laion", "clap-hf"] and models[0].file_hash
        assert s.scalar(select(func.count()).select_from(Score)) == 2 * len(clips)
        n_pairs = s.scalar(select(func.count()).select_from(Pair))
        assert s.scalar(select(func.count()).select_from(Pair).where(Pair.strategy == "1.1")) == 18
        assert s.scalar(select(func.count()).select_from(PairScore)) == 2 * n_pairs

    # 5. Export and load it with the real `datasets` library.
    out = tmp_path / "alpaca"
    cli("export", str(out), "--preset", "e2e", *db, *audio)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preset"]["name"] == "e2e"
    assert "password" not in json.dumps(manifest)
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert len(ds) > 0
    assert ds.features["chosen"].sampling_rate == 16000
    row = ds[0]
    assert row["chosen"]["sampling_rate"] == 16000 and len(row["chosen"]["array"]) == 16000
    assert set(ds.unique("strategy")) <= {"1.1", "1.2", "2", "3"}
    assert row["prompt"] in CAPTIONS
