"""Export the pairs a preset keeps as an Audio-alpaca dataset (arXiv 2404.09956 §4.1.2; declare-lab/audio-alpaca).

Layout of OUT/ (written to a temporary folder beside OUT, then renamed):

    data/train-00000-of-00001.parquet   prompt, chosen, rejected, strategy, pair_id,
                                         score_chosen_<model>, score_rejected_<model> per model
    audio/<sha256>.wav                   every clip of the table, 16 kHz mono (audio "files"/"both")
    README.md                            dataset card whose `configs` point at data/
    manifest.json                        preset, store URL (no password), counts, file sha256s, time, version

`chosen` / `rejected` are stored the way every `datasets` version reads audio: a struct
{bytes, path} column, with the `datasets`
Features in the parquet schema metadata (key "huggingface"), so
`load_dataset("parquet", data_files=...)` yields Audio features at 16 kHz. The table holds no
timestamps and rows are ordered by strategy then pair id, so the same store and preset give a
byte-identical parquet file.

Where the audio lives (`audio=`, `curator export --audio`), each clip stored once:
- "embedded" (default, as the published Audio-alpaca): the WAV bytes in the parquet, `path` the
  file name for reference; no audio/ folder. One self-contained table any `datasets` loads.
- "files": audio/<sha256>.wav files, the cells path-only (relative to OUT); a small table for
  large sets. `trainer run` and `curator import-pairs` resolve the paths against OUT; `datasets`
  needs OUT as the working directory to decode them.
- "both": bytes in the table and the files (two copies; for tools that want either).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

import curator
from curator import filter as flt
from curator.audio import SAMPLE_RATE, AudioStore, atomic_write_bytes, encode_wav
from db.errors import CuratorError
from curator.fsutil import remove_stale_siblings, temp_sibling
from db.models import AudioClip, Caption, ClapModel, Export, Pair, PairScore
from db.session import safe_url

TABLE_PATH = "data/train-00000-of-00001.parquet"
AUDIO_DIR = "audio"
MANIFEST = "manifest.json"
ROW_GROUP = 256  # rows per parquet row group (audio bytes are embedded; keeps memory flat)
AUDIO_LAYOUTS = ("embedded", "files", "both")

_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
---
# Audio-alpaca export

Preference pairs for text-to-audio DPO (Tango 2, arXiv 2404.09956), exported by the
Audio-alpaca curation studio with preset `{preset}`: {n} pairs ({counts}).
Columns: `prompt`, `chosen` (audio, 16 kHz), `rejected` (audio, 16 kHz), `strategy`, `pair_id`,
and the CLAP scores of the chosen and rejected clip under each model. See manifest.json.
"""


def score_column(kind: str, model_name: str) -> str:
    """`score_chosen_<model>` / `score_rejected_<model>` (model name with non-word characters as _)."""
    return f"score_{kind}_{re.sub(r'[^0-9A-Za-z_]+', '_', model_name)}"


def features_for(model_names: list[str]):
    """The `datasets` Features of the table."""
    from datasets import Audio, Features, Value

    cols = {"prompt": Value("string"), "chosen": Audio(sampling_rate=SAMPLE_RATE),
            "rejected": Audio(sampling_rate=SAMPLE_RATE), "strategy": Value("string"), "pair_id": Value("int64")}
    for name in model_names:
        cols[score_column("chosen", name)] = Value("float64")
        cols[score_column("rejected", name)] = Value("float64")
    return Features(cols)


