"""Where the training pairs come from: an exported Audio-alpaca set, or the store.

Two sources, one result (`PairSet`):

- **Export** (`--data FOLDER|FILE.parquet`): parquet files with the published Audio-alpaca schema
  (arXiv 2404.09956 §4.1: columns `prompt`, `chosen`, `rejected`, `strategy`). An audio cell is a
  Hugging Face `Audio` struct `{bytes, path}` (bytes win; a path is relative to the parquet's
  folder), raw bytes, or a path string. A folder means every `*.parquet` under it, in path order.
- **datasets** (`--data declare-lab/audio-alpaca` or a folder `save_to_disk` wrote): the same
  columns through the `datasets` library (curator.hub_data), its `train` split in row order.
- **Store** (`--data store --db URL --preset NAME --set audit_policy=…`): the pairs the preset's
  filter keeps (curator.filter), then the audit policy over the raters' verdicts
  (curator.verdicts.verdict_counts: agree / disagree / both_good / both_bad per pair):

  | policy          | an audited pair is …                                                            |
  |-----------------|---------------------------------------------------------------------------------|
  | `ignore`        | kept as the filter left it (audits are not read)                                |
  | `drop-rejected` | dropped when any rater disagreed with the automatic winner or judged both bad   |
  | `human-winner`  | swapped (human winner) when disagree > agree; dropped when both_good or both_bad |
  |                 | is more than half the verdicts (no preference); kept otherwise                  |
  | `majority`      | kept only when agree is more than half of its verdicts                          |

  Pairs nobody audited are kept by every policy. The prompt is always the caption (never the
  perturbed text that made a loser, arXiv 2404.09956 §4.1).

A pair's audio is only decoded when its latent is not cached yet (trainer/cache.py); clips are
identified by the sha256 of their file bytes (the store's AudioClip.sha256), so the cache is
shared between the two sources.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import aliased

from curator.export import audio_base
from curator.filter import get_preset, keep_mask, load_preset_table, thresholds_of
from curator.hub_data import dataset_name, dataset_rows, is_datasets_source, open_dataset
from curator.verdicts import Verdicts, verdict_counts
from db.errors import CuratorError
from db.models import AudioClip, Caption, Pair

EXPORT_COLUMNS = ("prompt", "chosen", "rejected", "strategy")


@dataclass(frozen=True)
class PairMeta:
    """One training pair: the prompt and the two clips, by content hash."""

    label: str  # where it came from, for messages ("train.parquet row 3", "pair 17")
    prompt: str
    chosen_sha: str
    rejected_sha: str
    strategy: str


@dataclass
class PairSet:
    """Pairs in training order, and how to read a clip's bytes by its sha."""

    source: str  # "export:<path>" or "store:<preset>/<policy>"
    pairs: list[PairMeta]
    # wanted shas → (sha, file bytes, label) for each of them, streaming (each once)
    clips: Callable[[set[str]], Iterator[tuple[str, bytes, str]]]
    clip_labels: dict[str, str] = field(default_factory=dict)  # sha → "train.parquet row 3 chosen"
    notes: list[str] = field(default_factory=list)  # what the policy did, for the console

    @property
    def source_hash(self) -> str:
        """sha256 over (prompt, chosen sha, rejected sha) of every pair, in order."""
        h = hashlib.sha256()
        for p in self.pairs:
            h.update(f"{p.prompt}\t{p.chosen_sha}\t{p.rejected_sha}\n".encode("utf-8"))
        return h.hexdigest()

    def limit(self, n: int) -> "PairSet":
        if n and n < len(self.pairs):
            self.pairs = self.pairs[:n]
            self.notes.append(f"limited to the first {n} pairs (max_pairs)")
        return self


# --------------------------------------------------------------------------- export (parquet)


