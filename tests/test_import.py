"""import-pairs: round trip of an export, CSV folders, resample/downmix notes, idempotence, bad rows."""

from __future__ import annotations

import csv
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from sqlalchemy import func, select
from typer.testing import CliRunner

from curator.audio import AudioStore
from curator.cli import app
from db.errors import CuratorError
from curator.export import TABLE_PATH, export_audio_alpaca, read_table
from curator.import_pairs import import_pairs
from curator.pairs import build_pairs
from db.models import AudioClip, Caption, Pair
from db.session import open_store, upgrade
from builders.pairs import paper_world

runner = CliRunner()


def wav_bytes(seconds=0.6, sr=16000, channels=1, freq=440.0) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t)
    if channels > 1:
        wave = np.stack([wave * (1 + 0.1 * c) for c in range(channels)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_csv_set(folder, rows):
    """rows: (prompt, chosen bytes|None|b'' , rejected bytes, strategy); files named per row."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clips").mkdir(exist_ok=True)
    with open(folder / "pairs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "chosen", "rejected", "strategy"])
        for i, (prompt, chosen, rejected, strategy) in enumerate(rows):
            names = []
            for kind, data in (("c", chosen), ("r", rejected)):
                name = f"clips/{i}{kind}.wav"
                if data is not None:
                    (folder / name).write_bytes(data)
                names.append(name)
            w.writerow([prompt, names[0], names[1], strategy])
    return folder


def table_counts(session):
    return tuple(session.scalar(select(func.count()).select_from(t)) for t in (Caption, AudioClip, Pair))


def test_round_trip_of_an_export(session, audio_store, store_url, tmp_path, monkeypatch):
    from builders import pairs as pairs_builders

    monkeypatch.setattr(pairs_builders, "CLIP_SECONDS", 0.6)  # import refuses clips under 0.5 s
    paper_world(session, audio_store)
    build_pairs(session, progress=False)
    session.commit()
    out = export_audio_alpaca(session, audio_store, tmp_path / "alpaca", db_url=store_url, progress=False)
    exported = read_table(out).to_pydict()
    # into a fresh store
    url2 = f"sqlite:///{tmp_path / 'other.db'}"
    upgrade(url2)
    store2 = AudioStore(tmp_path / "audio2")
    with open_store(url2)() as s2:
        counts = import_pairs(s2, store2, out / TABLE_PATH, name="alpaca-v1", progress=False)
        s2.commit()
        assert counts.rows == 4 and counts.pairs_created == 4 and counts.captions_created == 3
        assert counts.clips_created == 7 and counts.converted == 0  # S1.1's winner is one clip
        pairs = s2.execute(select(Caption.text, Pair.strategy, Pair.source, Pair.winner_clip_id, Pair.loser_clip_id)
                           .join(Caption, Caption.id == Pair.caption_id).order_by(Pair.id)).all()
        assert [(p[0], p[1]) for p in pairs] == list(zip(exported["prompt"], exported["strategy"]))
        assert {p[2] for p in pairs} == {"import:alpaca-v1"}
        assert {c.source for c in s2.scalars(select(Caption))} == {"import:alpaca-v1"}
        clip = s2.get(AudioClip, pairs[0][3])
        assert (clip.generator, clip.checkpoint_id, clip.note) == ("import", "alpaca-v1", None)
        got = store2.read(clip.path).wave
        want, _ = sf.read(io.BytesIO(exported["chosen"][0]["bytes"]), dtype="float32")
        assert np.allclose(got, want, atol=1e-4)
        # idempotent: the same set again adds nothing
        again = import_pairs(s2, store2, out, name="alpaca-v1", progress=False)  # the folder form (parquet under it)
        s2.commit()
        assert again.pairs_created == 0 and again.pairs_existing == 4 and again.clips_created == 0
        assert table_counts(s2) == (3, 7, 4)


def test_csv_folder_with_resample_and_downmix(session, audio_store, tmp_path):
    folder = write_csv_set(tmp_path / "set", [
        ("a dog barks", wav_bytes(sr=44100, channels=2), wav_bytes(freq=300), "1.1"),
        ("a dog barks", wav_bytes(sr=44100, channels=2), wav_bytes(freq=500), "1.1"),
        ("a car passes", wav_bytes(freq=600), wav_bytes(freq=700), "2"),
    ])
    counts = import_pairs(session, audio_store, folder, progress=False)
    session.commit()
    assert (counts.rows, counts.pairs_created, counts.clips_created, counts.converted) == (3, 3, 5, 1)
    clip = session.scalars(select(AudioClip).where(AudioClip.note.is_not(None))).one()
    assert "resampled 44100→16000 Hz" in clip.note and "downmixed 2→1 channels" in clip.note
    assert clip.checkpoint_id == "set" and clip.sample_rate == 16000 and clip.num_samples == 9600
    assert sf.info(str(audio_store.resolve(clip.path))).samplerate == 16000
    assert {p.source for p in session.scalars(select(Pair))} == {"import:set"}


def test_parquet_with_paths_beside_the_file_and_strategy_default(session, audio_store, tmp_path):
    (tmp_path / "wav").mkdir()
    (tmp_path / "wav" / "w.wav").write_bytes(wav_bytes(freq=300))
    (tmp_path / "wav" / "l.wav").write_bytes(wav_bytes(freq=900))
    table = pa.table({"prompt": ["rain on a roof"], "chosen": ["wav/w.wav"],
                      "rejected": [{"bytes": None, "path": "wav/l.wav"}]})
    pq.write_table(table, tmp_path / "set.parquet")
    with pytest.raises(CuratorError, match="row 1 of set.parquet: no strategy.*--strategy-default"):
        import_pairs(session, audio_store, tmp_path / "set.parquet", progress=False)
    counts = import_pairs(session, audio_store, tmp_path / "set.parquet", name="ext", strategy_default="2",
                          progress=False)
    assert counts.pairs_created == 1
    assert session.scalar(select(Pair.strategy)) == "2"


def _bad_rows(tmp_path):
    good = (wav_bytes(freq=300), wav_bytes(freq=400))
    corrupt = b"RIFF\x00\x00\x00\x00WAVEnot really audio" + bytes(range(50))
    return {
        "missing": ([("ok", *good, "1.1"), ("a cat", None, wav_bytes(freq=500), "2")],
                    r"row 2 of pairs.csv \(line 3\) chosen: audio file .*1c.wav does not exist"),
        "empty": ([("ok", *good, "1.1"), ("a cat", wav_bytes(freq=500), b"", "2")],
                  r"row 2 .*rejected.* is empty"),
        "corrupt": ([("ok", *good, "1.1"), ("a cat", corrupt, wav_bytes(freq=500), "2")],
                    r"row 2 .*chosen.* is not audio"),
        "strategy": ([("ok", *good, "1.1"), ("a cat", *good, "7")], r"row 2 .*unknown strategy '7'"),
        "prompt": ([("ok", *good, "1.1"), ("   ", *good, "2")], r"row 2 .*empty prompt"),
        "long": ([("ok", *good, "1.1"), ("x" * 1001, *good, "2")], r"row 2 .*1001 characters"),
        "same": ([("ok", good[0], good[0], "1.1")], r"row 1 .*chosen and rejected are the same audio"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "strategy", "prompt", "long", "same"])
def test_bad_rows_name_the_row_and_write_nothing(case, session, audio_store, tmp_path):
    rows, message = _bad_rows(tmp_path)[case]
    folder = write_csv_set(tmp_path / case, rows)
    before = table_counts(session)
    with pytest.raises(CuratorError, match=message):
        import_pairs(session, audio_store, folder, progress=False)
    session.rollback()
    assert table_counts(session) == before


def test_bad_paths(session, audio_store, tmp_path):
    with pytest.raises(CuratorError, match="does not exist"):
        import_pairs(session, audio_store, tmp_path / "nope.parquet", progress=False)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(CuratorError, match="neither a .parquet nor a .csv"):
        import_pairs(session, audio_store, tmp_path / "x.txt", progress=False)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(CuratorError, match="not a readable parquet file"):
        import_pairs(session, audio_store, tmp_path / "bad.parquet", progress=False)
    pq.write_table(pa.table({"prompt": ["a"], "chosen": [b"x"]}), tmp_path / "cols.parquet")
    with pytest.raises(CuratorError, match="missing column.*rejected"):
        import_pairs(session, audio_store, tmp_path / "cols.parquet", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CuratorError, match="no CSV and no parquet"):
        import_pairs(session, audio_store, tmp_path / "empty", progress=False)
    with pytest.raises(CuratorError, match="--strategy-default '4' is unknown"):
        import_pairs(session, audio_store, tmp_path / "empty", strategy_default="4", progress=False)


def test_imported_pairs_get_scores_once_scored(session, audio_store, tmp_path):
    """build_pairs leaves imported clips' groups alone but fills PairScore for imported pairs."""
    from builders.pairs import add_models, add_score

    folder = write_csv_set(tmp_path / "s", [("a bell rings", wav_bytes(freq=300), wav_bytes(freq=800), "2")])
    import_pairs(session, audio_store, folder, progress=False)
    models = add_models(session)
    cap = session.scalar(select(Caption))
    for clip, vals in zip(session.scalars(select(AudioClip).order_by(AudioClip.slot)), ((0.7, 0.8), (0.5, 0.3))):
        for m, v in zip(models, vals):
            add_score(session, clip, cap, m, v)
    session.commit()
    counts = build_pairs(session, progress=False)
    assert counts.total_created == 0 and counts.pair_scores_added == 2


def test_cli_import(store_url, tmp_path):
    folder = write_csv_set(tmp_path / "set", [("a dog barks", wav_bytes(freq=300), wav_bytes(freq=500), "1.2")])
    args = ["import-pairs", str(folder), "--name", "ext", "--db", store_url, "--audio-root", str(tmp_path / "a")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "imported 1 rows: 1 new pairs" in res.output
    res = runner.invoke(app, args)
    assert "0 new pairs (1 already there)" in res.output
    bad = write_csv_set(tmp_path / "bad", [("a cat", wav_bytes(freq=300), wav_bytes(freq=500), "9")])
    res = runner.invoke(app, ["import-pairs", str(bad), "--db", store_url, "--audio-root", str(tmp_path / "a")])
    assert res.exit_code == 2 and "unknown strategy '9'" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("value, want", [("1.1", "1.1"), ("S1.2", "1.2"), ("strategy 2", "2"), ("Strategy_3", "3"),
                                         (3, "3"), (2.0, "2"), (1.1, "1.1")])
def test_strategy_spellings(value, want):
    from curator.import_pairs import _strategy

    assert _strategy(value, None, "row 1") == want


@pytest.mark.parametrize("value", ["1", "4", "1.3", "x2", 2.5])
def test_unknown_strategy_spellings(value):
    from curator.import_pairs import _strategy

    with pytest.raises(CuratorError, match="row 1: unknown strategy"):
        _strategy(value, None, "row 1")


def test_import_a_datasets_folder_and_an_unreachable_id(session, audio_store, store_url, tmp_path, monkeypatch):
    """The published layout through `datasets` (a save_to_disk folder: the offline copy of
    declare-lab/audio-alpaca) imports like the parquet it was made from."""
    import datasets.config
    import huggingface_hub.constants

    from trainer.synthetic import write_datasets_folder, write_export

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    parquet = write_export(tmp_path / "src.parquet", 4, duration_s=0.6)  # imports refuse clips under 0.5 s
    folder = write_datasets_folder(parquet, tmp_path / "audio-alpaca")
    counts = import_pairs(session, audio_store, folder, progress=False)
    session.commit()
    assert (counts.rows, counts.pairs_created, counts.clips_created) == (4, 4, 8)
    rows = session.execute(select(Caption.text, Pair.strategy, Pair.source).join(Caption, Caption.id == Pair.caption_id)
                           .order_by(Pair.id)).all()
    src = pq.read_table(parquet).to_pydict()
    assert [(r[0], r[1]) for r in rows] == list(zip(src["prompt"], src["strategy"]))
    assert {r[2] for r in rows} == {"import:audio-alpaca"}
    again = import_pairs(session, audio_store, parquet, name="audio-alpaca", progress=False)  # the same clips
    assert again.pairs_created == 0 and again.pairs_existing == 4

    res = runner.invoke(app, ["import-pairs", "declare-lab/audio-alpaca", "--db", store_url,
                              "--audio-root", str(tmp_path / "a")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "import declare-lab/audio-alpaca: the datasets id cannot be fetched" in res.output
