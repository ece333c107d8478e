"""What a careless user types: every such error is one line with exit status 2, bad audio and text
are refused at the door (on SQLite and PostgreSQL), a new SQLite store is private, and a set
imported without scores can go straight into the audit queue."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from curator.audio import AudioStore
from curator.cli import app
from db.errors import CuratorError
from curator.import_pairs import import_pairs
from db.models import AudioClip, Caption, Pair
from db.session import make_engine, open_store, upgrade
from trainer.cli import app as trainer_app

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def one_line_exit_2(res, *needles: str) -> str:
    out = res.output.strip()
    assert res.exit_code == 2, (res.exit_code, out[-2000:])
    assert len(out.splitlines()) == 1 and "Traceback" not in out, out[-2000:]
    for n in needles:
        assert n in out, out
    return out


def wav(seconds=0.6, freq=440.0, sr=16000, subtype="PCM_16", wave=None) -> bytes:
    if wave is None:
        t = np.arange(int(seconds * sr)) / sr
        wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def csv_set(folder: Path, rows, encoding="utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["prompt,chosen,rejected,strategy"]
    for i, (prompt, chosen, rejected) in enumerate(rows):
        (folder / f"c{i}.wav").write_bytes(chosen)
        (folder / f"r{i}.wav").write_bytes(rejected)
        lines.append(f'"{prompt}",c{i}.wav,r{i}.wav,2')
    (folder / "pairs.csv").write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return folder


def test_every_user_error_is_one_line_with_exit_2(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(db)
    root = str(tmp_path / "audio")
    # import-pairs on a CSV with non-UTF-8 bytes
    folder = csv_set(tmp_path / "latin1", [("a café barks", wav(freq=300), wav(freq=500))], encoding="latin-1")
    one_line_exit_2(runner.invoke(app, ["import-pairs", str(folder), "--db", db, "--audio-root", root]),
                    "pairs.csv is not UTF-8 text (byte 0xe9")
    (tmp_path / "caps.txt").write_bytes(b"a dog barks\na caf\xe9 opens\n")
    one_line_exit_2(runner.invoke(app, ["captions", "import", str(tmp_path / "caps.txt"), "--db", db]), "not UTF-8")
    # --db pointing at a file that is not a database, or at a folder
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    for args in (["stats"], ["db", "upgrade"], ["db", "current"], ["export", str(tmp_path / "e")]):
        one_line_exit_2(runner.invoke(app, [*args, "--db", f"sqlite:///{junk}"]), "is not a database")
    (tmp_path / "dir.db").mkdir()
    one_line_exit_2(runner.invoke(app, ["stats", "--db", f"sqlite:///{tmp_path / 'dir.db'}"]), "cannot reach store")
    # a store stamped by a newer studio: upgrade, downgrade and every other command say so
    newer = f"sqlite:///{tmp_path / 'newer.db'}"
    upgrade(newer)
    with make_engine(newer).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    for args in (["db", "upgrade"], ["stats"], ["db", "downgrade", "0003"], ["users", "list"]):
        out = one_line_exit_2(runner.invoke(app, [*args, "--db", newer]),
                              "is at revision 0099, newer than this version of the studio")
        assert "run `curator db upgrade" not in out
    # db downgrade to a revision that does not exist
    one_line_exit_2(runner.invoke(app, ["db", "downgrade", "zzz", "--db", db]), "revision 'zzz' is unknown")
    # trainer run --out naming an existing regular file; --config with non-UTF-8 bytes
    plain = tmp_path / "notes.txt"
    plain.write_text("keep me")
    one_line_exit_2(runner.invoke(trainer_app, ["run", "--model", "tiny", "--data", str(tmp_path), "--out", str(plain)]),
                    "is a file, not a run folder")
    assert plain.read_text() == "keep me"
    bad_cfg = tmp_path / "cfg.toml"
    bad_cfg.write_bytes(b'model = "tiny"\nnote = "\xff\xfe"\n')
    one_line_exit_2(runner.invoke(trainer_app, ["run", "--config", str(bad_cfg), "--out", str(tmp_path / "run")]),
                    "config file", "is not UTF-8 text")
    # a 100 KB value is quoted by its first characters only
    out = one_line_exit_2(runner.invoke(app, ["stats", "--preset", "p" * 100_000, "--db", db]))
    assert len(out) < 400


def test_corrupt_audio_is_one_line_without_library_warnings(tmp_path):
    """A real process (warnings go to its stderr): a WAV of garbage after a RIFF header used to print
    libsndfile/librosa warnings before the error."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(db)
    folder = csv_set(tmp_path / "set", [("a dog barks", b"RIFF" + bytes(range(256)) * 20, wav(freq=500))])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "curator", "import-pairs", str(folder), "--db", db,
                          "--audio-root", str(tmp_path / "audio")], capture_output=True, text=True, env=env, timeout=300)
    shown = re.sub(r"import set: [^\]]*\]", "", res.stderr.replace("\r", "\n"))  # without the progress bar
    err = [ln for ln in shown.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(err) == 1, res.stderr
    assert err[0].startswith("error: audio file row 1 of pairs.csv") and "is not audio (or is corrupt)" in err[0]
    assert err[0].endswith("Format not recognised.") and "BytesIO" not in err[0]
    assert "Warning" not in res.stderr and "audioread" not in res.stderr


def test_bad_audio_and_text_are_refused_at_the_door(store_url, tmp_path):
    """The probe's truncated WAV (100 bytes: a 1.75 ms clip), silence, NaN and control characters: each
    refused with its name, and nothing is written, on both back ends."""
    store = AudioStore(tmp_path / "audio")
    good = (wav(freq=300), wav(freq=500))
    truncated = wav(seconds=10.24, freq=350)[:100]
    nan_wave = np.full(16000, np.nan, dtype=np.float32)
    cases = {
        "truncated": ([("a dog barks", truncated, good[1])], "ms long, shorter than the minimum of 0.5 s"),
        "short": ([("a dog barks", wav(seconds=0.3, freq=320), good[1])], "300.0 ms long"),
        "silent": ([("a dog barks", wav(wave=np.zeros(16000, np.float32)), good[1])], "is silent"),
        "nan": ([("a dog barks", wav(wave=nan_wave, subtype="FLOAT"), good[1])], "NaN"),
        "nul": ([("a dog\x00 barks", *good)], "control character U+0000"),
        "escape": ([("a dog \x1b[31mbarks", *good)], "control character U+001B"),
    }
    for name, (rows, needle) in cases.items():
        folder = csv_set(tmp_path / name, [("a cat meows", wav(freq=600), wav(freq=700)), *rows])
        with open_store(store_url)() as s:
            with pytest.raises(CuratorError, match=re.escape(needle)) as info:
                import_pairs(s, store, folder, progress=False)
            assert "row 2 of pairs.csv" in str(info.value), name
            s.rollback()
            assert s.scalar(select(func.count()).select_from(Pair)) == 0
            assert s.scalar(select(func.count()).select_from(Caption)) == 0
    # captions import: a NUL (or DEL) in a caption line is refused, naming the line
    from curator.captions import import_captions

    for ch, code in (("\x00", "U+0000"), ("\x7f", "U+007F"), ("\x0c", "U+000C")):
        path = tmp_path / f"caps{ord(ch)}.txt"
        path.write_text(f"a dog barks\nrain{ch} falls\n", encoding="utf-8")
        with open_store(store_url)() as s:
            with pytest.raises(CuratorError, match=re.escape(f"line 2: caption holds the control character {code}")):
                import_captions(s, path)
            s.rollback()
            assert s.scalar(select(func.count()).select_from(Caption)) == 0
    # tabs and line breaks inside a quoted CSV field stay white space, as before
    ok = csv_set(tmp_path / "ok", [("a dog\tbarks", *good)])
    with open_store(store_url)() as s:
        assert import_pairs(s, store, ok, progress=False).pairs_created == 1
        s.commit()
        assert s.scalar(select(Caption.text)) == "a dog barks"


def test_new_sqlite_store_is_private(tmp_path):
    path = tmp_path / "fresh.db"
    res = runner.invoke(app, ["db", "upgrade", "--db", f"sqlite:///{path}"])
    assert res.exit_code == 0, res.output
    for p in [path, *tmp_path.glob("fresh.db-*")]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    existing = tmp_path / "shared.db"  # a file the operator made: its mode is theirs
    existing.touch(mode=0o640)
    existing.chmod(0o640)
    upgrade(f"sqlite:///{existing}")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640


def test_imported_pairs_without_scores_can_be_queued(store_url, tmp_path):
    """import-pairs brings no CLAP scores; random mode queues its pairs at once, and raters get them."""
    from annotate_ui.logic import audit, tuning
    from annotate_ui.logic.auth import AuthUser
    from db.annotation import User

    store = AudioStore(tmp_path / "audio")
    folder = csv_set(tmp_path / "set", [(f"sound number {i}", wav(freq=300 + 10 * i), wav(freq=800 + 10 * i))
                                        for i in range(5)])
    with open_store(store_url)() as s:
        import_pairs(s, store, folder, progress=False)
        admin = User(name="boss", role="admin", password_hash="x")
        rater = User(name="r", role="rater", password_hash="x")
        s.add_all([admin, rater])
        s.flush()
        data = tuning.TuningData.load(s, (None, None))
        assert len(data.table) == 0  # no scores: the threshold view has nothing
        th = tuning.thresholds_from_sliders(0.45, 0.6, 0.4, 0, 0.05, 0.35, 0.08, 0.7)
        with pytest.raises(CuratorError, match="no scored pairs"):
            tuning.fill_queue(s, data.table, th, n=3, mode="uncertain", added_by="boss")
        assert tuning.fill_queue(s, data.table, th, n=3, mode="random", added_by="boss", seed=1) == 3
        assert tuning.fill_queue(s, data.table, th, n=10, mode="random", added_by="boss", seed=1) == 2
        s.commit()
        task = audit.next_assignment(s, AuthUser(rater.id, rater.name, rater.role))
        assert task is not None and task.caption.startswith("sound number")
        assert {c.generator for c in s.scalars(select(AudioClip))} == {"import"}
