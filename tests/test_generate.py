"""Generation: strategies of arXiv 2404.09956 §4.1 on a real migrated store (SQLite and PostgreSQL) with
the tiny Tango loaded from the real layout; sharding; backend resolution; the CLI edge."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.errors import CuratorError
from curator.generate.backends import AudioLDMGenerator, TangoGenerator, detect_backend, resolve_generator
from curator.generate.run import STEPS_1_1, plan, run_generation, shard_items
from db.models import AudioClip, Caption, Perturbation, PerturbationRequest, Selection, SelectionRun, text_hash

DUR = 0.2  # seconds per clip: keeps the tiny model fast


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from curator.models.tiny import build_tiny_tango

    return build_tiny_tango(tmp_path_factory.mktemp("gen") / "tiny-tango")


@pytest.fixture(scope="module")
def tango_gen(tiny_dir):
    gen = resolve_generator(str(tiny_dir))
    assert isinstance(gen, TangoGenerator)
    return gen


def add_captions(session, texts, *, temporal=False, select_run=True):
    caps = [Caption(text=t, text_sha=text_hash(t), temporal=temporal) for t in texts]
    session.add_all(caps)
    session.flush()
    if select_run:
        run = SelectionRun(embedding_model="test", clusters=1, per_cluster=len(caps), seed=0,
                           n_candidates=len(caps), n_selected=len(caps))
        session.add(run)
        session.flush()
        session.add_all([Selection(run_id=run.id, caption_id=c.id, cluster=0) for c in caps])
    session.commit()
    return caps


def add_perturbations(session, caption, strategy, texts):
    req = PerturbationRequest(caption_id=caption.id, strategy=strategy, model="test-llm",
                              raw_response="\n".join(texts), n_parsed=len(texts))
    session.add(req)
    session.flush()
    session.add_all([Perturbation(request_id=req.id, caption_id=caption.id, strategy=strategy, model="test-llm",
                                  position=i, text=t) for i, t in enumerate(texts)])
    session.commit()


def clips(session, strategy):
    return list(session.scalars(select(AudioClip).where(AudioClip.strategy == strategy)
                                .order_by(AudioClip.caption_id, AudioClip.slot)))


def test_strategy_1_1_end_to_end_and_resume(session, audio_store, tango_gen):
    caps = add_captions(session, ["a dog barks", "rain falls on a roof"])
    counts = run_generation(session, audio_store, tango_gen, "1.1", captions=caps, batch_size=4, duration_s=DUR,
                            limit=1, progress=False)
    assert counts == {"captions": 1, "planned": 4, "existing": 0, "generated": 4, "no_perturbation": 0}
    caps = caps[:1]
    rows = clips(session, "1.1")
    assert [(r.caption_id, r.slot, r.steps) for r in rows] == [
        (c.id, slot, steps) for c in caps for slot, steps in enumerate(STEPS_1_1)]
    for r in rows:
        assert r.generator == "tango" and r.checkpoint_id == tango_gen.checkpoint_id
        assert r.guidance == 3.0 and r.sample_rate == 16000 and r.num_samples == int(DUR * 16000)
        assert r.duration_s == pytest.approx(DUR) and r.perturbation_id is None
        assert r.prompt == next(c.text for c in caps if c.id == r.caption_id)
        decoded = audio_store.read(r.path)
        assert decoded.wave.shape == (r.num_samples,)
        assert hashlib.sha256(audio_store.resolve(r.path).read_bytes()).hexdigest() == r.sha256
    # 1.1: the four step counts share one seed per caption, and give four different clips
    assert len({r.seed for r in rows}) == 1
    assert len({r.sha256 for r in rows}) == 4
    # resume: nothing twice
    again = run_generation(session, audio_store, tango_gen, "1.1", captions=caps, batch_size=4, duration_s=DUR,
                           progress=False)
    assert again["generated"] == 0 and again["existing"] == 4
    assert session.scalar(select(func.count()).select_from(AudioClip)) == 4


def test_strategy_2_uses_one_stored_perturbation(session, audio_store, tango_gen):
    caps = add_captions(session, ["a cat meows", "a bell rings twice", "a car passes by"])
    add_perturbations(session, caps[0], "2", ["a dog meows", "a cat barks", "a cow meows"])
    add_perturbations(session, caps[1], "2", ["a bell rings once"])
    add_perturbations(session, caps[2], "3", ["a car passes by then stops"])  # wrong strategy: not used by 2
    counts = run_generation(session, audio_store, tango_gen, "2", captions=caps, duration_s=DUR, progress=False)
    assert counts["no_perturbation"] == 1 and counts["generated"] == 4
    rows = clips(session, "2")
    by_caption = {}
    for r in rows:
        by_caption.setdefault(r.caption_id, {})[r.slot] = r
    assert set(by_caption) == {caps[0].id, caps[1].id}
    for cap in caps[:2]:
        winner, loser = by_caption[cap.id][0], by_caption[cap.id][1]
        assert winner.prompt == cap.text and winner.perturbation_id is None
        p = session.get(Perturbation, loser.perturbation_id)
        assert p.caption_id == cap.id and p.strategy == "2" and loser.prompt == p.text != cap.text
        assert winner.seed == loser.seed and winner.steps == loser.steps == 50
    # the choice is deterministic
    items, _ = plan(session, "2", caps, seed=0)
    assert {(w.caption_id, w.perturbation_id) for w in items if w.slot == 1} == \
        {(r.caption_id, r.perturbation_id) for r in rows if r.slot == 1}


def test_two_shards_cover_the_work_disjointly(session, audio_store, tango_gen):
    caps = add_captions(session, ["a baby cries", "birds chirp", "a man speaks"])
    items, _ = plan(session, "1.2", caps, seed=5)
    a, b = shard_items(items, (0, 2)), shard_items(items, (1, 2))
    assert len(items) == 12 and not set(a) & set(b) and set(a) | set(b) == set(items)
    caps = caps[:2]
    c0 = run_generation(session, audio_store, tango_gen, "1.2", captions=caps, seed=5, shard=(0, 2), duration_s=DUR,
                        batch_size=4, progress=False)
    c1 = run_generation(session, audio_store, tango_gen, "1.2", captions=caps, seed=5, shard=(1, 2), duration_s=DUR,
                        batch_size=4, progress=False)
    assert c0["generated"] == c1["generated"] == 4
    rows = clips(session, "1.2")
    assert sorted((r.caption_id, r.slot) for r in rows) == sorted((c.id, s) for c in caps for s in range(4))
    assert all(r.steps == 50 for r in rows)
    assert len({(r.caption_id, r.seed) for r in rows}) == 8  # four different seeds per caption
    with pytest.raises(CuratorError, match="bad shard"):
        shard_items(items, (2, 2))


def test_strategy_3_runs_on_t2(session, audio_store, tango_gen):
    caps = add_captions(session, ["a door opens then closes"], temporal=True, select_run=False)
    add_perturbations(session, caps[0], "3", ["a door closes then opens"])
    counts = run_generation(session, audio_store, tango_gen, "3", duration_s=DUR, progress=False)
    assert counts["generated"] == 2
    assert [r.prompt for r in clips(session, "3")] == ["a door opens then closes", "a door closes then opens"]


def test_bad_arguments_are_one_line(session, audio_store, tango_gen):
    with pytest.raises(CuratorError, match="unknown strategy '4'"):
        run_generation(session, audio_store, tango_gen, "4", captions=[], progress=False)
    with pytest.raises(CuratorError, match="batch size"):
        run_generation(session, audio_store, tango_gen, "1.1", captions=[], batch_size=0, progress=False)
    with pytest.raises(CuratorError, match="duration must be a positive"):
        tango_gen.generate(["a dog"], steps=2, guidance=3.0, seeds=[0], duration_s=0.0)
    with pytest.raises(CuratorError, match="2 prompts but 1 seeds"):
        tango_gen.generate(["a", "b"], steps=2, guidance=3.0, seeds=[0], duration_s=DUR)


def test_backend_resolution(tmp_path, tiny_dir):
    assert detect_backend("world") == "world"
    assert detect_backend("tiny") == "tango"
    assert detect_backend(str(tiny_dir)) == "tango"
    assert detect_backend("declare-lab/tango-full-ft-audiocaps") == "tango"
    other = tmp_path / "sd"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(CuratorError, match="names StableDiffusionPipeline"):
        detect_backend(str(other))
    with pytest.raises(CuratorError, match="neither a Tango checkpoint"):
        detect_backend(str(tmp_path))
    with pytest.raises(CuratorError, match="does not exist"):
        detect_backend("no-such-model")
    with pytest.raises(CuratorError, match="unknown backend"):
        resolve_generator("tiny", backend="musicgen")
    # a trainer checkpoint RUN/step-K is a Tango folder
    gen = resolve_generator(None, checkpoint=tiny_dir)
    assert isinstance(gen, TangoGenerator) and gen.checkpoint_id == str(Path(tiny_dir).resolve())


def test_audioldm_pipeline_from_a_saved_folder(tmp_path):
    from curator.models.tiny import build_tiny_audioldm

    folder = build_tiny_audioldm(tmp_path / "audioldm")
    assert detect_backend(str(folder)) == "audioldm"
    gen = resolve_generator(str(folder))
    assert isinstance(gen, AudioLDMGenerator) and gen.name == "audioldm" and gen.sample_rate == 16000
    a = gen.generate(["a dog barks", "rain falls"], steps=3, guidance=3.0, seeds=[1, 2], duration_s=DUR)
    b = gen.generate(["rain falls"], steps=3, guidance=3.0, seeds=[2], duration_s=DUR)
    assert [w.shape for w in a] == [(int(DUR * 16000),)] * 2
    np.testing.assert_allclose(a[1], b[0], atol=1e-5)
    assert np.abs(a[0] - a[1]).max() > 0


def test_cli_unknown_strategy_and_unmigrated_store(tmp_path, sqlite_store_url):
    from curator.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--strategy", "4", "--model", "tiny", "--db", sqlite_store_url])
    assert res.exit_code == 2
    assert "'4' is not one of '1.1', '1.2', '2', '3'" in res.output and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(app, ["generate", "--strategy", "1.1", "--model", "tiny", "--db",
                              f"sqlite:///{tmp_path / 'empty.db'}"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(app, ["generate", "--strategy", "1.1", "--model", str(tmp_path / "nope"),
                              "--db", sqlite_store_url])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_cli_generates_into_the_store(tmp_path, store_url, tiny_dir):
    from curator.cli import app
    from db.session import open_store

    with open_store(store_url)() as s:
        add_captions(s, ["a dog barks", "a man speaks"])
    audio_root = tmp_path / "audio"
    args = ["generate", "--strategy", "1.2", "--model", str(tiny_dir), "--duration", str(DUR), "--batch-size", "8",
            "--db", store_url, "--audio-root", str(audio_root), "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "8 generated" in res.output
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "0 generated, 8 already present" in res.output
    with open_store(store_url)() as s:
        assert s.scalar(select(func.count()).select_from(AudioClip)) == 8
    assert len(list(audio_root.rglob("*.wav"))) == 8


def test_audioldm2_pipeline_from_a_saved_folder(tmp_path):
    from curator.generate.backends import AudioLDM2Generator
    from curator.models.tiny import build_tiny_audioldm2

    folder = build_tiny_audioldm2(tmp_path / "audioldm2")
    assert detect_backend(str(folder)) == "audioldm2"
    gen = resolve_generator(str(folder))
    assert isinstance(gen, AudioLDM2Generator) and gen.name == "audioldm2"
    a = gen.generate(["a dog barks", "rain falls"], steps=2, guidance=3.0, seeds=[1, 2], duration_s=DUR)
    b = gen.generate(["rain falls"], steps=2, guidance=3.0, seeds=[2], duration_s=DUR)
    assert [w.shape for w in a] == [(int(DUR * 16000),)] * 2
    np.testing.assert_allclose(a[1], b[0], atol=1e-4)


@pytest.mark.slow
def test_two_processes_share_the_work(tmp_path, store_url, tiny_dir):
    """`accelerate launch --multi_gpu` starts processes with torch.distributed.run; on CPU we start
    the same launcher directly (accelerate's PartialState reads the same environment)."""
    import subprocess
    import sys

    from db.session import open_store

    with open_store(store_url)() as s:
        add_captions(s, ["a dog barks", "a man speaks", "birds chirp"])
    audio_root = tmp_path / "audio"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "curator", "generate",
           "--strategy", "1.2", "--model", str(tiny_dir), "--duration", str(DUR), "--device", "cpu",
           "--db", store_url, "--audio-root", str(audio_root)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "shard 1/2: 6 generated" in res.stdout and "shard 2/2: 6 generated" in res.stdout
    with open_store(store_url)() as s:
        rows = clips(s, "1.2")
    assert len(rows) == 12 and len({(r.caption_id, r.slot) for r in rows}) == 12


def test_empty_caption_is_refused_before_anything_is_written(session, audio_store, tango_gen, tiny_dir):
    caps = add_captions(session, ["a dog barks", "   "])
    with pytest.raises(CuratorError, match=f"caption {caps[1].id} has an empty text"):
        run_generation(session, audio_store, tango_gen, "1.2", captions=caps, duration_s=DUR, progress=False)
    assert session.scalar(select(func.count()).select_from(AudioClip)) == 0
    assert not audio_store.root.exists() or not list(audio_store.root.rglob("*.wav"))
    with pytest.raises(CuratorError, match="not both"):
        resolve_generator("tiny", checkpoint=tiny_dir)


class RacingGenerator:
    """The tiny Tango, plus another process's write landing while a batch is being generated."""

    def __init__(self, inner, store_url, row):
        self.inner, self.store_url, self.row = inner, store_url, row
        self.name, self.checkpoint_id, self.sample_rate = inner.name, inner.checkpoint_id, inner.sample_rate

    def generate(self, prompts, **kw):
        from db.session import open_store

        with open_store(self.store_url)() as other:
            other.add(AudioClip(**self.row))
            other.commit()
        return self.inner.generate(prompts, **kw)


def test_a_clip_written_meanwhile_by_another_process_is_kept(session, store_url, audio_store, tango_gen):
    caps = add_captions(session, ["a dog barks"])
    row = dict(sha256="0" * 64, path="00/other.wav", sample_rate=16000, num_samples=1, duration_s=1 / 16000,
               generator=tango_gen.name, checkpoint_id=tango_gen.checkpoint_id, steps=50, guidance=3.0, seed=1,
               prompt="a dog barks", caption_id=caps[0].id, strategy="1.2", slot=2)
    gen = RacingGenerator(tango_gen, store_url, row)
    counts = run_generation(session, audio_store, gen, "1.2", captions=caps, duration_s=DUR, progress=False)
    assert counts["generated"] == 3
    rows = clips(session, "1.2")
    assert [r.slot for r in rows] == [0, 1, 2, 3] and rows[2].sha256 == "0" * 64
