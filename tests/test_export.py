"""Audio-alpaca export: parquet layout, datasets 3.6 loads it with Audio features, reproducible, manifest, atomic."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from sqlalchemy import func, select
from typer.testing import CliRunner

from curator.cli import app
from db.errors import CuratorError
from curator.export import MANIFEST, TABLE_PATH, export_audio_alpaca, read_table, sha256_file, verify_export
from curator.filter import Thresholds, save_preset
from curator.pairs import build_pairs
from db.models import AudioClip, Export
from db.session import open_store
from builders.pairs import paper_world

runner = CliRunner()


@pytest.fixture
def built(session, audio_store):
    paper_world(session, audio_store)
    build_pairs(session, progress=False)
    session.commit()
    return session


def test_export_table_and_datasets_load(built, audio_store, store_url, tmp_path):
    out = export_audio_alpaca(built, audio_store, tmp_path / "alpaca", db_url=store_url, audio="both", progress=False)
    built.commit()
    table = read_table(out)
    assert table.column_names[:5] == ["prompt", "chosen", "rejected", "strategy", "pair_id"]
    assert {"score_chosen_judge_a", "score_rejected_judge_a", "score_chosen_judge_b",
            "score_rejected_judge_b"} <= set(table.column_names)
    assert table.num_rows == 4
    assert table.column("strategy").to_pylist() == ["1.1", "1.1", "2", "3"]
    meta = json.loads(pq.read_schema(out / TABLE_PATH).metadata[b"huggingface"])
    assert meta["info"]["features"]["chosen"] == {"sampling_rate": 16000, "_type": "Audio"} or \
        meta["info"]["features"]["chosen"]["_type"] == "Audio"
    # scores are the clips' scores: chosen > rejected under both models for every kept pair
    d = table.to_pydict()
    for m in ("judge_a", "judge_b"):
        assert all(w > lo for w, lo in zip(d[f"score_chosen_{m}"], d[f"score_rejected_{m}"]))
    row3 = d["prompt"].index("a man speaks then a door closes")
    assert (d["score_chosen_judge_a"][row3], d["score_rejected_judge_b"][row3]) == (0.70, 0.30)

    from datasets import Audio, load_dataset

    ds = load_dataset("parquet", data_files=str(out / TABLE_PATH), split="train", cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds.features["chosen"], Audio) and ds.features["chosen"].sampling_rate == 16000
    assert isinstance(ds.features["rejected"], Audio)
    ex = ds[0]
    assert ex["chosen"]["sampling_rate"] == 16000 and ex["chosen"]["array"].ndim == 1
    assert len(ex["chosen"]["array"]) == 800
    # the embedded audio is the exported file, which is the stored clip
    chosen_rel = d["chosen"][0]["path"]
    wave, sr = sf.read(out / chosen_rel)
    assert sr == 16000 and np.allclose(wave, ex["chosen"]["array"], atol=1e-4)
    assert (out / chosen_rel).read_bytes() == d["chosen"][0]["bytes"]
    # the folder loads as a dataset too (README configs point at data/)
    ds2 = load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf2"))
    assert ds2.num_rows == 4 and isinstance(ds2.features["chosen"], Audio)


def test_manifest_hashes_counts_and_export_row(built, audio_store, tmp_path):
    out = export_audio_alpaca(built, audio_store, tmp_path / "a", db_url="postgresql://ana:s3cret@db.example/curator",
                              audio="both", progress=False)
    built.commit()
    manifest = verify_export(out)
    assert manifest["counts"] == {"1.1": 2, "1.2": 0, "2": 1, "3": 1, "total": 4}
    assert manifest["candidates"]["total"] == 8
    assert manifest["preset"]["name"] == "paper" and manifest["preset"]["alpha2"] == 0.6
    assert "s3cret" not in json.dumps(manifest) and manifest["store"].startswith("postgresql+psycopg://ana")
    assert manifest["code_version"]["curator"]
    files = manifest["files"]
    assert TABLE_PATH in files and "README.md" in files
    assert sum(k.startswith("audio/") for k in files) == 7  # 4 pairs, S1.1 shares its winner
    for rel, sha in files.items():
        assert sha256_file(out / rel) == sha
    row = built.scalar(select(Export))
    assert row.n_pairs == 4 and row.table_sha256 == files[TABLE_PATH] and row.preset_name == "paper"
    # tampering is detected
    (out / "README.md").write_text("changed")
    with pytest.raises(CuratorError, match="README.md does not match"):
        verify_export(out)


@pytest.mark.parametrize("layout", ["embedded", "files"])
def test_each_clip_is_stored_once_and_the_trainer_reads_it(layout, built, audio_store, store_url, tmp_path):
    from trainer.data import load_export

    out = export_audio_alpaca(built, audio_store, tmp_path / layout, db_url=store_url, audio=layout, progress=False)
    manifest = verify_export(out)
    assert manifest["audio"] == layout
    cells = read_table(out).column("chosen").to_pylist()
    if layout == "embedded":
        assert not (out / "audio").exists() and all(c["bytes"] and "/" not in c["path"] for c in cells)
    else:
        assert all(c["bytes"] is None and (out / c["path"]).is_file() for c in cells)
        assert sum(k.startswith("audio/") for k in manifest["files"]) == 7
    pairs = load_export(out)
    assert len(pairs.pairs) == 4
    wanted = {p.chosen_sha for p in pairs.pairs}
    got = {sha for sha, data, _ in pairs.clips(wanted) if data[:4] == b"RIFF"}
    assert got == wanted


def test_bad_audio_layout_is_one_line(built, audio_store, store_url, tmp_path):
    with pytest.raises(CuratorError, match="--audio 'zip'"):
        export_audio_alpaca(built, audio_store, tmp_path / "z", db_url=store_url, audio="zip", progress=False)
    assert not (tmp_path / "z").exists()


def test_export_is_reproducible(built, audio_store, store_url, tmp_path):
    a = export_audio_alpaca(built, audio_store, tmp_path / "a", db_url=store_url, progress=False)
    b = export_audio_alpaca(built, audio_store, tmp_path / "b", db_url=store_url, progress=False)
    assert (a / TABLE_PATH).read_bytes() == (b / TABLE_PATH).read_bytes()
    ma, mb = (json.loads((p / MANIFEST).read_text()) for p in (a, b))
    assert ma["files"] == mb["files"]


def test_export_other_preset(built, audio_store, store_url, tmp_path):
    save_preset(built, "loose", Thresholds(delta2_min=0.0), author="ana")
    built.commit()
    out = export_audio_alpaca(built, audio_store, tmp_path / "l", preset_name="loose", db_url=store_url,
                              progress=False)
    assert read_table(out).num_rows == 7


def test_existing_out_refused_then_forced(built, audio_store, store_url, tmp_path):
    out = tmp_path / "x"
    export_audio_alpaca(built, audio_store, out, db_url=store_url, progress=False)
    (out / "stale.txt").write_text("left from before")
    with pytest.raises(CuratorError, match="already exists.*--force"):
        export_audio_alpaca(built, audio_store, out, db_url=store_url, progress=False)
    export_audio_alpaca(built, audio_store, out, db_url=store_url, force=True, progress=False)
    assert not (out / "stale.txt").exists() and (out / MANIFEST).is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_force_replaces_only_a_previous_export(built, audio_store, store_url, tmp_path):
    """--force on a folder of unrelated files, a regular file, or a folder whose manifest.json is not
    an export's: one line, and every byte left where it was."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8 a cat")
    plain = tmp_path / "notes.txt"
    plain.write_text("my notes")
    fake = tmp_path / "other"
    fake.mkdir()
    (fake / MANIFEST).write_text('{"name": "some other tool"}')
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_bytes(b"\xff\xfe not json")
    for target in (folder, plain, fake, broken):
        before = {p: p.read_bytes() for p in ([target] if target.is_file() else target.rglob("*"))}
        with pytest.raises(CuratorError, match="replaces only") as info:
            export_audio_alpaca(built, audio_store, target, db_url=store_url, force=True, progress=False)
        assert "\n" not in str(info.value)
        assert {p: p.read_bytes() for p in before} == before
    res = runner.invoke(app, ["export", str(folder), "--force", "--db", store_url, "--audio-root", str(audio_store.root)])
    assert res.exit_code == 2 and "replaces only" in res.output and len(res.output.strip().splitlines()) == 1
    assert (folder / "cat.jpg").read_bytes() == b"\xff\xd8 a cat"


