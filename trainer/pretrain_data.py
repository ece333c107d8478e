"""What `trainer pretrain --data` reads: (caption, waveform) examples at 16 kHz.

Three sources, one result (`Examples`):

- `world`: captions written by the miniature world's grammar (curator.world.grammar.random_scene,
  `min_events`..`max_events` events each) and clean renders of them (curator.world.render.render,
  several seeds per caption). Only the caption text and the audio are used: the render's ground
  truth (onsets, counts) is never an input, and the judges are not involved at all.
- an **export** folder or .parquet file (the Audio-alpaca schema, trainer.data.load_export): each
  distinct winner clip with its prompt, so `trainer pretrain` also fine-tunes on a published set.
- a **folder of rows**: `metadata.jsonl` or `metadata.csv` (Hugging Face AudioFolder's convention)
  with a `file_name` column (audio path relative to the folder) and a `caption` column (`text`
  and `prompt` are accepted too).

Every clip is decoded, resampled to 16 kHz and padded or cut to the clip length. Any problem a
user can cause (an empty or unreadable folder, an export without audio, a row without a caption)
is one CuratorError naming the file and row, raised before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from db.errors import CuratorError
from curator.paper import SAMPLE_RATE

ROW_FILES = ("metadata.jsonl", "metadata.csv")
AUDIO_COLUMNS = ("file_name", "audio", "path")
CAPTION_COLUMNS = ("caption", "text", "prompt")


@dataclass
class Examples:
    source: str  # "world(seed=0)", "export:<path>", "rows:<path>"
    captions: list[str]  # one per clip
    waves: list[np.ndarray]  # float32 at 16 kHz, each exactly clip_s long
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Pad with silence or cut to N samples."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.size >= n:
        return np.ascontiguousarray(wave[:n])
    return np.concatenate([wave, np.zeros(n - wave.size, dtype=np.float32)])


def read_caption_lines(path: str | Path | None) -> set[str]:
    """Captions of a file, one a line (blank lines skipped); empty set for no file."""
    if not path:
        return set()
    p = Path(path)
    if not p.is_file():
        raise CuratorError(f"exclude_captions file {p} does not exist")
    return {ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()}


def world_captions(n: int, *, seed: int, min_events: int, max_events: int, exclude: Iterable[str] = (),
                   salt: int = 17) -> list[str]:
    """N distinct world captions with min_events..max_events events, none in EXCLUDE."""
    from curator.world.grammar import random_scene

    banned = {c.strip().lower() for c in exclude}
    rng = np.random.default_rng([seed, salt])
    out: list[str] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise CuratorError(f"the world grammar gave only {len(out)} distinct captions with {min_events}–{max_events} "
                               f"events (asked for {n})")
        k = int(rng.integers(min_events, max_events + 1))
        text = random_scene(rng, k).text()
        key = text.lower()
        if key in seen or key in banned:
            continue
        seen.add(key)
        out.append(text)
    return out


def world_examples(cfg) -> Examples:
    from curator.world.grammar import CaptionError
    from curator.world.render import render

    n = int(round(cfg.clip_s * SAMPLE_RATE))
    exclude = read_caption_lines(cfg.exclude_captions)
    captions: list[str] = []
    waves: list[np.ndarray] = []
    skipped = kept = 0
    # candidates beyond n_captions replace the captions too long for the clip, so the run trains
    # on n_captions captions (the longest ones stay rarer than the grammar writes them)
    for text in world_captions(4 * cfg.n_captions + 100, seed=cfg.seed, min_events=cfg.min_events,
                               max_events=cfg.max_events, exclude=exclude):
        if kept == cfg.n_captions:
            break
        try:
            renders = [render(text, seed=1000 * cfg.seed + j, duration_s=cfg.clip_s).wave
                       for j in range(cfg.renders_per_caption)]
        except CaptionError:  # too many events for the clip length: the world cannot draw it
            skipped += 1
            continue
        kept += 1
        for wave in renders:
            captions.append(text)
            waves.append(fit_length(wave, n))
    if not captions:
        raise CuratorError(f"no world caption fits a {cfg.clip_s:g} s clip; raise clip_s or lower max_events")
    notes = [f"{skipped} caption(s) too long for {cfg.clip_s:g} s were replaced by others"] if skipped else []
    if kept < cfg.n_captions:
        notes.append(f"only {kept} of {cfg.n_captions} captions fit a {cfg.clip_s:g} s clip")
    if exclude:
        notes.append(f"{len(exclude)} held-out caption(s) excluded (exclude_captions)")
    return Examples(f"world(seed={cfg.seed})", captions, waves, notes)


def _decode(data: bytes | Path, label: str, n: int) -> np.ndarray:
    from curator.audio import decode_audio

    return fit_length(decode_audio(data, target_sr=SAMPLE_RATE, name=label).wave, n)


def export_examples(path: Path, clip_s: float) -> Examples:
    from trainer.data import load_export

    pairs = load_export(path)  # every audio cell is checked here: an export without audio fails in one line
    if not pairs.pairs:
        raise CuratorError(f"--data {path}: the export has no rows")
    n = int(round(clip_s * SAMPLE_RATE))
    prompt_of: dict[str, str] = {}
    for p in pairs.pairs:
        prompt_of.setdefault(p.chosen_sha, p.prompt)
    order = list(prompt_of)
    found: dict[str, np.ndarray] = {}
    for sha, data, label in pairs.clips(set(order)):
        found[sha] = _decode(data, label, n)
    return Examples(f"export:{path}", [prompt_of[s] for s in order], [found[s] for s in order],
                    [f"{len(order)} distinct winner clip(s) of {len(pairs.pairs)} pairs"])


def _read_rows(path: Path) -> tuple[Path, list[dict]]:
    for name in ROW_FILES:
        file = path / name
        if not file.is_file():
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        if name.endswith(".jsonl"):
            rows = []
            for i, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CuratorError(f"{file} line {i} is not JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise CuratorError(f"{file} line {i}: expected an object, got {type(row).__name__}")
                rows.append(row)
            return file, rows
        try:
            return file, list(csv.DictReader(text.splitlines()))
        except csv.Error as exc:
            raise CuratorError(f"{file} is not a CSV file ({exc})") from None
    raise CuratorError(f"--data {path}: neither .parquet files (an export) nor {' / '.join(ROW_FILES)} "
                       "(caption, audio rows) in the folder")


def row_examples(path: Path, clip_s: float) -> Examples:
    file, rows = _read_rows(path)
    if not rows:
        raise CuratorError(f"{file} has no rows")
    n = int(round(clip_s * SAMPLE_RATE))
    captions, waves = [], []
    for i, row in enumerate(rows, start=1):
        label = f"{file.name} row {i}"
        audio = next((row[c] for c in AUDIO_COLUMNS if row.get(c)), None)
        caption = next((row[c] for c in CAPTION_COLUMNS if isinstance(row.get(c), str) and row[c].strip()), None)
        if audio is None:
            raise CuratorError(f"{label}: no audio file (columns {', '.join(AUDIO_COLUMNS)})")
        if caption is None:
            raise CuratorError(f"{label}: no caption (columns {', '.join(CAPTION_COLUMNS)})")
        audio_path = Path(str(audio))
        audio_path = audio_path if audio_path.is_absolute() else path / audio_path
        if not audio_path.is_file():
            raise CuratorError(f"{label}: audio file {audio_path} does not exist")
        captions.append(caption.strip())
        waves.append(_decode(audio_path, label, n))
    return Examples(f"rows:{file}", captions, waves)


def load_examples(cfg) -> Examples:
    """The examples CFG.data names (see the module docstring)."""
    if cfg.data == "world":
        return world_examples(cfg)
    path = Path(cfg.data).expanduser()
    if not path.exists():
        raise CuratorError(f"--data {cfg.data}: neither 'world' nor an existing folder or .parquet file")
    if path.is_file():
        if path.suffix != ".parquet":
            raise CuratorError(f"--data {path}: a file must be an export's .parquet table")
        return export_examples(path, cfg.clip_s)
    if not any(path.iterdir()):
        raise CuratorError(f"--data {path}: the folder is empty")
    if any(path.rglob("*.parquet")):
        return export_examples(path, cfg.clip_s)
    return row_examples(path, cfg.clip_s)


def examples_hash(ex: Examples) -> str:
    h = hashlib.sha256()
    for c, w in zip(ex.captions, ex.waves):
        h.update(c.encode("utf-8"))
        h.update(hashlib.sha1(w.tobytes()).digest())
    return h.hexdigest()
