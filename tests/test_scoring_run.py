"""run_scoring and `curator score` on a real store (SQLite and PostgreSQL) with real WAV files."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from curator.audio import encode_wav
from curator.cli import app
from db.errors import CuratorError
from curator.scoring.clap import load_clap
from curator.scoring.run import run_scoring
from curator.scoring.tiny import build_tiny_clap, build_tiny_laion
from db.models import AudioClip, Caption, ClapModel, Perturbation, PerturbationRequest, Score, text_hash

runner = CliRunner()
DOG = "a dog barks while a man speaks"
RAIN = "rain falls on a metal roof"
PERTURBED = "a cat meows while a man sings"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("clap")
    folder = build_tiny_clap(root / "tiny-clap", seed=0)
    checkpoint, tokenizer = build_tiny_laion(root / "laion", seed=1)
    return folder, checkpoint, tokenizer


class Counting:
    """A Scorer wrapper that counts what reaches the model."""

    def __init__(self, inner, sample_rate=None):
        self.inner = inner
        self.name, self.checkpoint, self.file_hash, self.backend = inner.name, inner.checkpoint, inner.file_hash, inner.backend
        self.sample_rate = sample_rate or inner.sample_rate
        self.calls, self.clips, self.lengths = 0, 0, []

    def score(self, texts, waves):
        self.calls += 1
        self.clips += len(waves)
        self.lengths += [len(w) for w in waves]
        return self.inner.score(texts, waves)


class Fixed:
    """A Scorer returning a constant (NaN to test the guard), at 16 kHz like the world judges."""

    backend, sample_rate, file_hash = "world", 16_000, None

    def __init__(self, name, value):
        self.name = self.checkpoint = name
        self.value = value
        self.lengths = []

    def score(self, texts, waves):
        self.lengths += [len(w) for w in waves]
        return np.full(len(texts), self.value)


def _wave(freq: float, seconds: float = 1.0, sr: int = 16_000) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def populate(session, store) -> dict[str, AudioClip]:
    """Caption DOG with 4 Strategy 1.1 clips (one duplicated bit-for-bit as a 1.2 clip), caption
    RAIN with a Strategy 2 instance whose loser was generated from a perturbed caption, and one
    44.1 kHz stereo clip."""
    dog = Caption(text=DOG, text_sha=text_hash(DOG), temporal=True)
    rain = Caption(text=RAIN, text_sha=text_hash(RAIN))
    session.add_all([dog, rain])
    session.flush()
    req = PerturbationRequest(caption_id=rain.id, strategy="2", model="test", raw_response=PERTURBED, n_parsed=1)
    session.add(req)
    session.flush()
    pert = Perturbation(request_id=req.id, caption_id=rain.id, strategy="2", model="test", position=0, text=PERTURBED)
    session.add(pert)
    session.flush()
    clips = {}

    def add(key, caption, strategy, slot, wave, sr=16_000, prompt=None, perturbation=None):
        if wave.ndim == 2:
            import io

            import soundfile as sf

            buf = io.BytesIO()
            sf.write(buf, wave, sr, format="WAV", subtype="PCM_16")
            sha, rel = store.put_bytes(buf.getvalue())
        else:
            sha, rel = store.put_bytes(encode_wav(wave, sr))
        clip = AudioClip(sha256=sha, path=rel, sample_rate=sr, num_samples=wave.shape[0], duration_s=wave.shape[0] / sr,
                         generator="test", checkpoint_id="t", steps=50, guidance=3.0, seed=slot,
                         prompt=prompt or caption.text, caption_id=caption.id, strategy=strategy, slot=slot,
                         perturbation_id=perturbation)
        session.add(clip)
        clips[key] = clip

    for slot, freq in enumerate((220, 330, 440, 550)):
        add(f"1.1-{slot}", dog, "1.1", slot, _wave(freq))
    add("1.2-dup", dog, "1.2", 0, _wave(220))  # same bytes as 1.1-0: same sha, same caption → one score
    add("2-win", rain, "2", 0, _wave(700))
    add("2-lose", rain, "2", 1, _wave(900), prompt=PERTURBED, perturbation=pert.id)
    add("stereo", rain, "3", 0, np.stack([_wave(300, sr=44_100), _wave(600, sr=44_100)], axis=1), sr=44_100)
    session.commit()
    return clips


def test_scores_every_clip_against_its_caption_and_caches(session, audio_store, tiny_models):
    folder, checkpoint, tokenizer = tiny_models
    clips = populate(session, audio_store)
    m1 = Counting(load_clap(str(checkpoint), name="m1", tokenizer_source=str(tokenizer)))
    m2 = Counting(load_clap(str(folder), name="m2"))
    counts = run_scoring(session, audio_store, [m1, m2], batch_size=3)
    assert counts == {"models": 2, "clips": 7, "scored": 14, "cached": 0}
    assert m1.clips == m2.clips == 7 and m1.calls == 3  # 7 items in batches of 3
    assert m1.inner.text_passes == 2  # two captions, each embedded once

    models = session.scalars(select(ClapModel).order_by(ClapModel.position)).all()
    assert [(m.name, m.position, m.backend) for m in models] == [("m1", 0, "clap"), ("m2", 1, "clap")]
    assert models[0].checkpoint == str(checkpoint.resolve()) and len(models[0].file_hash) == 64
    assert models[1].file_hash is None

    loser = clips["2-lose"]
    rows = session.scalars(select(Score).where(Score.clip_sha == loser.sha256)).all()
    assert {r.text for r in rows} == {RAIN}  # the caption's text, not the perturbed prompt
    assert {r.model_id for r in rows} == {models[0].id, models[1].id}
    expected = m2.inner.score([RAIN], [audio_store.read(loser.path, target_sr=48_000).wave])[0]
    got = session.scalars(select(Score.value).where(Score.clip_sha == loser.sha256, Score.model_id == models[1].id)).one()
    assert got == pytest.approx(expected, abs=1e-6)
    assert all(-1.0 <= r.value <= 1.0 for r in session.scalars(select(Score)))

    # rerun: nothing reaches the models
    again = run_scoring(session, audio_store, [m1, m2], batch_size=3)
    assert again == {"models": 2, "clips": 7, "scored": 0, "cached": 14}
    assert m1.clips == m2.clips == 7
    assert session.scalar(select(func.count()).select_from(Score)) == 14


def test_resampled_to_each_models_rate(session, audio_store, tiny_models):
    folder, _, _ = tiny_models
    populate(session, audio_store)
    clap = Counting(load_clap(str(folder), name="clap"))
    judge = Fixed("judge", 0.5)
    run_scoring(session, audio_store, [clap, judge])
    # 1 s clips: 48 000 samples for CLAP from 16 kHz, 48 001 from the 44.1 kHz stereo source (what
    # laion-clap's librosa.load(sr=48000) gives: ceil(44 100 · 48 000/44 100.0) in floating point),
    # 16 000 for the judge
    assert sorted(set(clap.lengths)) == [48_000, 48_001] and clap.lengths.count(48_001) == 1
    assert set(judge.lengths) == {16_000}


def test_nan_score_names_the_clip_and_keeps_earlier_batches(session, audio_store):
    clips = populate(session, audio_store)
    bad = Fixed("bad", float("nan"))
    with pytest.raises(CuratorError, match=r"model 'bad' gave a nan score for clip \d+ \(") as info:
        run_scoring(session, audio_store, [bad], batch_size=2)
    assert "\n" not in str(info.value)
    assert session.scalar(select(func.count()).select_from(Score)) == 0
    good = Fixed("bad", 0.25)
    counts = run_scoring(session, audio_store, [good], batch_size=2)
    assert counts["scored"] == 7
    assert clips  # populated


def test_scores_stored_meanwhile_by_another_process_are_kept(store_url, session, audio_store):
    from db.session import open_store

    clips = populate(session, audio_store)
    first = clips["1.1-0"]

    class Racing(Fixed):
        def score(self, texts, waves):
            with open_store(store_url)() as other:  # another `curator score` stores one of this batch first
                model_id = other.scalars(select(ClapModel.id).where(ClapModel.name == "race")).one()
                other.add(Score(clip_sha=first.sha256, text_sha=text_hash(DOG), text=DOG, model_id=model_id, value=0.9))
                other.commit()
            return super().score(texts, waves)

    counts = run_scoring(session, audio_store, [Racing("race", 0.1)], batch_size=16)
    assert counts["scored"] == 6
    values = dict(session.execute(select(Score.clip_sha, Score.value)).all())
    assert len(values) == 7  # 7 distinct clip shas (the 1.2 duplicate shares 1.1-0's)
    assert values[first.sha256] == 0.9


def test_missing_and_corrupt_audio_are_one_line(session, audio_store):
    clips = populate(session, audio_store)
    judge = Fixed("j", 0.1)
    first = clips["1.1-0"]
    (audio_store.root / first.path).unlink()
    with pytest.raises(CuratorError, match=rf"clip {first.id}: audio file .* is missing from the audio store"):
        run_scoring(session, audio_store, [judge])
    (audio_store.root / first.path).write_bytes(b"RIFF garbage, not a wave file")
    with pytest.raises(CuratorError, match=rf"clip {first.id}: audio file .* is not audio \(or is corrupt\)") as info:
        run_scoring(session, audio_store, [judge])
    assert "\n" not in str(info.value)


def test_names_are_checked_and_positions_follow_the_call(session, audio_store):
    populate(session, audio_store)
    a, b = Fixed("a", 0.1), Fixed("b", 0.2)
    run_scoring(session, audio_store, [a, b])
    run_scoring(session, audio_store, [b, a])
    assert [m.name for m in session.scalars(select(ClapModel).order_by(ClapModel.position))] == ["b", "a"]
    other = Fixed("elsewhere", 0.3)
    with pytest.raises(CuratorError, match="model name 'a' is already registered with checkpoint a, not elsewhere"):
        run_scoring(session, audio_store, [other], names=["a"])
    with pytest.raises(CuratorError, match="given twice"):
        run_scoring(session, audio_store, [a, b], names=["x", "x"])


def test_cli_scores_an_ensemble_and_reruns_nothing(store_url, tmp_path, tiny_models):
    from db.session import open_store

    folder, checkpoint, tokenizer = tiny_models
    audio_root = tmp_path / "audio"
    from curator.audio import AudioStore

    with open_store(store_url)() as s:
        populate(s, AudioStore(audio_root))
    args = ["score", "--model", f"m1={checkpoint}", "--model", f"m2={folder}", "--tokenizer", str(tokenizer),
            "--batch-size", "4", "--db", store_url, "--audio-root", str(audio_root)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "scored 14 (clip, model) pairs, 0 already cached" in res.output
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "scored 0 (clip, model) pairs, 14 already cached" in res.output
    with open_store(store_url)() as s:
        assert [m.name for m in s.scalars(select(ClapModel).order_by(ClapModel.position))] == ["m1", "m2"]


@pytest.mark.parametrize(
    "model_args, message",
    [
        (["--model", "m1=/nowhere/630k-best.pt"], "CLAP checkpoint /nowhere/630k-best.pt does not exist"),
        (["--model", "laion/clap-htsat-unfused"], "cannot load CLAP model 'laion/clap-htsat-unfused'"),
        (["--model", "m1=", "--model", "m2=x.pt"], "no checkpoint after m1="),
    ],
)
def test_cli_errors_are_one_line(sqlite_store_url, tmp_path, model_args, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = runner.invoke(app, ["score", *model_args, "--db", sqlite_store_url, "--audio-root", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]


def test_cli_bad_device_is_one_line(sqlite_store_url, tmp_path, tiny_models):
    res = runner.invoke(app, ["score", "--model", str(tiny_models[0]), "--device", "tpu9", "--db", sqlite_store_url])
    assert res.exit_code == 2
    assert "device 'tpu9' is not a torch device" in res.output and "Traceback" not in res.output


def test_cli_refuses_an_unmigrated_store(tmp_path, tiny_models):
    folder, _, _ = tiny_models
    res = runner.invoke(app, ["score", "--model", str(folder), "--db", f"sqlite:///{tmp_path / 'new.db'}"])
    assert res.exit_code == 2
    assert "not migrated" in res.output and "curator db upgrade" in res.output