def test_stale_temp_folders_of_a_killed_export_are_removed(built, audio_store, store_url, tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: what a kill -9 leaves
    out = tmp_path / "ds"
    stale = tmp_path / f".ds.tmp-{dead.pid}-0123abcd"
    (stale / "data").mkdir(parents=True)
    (stale / "data" / "half.parquet").write_bytes(b"x" * 1000)
    old = tmp_path / f".ds.old-{dead.pid}-89abcdef"
    old.mkdir()
    live = tmp_path / f".ds.tmp-{os.getppid()}-fedcba98"  # a run still going (a live process): kept
    live.mkdir()
    other = tmp_path / f".elsewhere.tmp-{dead.pid}-0123abcd"  # another export's: not ours to touch
    other.mkdir()
    export_audio_alpaca(built, audio_store, out, db_url=store_url, progress=False)
    assert not stale.exists() and not old.exists()
    assert live.exists() and other.exists() and (out / MANIFEST).is_file()


def test_export_into_a_read_only_folder_is_one_line(built, audio_store, store_url, tmp_path, monkeypatch):
    import pathlib

    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse as a read-only mount would
        real_mkdir = pathlib.Path.mkdir

        def mkdir(self, *args, **kwargs):
            if locked in self.parents:
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    try:
        with pytest.raises(CuratorError, match="cannot write the export beside .*: Permission denied"):
            export_audio_alpaca(built, audio_store, locked / "out", db_url=store_url, progress=False)
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def test_missing_clip_file_leaves_nothing(built, audio_store, store_url, tmp_path):
    clip = built.scalars(select(AudioClip).order_by(AudioClip.id)).first()
    audio_store.resolve(clip.path).unlink()
    with pytest.raises(CuratorError, match=f"clip {clip.id} is missing"):
        export_audio_alpaca(built, audio_store, tmp_path / "gone", db_url=store_url, progress=False)
    assert list(tmp_path.glob("*gone*")) == [] and list(tmp_path.glob(".gone*")) == []
    assert built.scalar(select(func.count()).select_from(Export)) == 0


def test_preset_keeping_nothing_is_one_line(built, audio_store, store_url, tmp_path):
    save_preset(built, "none", Thresholds(alpha1=0.99), author="x")
    with pytest.raises(CuratorError, match="keeps no pairs of 8"):
        export_audio_alpaca(built, audio_store, tmp_path / "n", preset_name="none", db_url=store_url, progress=False)


def test_resampled_store_clip_is_exported_at_16k(built, audio_store, store_url, tmp_path):
    # a clip kept at 48 kHz in the store is written at 16 kHz
    clip = built.scalars(select(AudioClip).where(AudioClip.strategy == "3", AudioClip.slot == 0)).one()
    wave = np.sin(np.linspace(0, 200, 4800)).astype(np.float32) * 0.2
    buf = io.BytesIO()
    sf.write(buf, wave, 48000, format="WAV", subtype="PCM_16")
    sha, rel = audio_store.put_bytes(buf.getvalue())
    clip.path, clip.sample_rate = rel, 48000
    built.commit()
    out = export_audio_alpaca(built, audio_store, tmp_path / "r", db_url=store_url, progress=False)
    d = read_table(out).to_pydict()
    i = d["strategy"].index("3")
    data, sr = sf.read(io.BytesIO(d["chosen"][i]["bytes"]))
    assert sr == 16000 and len(data) == 1600


def test_cli_export(store_url, tmp_path):
    from curator.audio import AudioStore

    factory = open_store(store_url)
    root = tmp_path / "audio"
    with factory() as s:
        paper_world(s, AudioStore(root))
        build_pairs(s, progress=False)
        s.commit()
    out = tmp_path / "cli-out"
    args = ["export", str(out), "--db", store_url, "--audio-root", str(root)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "exported 4 pairs" in res.output
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(app, [*args, "--force", "--preset", "ghost"])
    assert res.exit_code == 2 and "'ghost' does not exist" in res.output


class FakeHub:
    """Stands in for huggingface_hub.HfApi: records the calls and copies the uploaded folder into
    REMOTE/<repo>, so the test reads back what would have been pushed."""

    def __init__(self, remote, refuse=None, **kw):
        self.remote, self.refuse, self.calls = remote, refuse, []

    def create_repo(self, repo_id, *, repo_type, private, exist_ok):
        self.calls.append(("create_repo", repo_id, repo_type, private, exist_ok))
        if self.refuse:
            raise self.refuse

    def upload_folder(self, *, folder_path, repo_id, repo_type, commit_message):
        import shutil
        from pathlib import Path

        self.calls.append(("upload_folder", repo_id, repo_type, commit_message))
        shutil.copytree(folder_path, Path(self.remote) / repo_id, dirs_exist_ok=True)
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/datasets/{repo_id}/commit/abc"})()


def test_push_to_hub_uploads_the_verified_export(built, audio_store, store_url, tmp_path):
    from curator.export import push_export
    from trainer.data import load_export

    out = export_audio_alpaca(built, audio_store, tmp_path / "alpaca", db_url=store_url, progress=False)
    hub = FakeHub(tmp_path / "remote")
    url = push_export(out, "me/my-alpaca", private=True, api=hub)
    assert url == "https://huggingface.co/datasets/me/my-alpaca/commit/abc"
    assert hub.calls[0] == ("create_repo", "me/my-alpaca", "dataset", True, True)
    assert hub.calls[1][:3] == ("upload_folder", "me/my-alpaca", "dataset") and "4 pairs" in hub.calls[1][3]
    pushed = tmp_path / "remote" / "me" / "my-alpaca"
    assert verify_export(pushed)["n_pairs"] == 4 and len(load_export(pushed).pairs) == 4

    # a damaged export is not uploaded; a bad repo id and a refusing hub are one line
    (out / TABLE_PATH).write_bytes(b"changed")
    hub2 = FakeHub(tmp_path / "remote2")
    with pytest.raises(CuratorError, match="does not match its sha256"):
        push_export(out, "me/x", api=hub2)
    assert hub2.calls == []
    with pytest.raises(CuratorError, match="expected a hub dataset id OWNER/NAME"):
        push_export(out, "no-owner", api=hub2)


def test_cli_export_push_to_hub(store_url, tmp_path, monkeypatch):
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    from curator.audio import AudioStore

    with open_store(store_url)() as s:
        paper_world(s, AudioStore(tmp_path / "audio"))
        build_pairs(s, progress=False)
        s.commit()
    made = []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: made.append(FakeHub(tmp_path / "remote")) or made[-1])
    args = ["export", str(tmp_path / "out"), "--db", store_url, "--audio-root", str(tmp_path / "audio"),
            "--push-to-hub", "lab/alpaca"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "uploaded" in res.output and "lab/alpaca/commit/abc" in res.output
    assert (tmp_path / "remote" / "lab" / "alpaca" / MANIFEST).is_file() and not made[0].calls[0][3]

    refusal = HfHubHTTPError("403 Forbidden: you have no write access to lab/alpaca",
                             response=httpx.Response(403, request=httpx.Request("POST", "https://huggingface.co")))
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: FakeHub(tmp_path / "r", refuse=refusal))
    try:
        res = runner.invoke(app, ["--quiet", *args, "--force"])  # --quiet: no progress bar in the output
    finally:
        from curator.cli.common import set_quiet

        set_quiet(False)
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 2, res.output  # export line, one error
    assert "error: --push-to-hub lab/alpaca: the hub refused the upload (403 Forbidden" in res.output
    res = runner.invoke(app, ["export", str(tmp_path / "o2"), "--db", store_url, "--private"])
    assert res.exit_code == 2 and "--private goes with --push-to-hub" in res.output