def parquet_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        if path.suffix != ".parquet":
            raise CuratorError(f"--data {path}: expected a .parquet file or an export folder")
        return [path]
    if not path.is_dir():
        raise CuratorError(f"--data {path} does not exist")
    files = sorted(p for p in path.rglob("*.parquet")
                   if not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise CuratorError(f"--data {path}: no .parquet files in the folder (expected an Audio-alpaca export)")
    return files


def _cell_bytes(cell: Any, base: Path, label: str) -> bytes:
    """Bytes of one audio cell: {bytes, path} struct, raw bytes, or a path string."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        cell = cell.get("path")
    if isinstance(cell, (bytes, bytearray, memoryview)):
        if len(cell) == 0:
            raise CuratorError(f"{label}: the audio is empty")
        return bytes(cell)
    if isinstance(cell, str) and cell:
        p = Path(cell)
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise CuratorError(f"{label}: audio file {p} does not exist")
        return p.read_bytes()
    raise CuratorError(f"{label}: the audio is missing")


def load_export(path: str | Path) -> PairSet:
    """Every row of the export's parquet files, in file then row order."""
    pairs: list[PairMeta] = []
    labels: dict[str, str] = {}
    for file in parquet_files(path):
        try:
            pf = pq.ParquetFile(file)
        except Exception as exc:  # pyarrow: ArrowInvalid on a non-parquet file
            raise CuratorError(f"{file} is not a parquet file ({str(exc).splitlines()[0]})") from None
        names = pf.schema_arrow.names
        missing = [c for c in EXPORT_COLUMNS if c not in names]
        if missing:
            raise CuratorError(f"{file}: missing column(s) {', '.join(missing)} "
                               f"(the Audio-alpaca schema is {', '.join(EXPORT_COLUMNS)})")
        row = 0
        for batch in pf.iter_batches(batch_size=256, columns=list(EXPORT_COLUMNS)):
            for rec in batch.to_pylist():
                label = f"{file.name} row {row}"
                prompt = rec["prompt"]
                if not isinstance(prompt, str) or not prompt.strip():
                    raise CuratorError(f"{label}: the prompt is empty")
                shas = []
                for side in ("chosen", "rejected"):
                    data = _cell_bytes(rec[side], audio_base(file), f"{label} {side}")
                    sha = hashlib.sha256(data).hexdigest()
                    labels.setdefault(sha, f"{label} {side}")
                    shas.append(sha)
                pairs.append(PairMeta(label, prompt, shas[0], shas[1], str(rec["strategy"] or "")))
                row += 1

    files = parquet_files(path)

    def clips(wanted: set[str]) -> Iterator[tuple[str, bytes, str]]:
        """One more streaming pass over the files, yielding the wanted clips."""
        left = set(wanted)
        for file in files:
            if not left:
                return
            row = 0
            for batch in pq.ParquetFile(file).iter_batches(batch_size=64, columns=["chosen", "rejected"]):
                for rec in batch.to_pylist():
                    for side in ("chosen", "rejected"):
                        label = f"{file.name} row {row} {side}"
                        data = _cell_bytes(rec[side], audio_base(file), label)
                        sha = hashlib.sha256(data).hexdigest()
                        if sha in left:
                            left.discard(sha)
                            yield sha, data, label
                    row += 1
        if left:  # the files changed between the two passes
            raise CuratorError(f"{len(left)} clip(s) vanished from {path} while reading it")

    return PairSet(source=f"export:{Path(path)}", pairs=pairs, clips=clips, clip_labels=labels)


def load_datasets(spec: str) -> PairSet:
    """Every row of the `train` split of a datasets hub id or save_to_disk folder, in row order."""
    ds = open_dataset(spec)
    name = dataset_name(spec)
    base = Path(spec) if Path(spec).is_dir() else Path.cwd()
    pairs: list[PairMeta] = []
    labels: dict[str, str] = {}
    for label, rec in dataset_rows(ds, name):
        prompt = rec["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise CuratorError(f"{label}: the prompt is empty")
        shas = []
        for side in ("chosen", "rejected"):
            data = _cell_bytes(rec[side], base, f"{label} {side}")
            sha = hashlib.sha256(data).hexdigest()
            labels.setdefault(sha, f"{label} {side}")
            shas.append(sha)
        pairs.append(PairMeta(label, prompt, shas[0], shas[1], str(rec.get("strategy") or "")))

    def clips(wanted: set[str]) -> Iterator[tuple[str, bytes, str]]:
        left = set(wanted)
        for label, rec in dataset_rows(ds, name, ("chosen", "rejected")):
            if not left:
                return
            for side in ("chosen", "rejected"):
                data = _cell_bytes(rec[side], base, f"{label} {side}")
                sha = hashlib.sha256(data).hexdigest()
                if sha in left:
                    left.discard(sha)
                    yield sha, data, f"{label} {side}"
        if left:
            raise CuratorError(f"{len(left)} clip(s) vanished from {spec} while reading it")

    return PairSet(source=f"datasets:{spec}", pairs=pairs, clips=clips, clip_labels=labels)


def load_pairs(spec: str) -> PairSet:
    """`--data SPEC` (not the store): a datasets folder or hub id, else an export folder / parquet file."""
    return load_datasets(spec) if is_datasets_source(spec) else load_export(spec)


# --------------------------------------------------------------------------- store


def apply_policy(policy: str, verdicts: Verdicts | None) -> str:
    """'keep', 'swap' or 'drop' for one pair under POLICY (see the module docstring)."""
    if policy == "ignore" or verdicts is None or verdicts.votes == 0:
        return "keep"
    v = verdicts
    if policy == "drop-rejected":
        return "drop" if v.disagree or v.both_bad else "keep"
    if policy == "human-winner":
        if 2 * v.both_good > v.votes or 2 * v.both_bad > v.votes:
            return "drop"
        return "swap" if v.disagree > v.agree else "keep"
    if policy == "majority":
        return "keep" if 2 * v.agree > v.votes else "drop"
    raise CuratorError(f"audit policy {policy!r} is not one of ignore, drop-rejected, human-winner, majority")


def load_store_pairs(session, audio_store, *, preset: str, policy: str) -> PairSet:
    """Approved pairs: the preset's filter, then the audit policy; in pair id order."""
    p = get_preset(session, preset)
    table = load_preset_table(session, p)
    mask = keep_mask(table, thresholds_of(p))
    ids = sorted(int(i) for i in table.pair_id[mask])
    notes = [f"preset {preset!r} keeps {len(ids)} of {len(table)} scored pairs"]
    if not ids:
        raise CuratorError(f"no pairs to train on: preset {preset!r} keeps none of the {len(table)} scored pairs")
    decisions = {pid: "keep" for pid in ids}
    if policy != "ignore":
        counts = verdict_counts(session, ids)
        decisions = {pid: apply_policy(policy, counts.get(pid)) for pid in ids}
        n_drop = sum(d == "drop" for d in decisions.values())
        n_swap = sum(d == "swap" for d in decisions.values())
        notes.append(f"audit policy {policy!r}: {len(counts)} audited, {n_drop} dropped, {n_swap} swapped")
    kept = [pid for pid in ids if decisions[pid] != "drop"]
    if not kept:
        raise CuratorError(f"no pairs to train on: audit policy {policy!r} drops all {len(ids)} pairs of preset {preset!r}")

    W, L = aliased(AudioClip), aliased(AudioClip)
    rows: dict[int, Any] = {}
    for chunk in (kept[i:i + 500] for i in range(0, len(kept), 500)):
        stmt = (select(Pair.id, Pair.strategy, Caption.text, W.sha256, W.path, L.sha256, L.path)
                .join(Caption, Caption.id == Pair.caption_id)
                .join(W, W.id == Pair.winner_clip_id).join(L, L.id == Pair.loser_clip_id)
                .where(Pair.id.in_(chunk)))
        rows.update({r[0]: r for r in session.execute(stmt)})
    pairs, paths, labels = [], {}, {}
    for pid in kept:
        _, strategy, text, wsha, wpath, lsha, lpath = rows[pid]
        if decisions[pid] == "swap":
            wsha, wpath, lsha, lpath = lsha, lpath, wsha, wpath
        paths.setdefault(wsha, wpath)
        paths.setdefault(lsha, lpath)
        labels.setdefault(wsha, f"pair {pid} chosen")
        labels.setdefault(lsha, f"pair {pid} rejected")
        pairs.append(PairMeta(f"pair {pid}", text, wsha, lsha, strategy))

    def clips(wanted: set[str]) -> Iterator[tuple[str, bytes, str]]:
        for sha in sorted(wanted):
            path = audio_store.resolve(paths[sha])
            if not path.is_file():
                raise CuratorError(f"{labels[sha]}: audio file {path} is missing from the audio store")
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                raise CuratorError(f"{labels[sha]}: audio file {path} is corrupt (its sha256 is not the stored one)")
            yield sha, data, labels[sha]

    return PairSet(source=f"store:{preset}/{policy}", pairs=pairs, clips=clips,
                   clip_labels=labels, notes=notes)
