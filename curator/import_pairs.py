"""Import a preference set made elsewhere, so raters can audit it.

Accepted inputs:
- a parquet file shaped like the published Audio-alpaca (declare-lab/audio-alpaca; also what
  `curator export` writes): columns prompt, chosen, rejected[, strategy]; audio as a struct
  {bytes, path}, raw bytes, or a path (relative paths are resolved beside the file, or against the
  export folder for an export's data/*.parquet);
- a `datasets` hub id (declare-lab/audio-alpaca) or a folder `save_to_disk` wrote, in the
  published layout (prompt, chosen and rejected as Audio, strategy), its `train` split
  (curator.hub_data);
- a folder holding one CSV with columns prompt,chosen,rejected[,strategy] whose audio entries are
  file paths (relative to the folder), or, without a CSV, the parquet files under it (an export).

Every clip is decoded with curator.audio.decode_audio (a wrong rate or channel count is resampled /
downmixed and recorded in AudioClip.note), stored in the AudioStore, and recorded as an AudioClip
(generator "import", checkpoint_id NAME); captions missing from the store are created with source
"import:NAME", pairs with source "import:NAME". Rows already imported are skipped (idempotent).

All rows are decoded and checked before any row is written, and the rows go in with one flush
inside the caller's transaction: a bad row (missing, empty or corrupt audio, empty or very long
prompt, a control character in a prompt, unknown strategy, a clip shorter than
curator.audio.MIN_CLIP_SECONDS or silent) is one CuratorError naming it and nothing is written to the store's
tables. (Audio files already put in the content-addressed store stay there, unreferenced; a rerun
reuses them.)
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from curator.audio import SAMPLE_RATE, AudioStore, check_clip, decode_audio, encode_wav
from db.errors import CuratorError
from curator.export import audio_base
from curator.fsutil import read_utf8
from curator.captions import MAX_CAPTION_CHARS, check_control, is_temporal, normalize_caption
from curator.pairs import IMPORT_GENERATOR, ingest_pairs
from db.models import STRATEGIES, AudioClip, Caption, Pair, text_hash

MAX_PROMPT_CHARS = MAX_CAPTION_CHARS
# "1.1", also spelt "S1.1", "strategy 1.1", "Strategy_2" in sets made elsewhere
_STRATEGY_RE = re.compile(r"^(?:strategy[\s_-]*|s)?(1\.1|1\.2|2|3)$", re.IGNORECASE)
REQUIRED = ("prompt", "chosen", "rejected")


@dataclass
class ImportCounts:
    rows: int = 0
    pairs_created: int = 0
    pairs_existing: int = 0
    clips_created: int = 0
    captions_created: int = 0
    converted: int = 0  # clips resampled or downmixed on the way in

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Row:
    label: str  # "row 3 of pairs.csv"
    prompt: str
    strategy: str
    chosen: tuple[str, str, int, str | None]  # (sha, path in the audio store, num_samples, note)
    rejected: tuple[str, str, int, str | None]
    chosen_path: str
    rejected_path: str


def _source(name: str) -> str:
    return f"import:{name}"


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise CuratorError("import name is empty (give --name)")
    if len(name) > 190:
        raise CuratorError(f"import name {name[:40]!r}… is longer than 190 characters")
    return name


# --------------------------------------------------------------------------------------------
# Reading rows
# --------------------------------------------------------------------------------------------


def _csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any], Path]]:
    with io.StringIO(read_utf8(path, "CSV file"), newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise CuratorError(f"{path}: missing column(s) {', '.join(missing)} (need prompt,chosen,rejected[,strategy])")
        for i, row in enumerate(reader, start=1):
            yield f"row {i} of {path.name} (line {reader.line_num})", row, path.parent


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, Any], Path]]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise CuratorError(f"{path} is not a readable parquet file: {str(exc).splitlines()[0]}") from None
    names = pf.schema_arrow.names
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise CuratorError(f"{path}: missing column(s) {', '.join(missing)} (need prompt, chosen, rejected[, strategy])")
    cols = [c for c in (*REQUIRED, "strategy") if c in names]
    i = 0
    for batch in pf.iter_batches(batch_size=64, columns=cols):
        for row in batch.to_pylist():
            i += 1
            yield f"row {i} of {path.name}", row, audio_base(path)


def _datasets_rows(spec: Path) -> Iterator[tuple[str, dict[str, Any], Path]]:
    """The rows of a datasets folder or hub id; opened at once (a source that cannot be read fails here)."""
    from curator.hub_data import dataset_name, dataset_rows, open_dataset

    ds = open_dataset(spec, what="import")
    base = spec if spec.is_dir() else Path.cwd()
    return ((label, row, base) for label, row in dataset_rows(ds, dataset_name(spec)))


def _sources(path: Path) -> tuple[str, list[Path]]:
    """(kind, files) of an import path."""
    from curator.hub_data import is_datasets_source

    if is_datasets_source(path):
        return "datasets", [path]
    if not path.exists():
        raise CuratorError(f"import path {path} does not exist")
    if path.is_file():
        if path.suffix.lower() == ".parquet":
            return "parquet", [path]
        if path.suffix.lower() == ".csv":
            return "csv", [path]
        raise CuratorError(f"import path {path} is neither a .parquet nor a .csv file")
    csvs = sorted(path.glob("*.csv"))
    if len(csvs) > 1:
        raise CuratorError(f"folder {path} holds {len(csvs)} CSV files; give the one to import")
    if csvs:
        return "csv", csvs
    parquets = sorted(path.rglob("*.parquet"))
    if not parquets:
        raise CuratorError(f"folder {path} holds no CSV and no parquet file to import")
    return "parquet", parquets


def _audio_bytes(value: Any, base: Path, label: str) -> tuple[bytes | Path, str]:
    """Bytes (or a file path) of one audio entry, and how to name it in messages."""
    if isinstance(value, dict):
        data, rel = value.get("bytes"), value.get("path")
        if data:
            return bytes(data), f"{label} ({rel or 'embedded bytes'})"
        value = rel
    if isinstance(value, (bytes, bytearray)):
        if not value:
            raise CuratorError(f"{label}: audio is empty")
        return bytes(value), f"{label} (bytes)"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CuratorError(f"{label}: no audio (empty cell)")
    if not isinstance(value, str):
        raise CuratorError(f"{label}: audio entry of type {type(value).__name__} is neither bytes nor a path")
    p = Path(value.strip())
    if not p.is_absolute():
        p = base / p
    if not p.is_file():
        raise CuratorError(f"{label}: audio file {p} does not exist")
    return p, f"{label} ({p})"


def _strategy(value: Any, default: str | None, label: str) -> str:
    if isinstance(value, float) and value.is_integer():  # a numeric column: 2.0 → "2"
        value = int(value)
    text = "" if value is None else str(value).strip()
    if not text:
        if default is None:
            raise CuratorError(f"{label}: no strategy (add a strategy column or give --strategy-default)")
        return default
    match = _STRATEGY_RE.match(text)
    if match is None:
        raise CuratorError(f"{label}: unknown strategy {text!r} (known: {', '.join(STRATEGIES)})")
    return match.group(1)


def _prompt(value: Any, label: str) -> str:
    # the same normalisation captions import applies, so a prompt matches its imported caption
    text = "" if value is None else normalize_caption(check_control(str(value), label))
    if not text:
        raise CuratorError(f"{label}: empty prompt")
    if len(text) > MAX_PROMPT_CHARS:
        raise CuratorError(f"{label}: prompt of {len(text)} characters is longer than {MAX_PROMPT_CHARS}")
    return text


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


def import_pairs(session: Session, audio_store: AudioStore, path: str | Path, *, name: str | None = None,
                 strategy_default: str | None = None, progress: bool = True) -> ImportCounts:
    """Import the preference set at PATH under NAME (default: the file or folder name). Flushes only."""
    path = Path(path)
    name = _check_name(name if name is not None else (path.stem if path.is_file() else path.name))
    if strategy_default is not None and strategy_default not in STRATEGIES:
        raise CuratorError(f"--strategy-default {strategy_default!r} is unknown (known: {', '.join(STRATEGIES)})")
    kind, files = _sources(path)
    reader = {"csv": _csv_rows, "parquet": _parquet_rows, "datasets": _datasets_rows}[kind]
    counts = ImportCounts()

    # 1. Decode and check every row; put audio in the content-addressed store
    rows: list[_Row] = []
    sources = [reader(file) for file in files]
    bar = tqdm(desc=f"import {name}", unit="row", disable=not progress)
    for source in sources:
        for label, raw, base in source:
            prompt = _prompt(raw.get("prompt"), label)
            strategy = _strategy(raw.get("strategy"), strategy_default, label)
            stored = []
            for kind_ in ("chosen", "rejected"):
                data, where = _audio_bytes(raw.get(kind_), base, f"{label} {kind_}")
                decoded = check_clip(decode_audio(data, target_sr=SAMPLE_RATE, name=where), where)
                sha, rel = audio_store.put_bytes(encode_wav(decoded.wave, SAMPLE_RATE))
                note = f"import {name}: {decoded.note}" if decoded.note else None
                stored.append(((sha, rel, len(decoded.wave), note), where))
            if stored[0][0][0] == stored[1][0][0]:
                raise CuratorError(f"{label}: chosen and rejected are the same audio")
            rows.append(_Row(label, prompt, strategy, stored[0][0], stored[1][0], stored[0][1], stored[1][1]))
            bar.update(1)
    bar.close()
    if not rows:
        raise CuratorError(f"{path} holds no rows to import")
    counts.rows = len(rows)

    # 2. Captions (existing ones are reused)
    shas = sorted({text_hash(r.prompt) for r in rows})
    captions: dict[str, int] = {}
    for start in range(0, len(shas), 5000):
        captions.update(dict(session.execute(select(Caption.text_sha, Caption.id).where(
            Caption.text_sha.in_(shas[start:start + 5000]))).all()))
    for r in rows:
        sha = text_hash(r.prompt)
        if sha not in captions:
            cap = Caption(text=r.prompt, text_sha=sha, source=_source(name), split="train",
                          temporal=is_temporal(r.prompt))
            session.add(cap)
            session.flush()
            captions[sha] = cap.id
            counts.captions_created += 1

    # 3. Clips: one per distinct audio within (caption, strategy) of this import
    existing = session.execute(select(AudioClip).where(AudioClip.generator == IMPORT_GENERATOR,
                                                       AudioClip.checkpoint_id == name)).scalars().all()
    clip_of: dict[tuple[int, str, str], int] = {(c.caption_id, c.strategy, c.sha256): c.id for c in existing}
    next_slot: dict[tuple[int, str], int] = {}
    for c in existing:
        key = (c.caption_id, c.strategy)
        next_slot[key] = max(next_slot.get(key, 0), c.slot + 1)

    def clip_id(r: _Row, caption_id: int, audio: tuple[str, str, int, str | None], prompt: str) -> int:
        sha, rel, n, note = audio
        key = (caption_id, r.strategy, sha)
        if key not in clip_of:
            slot = next_slot.get(key[:2], 0)
            next_slot[key[:2]] = slot + 1
            clip = AudioClip(sha256=sha, path=rel, sample_rate=SAMPLE_RATE, num_samples=n,
                             duration_s=n / SAMPLE_RATE, generator=IMPORT_GENERATOR, checkpoint_id=name,
                             prompt=prompt, caption_id=caption_id, strategy=r.strategy, slot=slot, note=note)
            session.add(clip)
            session.flush()
            clip_of[key] = clip.id
            counts.clips_created += 1
            counts.converted += note is not None
        return clip_of[key]

    # 4. Pairs (skipping those already in the store)
    have = set(session.execute(select(Pair.winner_clip_id, Pair.loser_clip_id)).tuples().all())
    new: list[tuple[int, int, int, str, str]] = []
    for r in rows:
        caption_id = captions[text_hash(r.prompt)]
        w = clip_id(r, caption_id, r.chosen, r.prompt)
        lo = clip_id(r, caption_id, r.rejected, r.prompt)
        if (w, lo) in have:
            counts.pairs_existing += 1
            continue
        have.add((w, lo))
        new.append((caption_id, w, lo, r.strategy, _source(name)))
    ingest_pairs(session, new)
    counts.pairs_created = len(new)
    session.flush()
    return counts