def code_version() -> dict:
    """curator.__version__ and the git commit of the checkout, when there is one."""
    version = {"curator": curator.__version__, "git_commit": None}
    root = Path(curator.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
        if out.returncode == 0:
            version["git_commit"] = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _clip_bytes(audio_store: AudioStore, clip: AudioClip) -> bytes:
    """The clip's WAV bytes at 16 kHz (clips stored at another rate are resampled on the way out)."""
    path = audio_store.resolve(clip.path)
    if not path.is_file():
        raise CuratorError(f"audio file {path} of clip {clip.id} is missing from the audio store")
    data = path.read_bytes()
    if clip.sample_rate != SAMPLE_RATE or not clip.path.endswith(".wav"):
        decoded = audio_store.read(clip.path, target_sr=SAMPLE_RATE)
        data = encode_wav(decoded.wave, SAMPLE_RATE)
    return data


def export_audio_alpaca(session: Session, audio_store: AudioStore, out_dir: str | Path, *,
                        preset_name: str = flt.DEFAULT_PRESET, db_url: str, force: bool = False,
                        audio: str = "embedded", progress: bool = True) -> Path:
    """Write the pairs PRESET_NAME keeps to OUT_DIR (atomically) and record an Export row (flushed).
    AUDIO: where the clips go (see the module docstring)."""
    if audio not in AUDIO_LAYOUTS:
        raise CuratorError(f"--audio {audio!r}: expected one of {', '.join(AUDIO_LAYOUTS)}")
    out = Path(out_dir).resolve()
    if out.exists() and not force:
        raise CuratorError(f"export folder {out} already exists (use --force to replace it)")
    if out.exists():
        check_replaceable(out)
    if not out.parent.is_dir():
        raise CuratorError(f"export folder's parent {out.parent} does not exist")
    remove_stale_siblings(out)  # temp folders of killed exports to OUT

    # 1. Which pairs: the preset's mask over the pool, in table order (strategy, pair id)
    preset = flt.get_preset(session, preset_name)
    thresholds = flt.thresholds_of(preset)
    table = flt.load_preset_table(session, preset)
    mask = flt.keep_mask(table, thresholds)
    counts = flt.strategy_counts(table, mask)
    if counts["total"] == 0:
        raise CuratorError(f"preset {preset.name!r} keeps no pairs of {len(table)}: nothing to export")
    pair_ids = table.pair_id[mask]

    # 2. Rows: pairs, captions, clips, every model's scores
    models = session.scalars(select(ClapModel).order_by(ClapModel.position, ClapModel.id)).all()
    model_names = [m.name for m in models]
    features = features_for(model_names)
    schema = features.arrow_schema
    pairs: dict[int, Pair] = {}
    for start in range(0, len(pair_ids), 5000):
        chunk = [int(x) for x in pair_ids[start:start + 5000]]
        pairs.update({p.id: p for p in session.scalars(select(Pair).where(Pair.id.in_(chunk)))})
    scores: dict[tuple[int, int], tuple[float, float]] = {}
    for start in range(0, len(pair_ids), 5000):
        chunk = [int(x) for x in pair_ids[start:start + 5000]]
        for pid, mid, ws, ls in session.execute(select(PairScore.pair_id, PairScore.model_id, PairScore.winner_score,
                                                       PairScore.loser_score).where(PairScore.pair_id.in_(chunk))):
            scores[(pid, mid)] = (ws, ls)
    clip_ids = sorted({c for p in pairs.values() for c in (p.winner_clip_id, p.loser_clip_id)})
    clips: dict[int, AudioClip] = {}
    for start in range(0, len(clip_ids), 5000):
        clips.update({c.id: c for c in session.scalars(select(AudioClip).where(
            AudioClip.id.in_(clip_ids[start:start + 5000])))})
    caption_ids = sorted({p.caption_id for p in pairs.values()})
    captions: dict[int, str] = {}
    for start in range(0, len(caption_ids), 5000):
        captions.update(dict(session.execute(select(Caption.id, Caption.text).where(
            Caption.id.in_(caption_ids[start:start + 5000]))).all()))

    # 3. Write everything into a temporary folder beside OUT
    tmp = temp_sibling(out)
    try:
        (tmp / "data").mkdir(parents=True)
    except OSError as exc:
        raise CuratorError(f"cannot write the export beside {out}: {exc.strerror or exc}") from None
    try:
        if audio != "embedded":
            (tmp / AUDIO_DIR).mkdir()
        table_path = tmp / TABLE_PATH
        with pq.ParquetWriter(table_path, schema, compression="zstd") as writer:
            bar = tqdm(total=len(pair_ids), desc="export", unit="pair", disable=not progress)
            for start in range(0, len(pair_ids), ROW_GROUP):
                cols: dict[str, list] = {name: [] for name in schema.names}
                for pid in pair_ids[start:start + ROW_GROUP]:
                    pair = pairs[int(pid)]
                    cols["prompt"].append(captions[pair.caption_id])
                    for kind, clip_id in (("chosen", pair.winner_clip_id), ("rejected", pair.loser_clip_id)):
                        clip = clips[clip_id]
                        data = _clip_bytes(audio_store, clip)
                        rel = f"{AUDIO_DIR}/{hashlib.sha256(data).hexdigest()}.wav"
                        if audio != "embedded" and not (tmp / rel).exists():
                            (tmp / rel).write_bytes(data)
                        cols[kind].append({"bytes": None if audio == "files" else data,
                                           "path": rel if audio != "embedded" else rel.split("/")[-1]})
                    cols["strategy"].append(pair.strategy)
                    cols["pair_id"].append(int(pid))
                    for m in models:
                        ws, ls = scores.get((int(pid), m.id), (None, None))
                        cols[score_column("chosen", m.name)].append(ws)
                        cols[score_column("rejected", m.name)].append(ls)
                writer.write_table(pa.Table.from_pydict(cols, schema=schema))
                bar.update(len(cols["prompt"]))
            bar.close()
        shown = ", ".join(f"{k}: {v}" for k, v in counts.items() if k != "total")
        (tmp / "README.md").write_text(_CARD.format(preset=preset.name, n=counts["total"], counts=shown),
                                       encoding="utf-8")
        files = {str(p.relative_to(tmp).as_posix()): sha256_file(p)
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        table_sha = files[TABLE_PATH]
        manifest = {
            "format": "audio-alpaca",
            "table": TABLE_PATH,
            "n_pairs": counts["total"],
            "counts": counts,
            "candidates": flt.strategy_counts(table),
            "preset": flt.preset_dict(preset),
            "models": [{"name": m.name, "checkpoint": m.checkpoint, "file_hash": m.file_hash,
                        "position": m.position, "used_as": ("model1" if m.name == table.model_names[0] else
                                                            "model2" if m.name == table.model_names[1] else None)}
                       for m in models],
            "store": safe_url(db_url),
            "sample_rate": SAMPLE_RATE,
            "audio": audio,
            "files": files,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "code_version": code_version(),
        }
        atomic_write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8"))
        # 4. Swap into place
        if out.exists():
            old = temp_sibling(out, "old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    session.add(Export(path=str(out), preset_name=preset.name, n_pairs=counts["total"], table_sha256=table_sha,
                       manifest=manifest))
    session.flush()
    return out


def check_replaceable(out: Path) -> None:
    """--force replaces only what an export wrote: a folder whose manifest.json is an export's."""
    if out.is_symlink() or not out.is_dir():
        raise CuratorError(f"{out} is not a folder of a previous export; --force replaces only those (nothing was changed)")
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != "audio-alpaca" or "files" not in manifest:
        raise CuratorError(f"{out} holds no {MANIFEST} of a previous export; --force replaces only an earlier export "
                           "(remove it yourself or choose another folder; nothing was changed)")


def verify_export(out_dir: str | Path) -> dict:
    """Re-hash every file the manifest lists; raises CuratorError naming the first that differs."""
    out = Path(out_dir)
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        raise CuratorError(f"{out} has no {MANIFEST}: not an export")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for rel, sha in manifest["files"].items():
        path = out / rel
        if not path.is_file():
            raise CuratorError(f"export file {path} is missing")
        if sha256_file(path) != sha:
            raise CuratorError(f"export file {path} does not match its sha256 in the manifest")
    return manifest


def audio_base(table_file: str | Path) -> Path:
    """The folder a table's relative audio paths are relative to: the export folder when TABLE_FILE
    is an export's data/*.parquet (its manifest one level up), else the table's own folder."""
    table_file = Path(table_file)
    root = table_file.parent.parent
    if table_file.parent.name == "data" and (root / MANIFEST).is_file():
        return root
    return table_file.parent


def read_table(out_dir: str | Path) -> pa.Table:
    return pq.read_table(Path(out_dir) / TABLE_PATH)


__all__ = ["export_audio_alpaca", "verify_export", "read_table", "audio_base", "score_column", "features_for"]


def push_export(out_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                api=None) -> str:
    """Upload the export folder OUT_DIR to the hub dataset repo REPO_ID with huggingface_hub (the
    repo is created when missing; one commit). The export is verified against its manifest first,
    so what goes up is what the manifest lists. API: an `HfApi` (default: a new one with TOKEN, or
    the login / HF_TOKEN of the machine). Returns the commit URL."""
    import re

    if not re.match(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", repo_id or ""):
        raise CuratorError(f"--push-to-hub {repo_id!r}: expected a hub dataset id OWNER/NAME")
    out = Path(out_dir)
    manifest = verify_export(out)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(out), repo_id=repo_id, repo_type="dataset",
                                 commit_message=f"Audio-alpaca export: {manifest['n_pairs']} pairs "
                                                f"(preset {manifest['preset']['name']})")
    except HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CuratorError(f"--push-to-hub {repo_id}: the hub refused the upload ({first[:200]})") from None
    except (OSError, ValueError) as exc:  # no connection, no token
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CuratorError(f"--push-to-hub {repo_id}: upload failed ({first[:200]})") from None
    return str(getattr(info, "commit_url", info))
