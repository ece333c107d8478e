"""Preference sets in the `datasets` library's shapes: a hub id (declare-lab/audio-alpaca) or a
local folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`.

The published Audio-alpaca layout (arXiv 2404.09956 §4.1): one `train` split with columns `prompt`
(string), `chosen` and `rejected` (Audio) and `strategy` (string). Audio columns are read with
`Audio(decode=False)`, so each cell is the `{bytes, path}` struct the parquet readers already
handle; nothing is decoded or resampled here (the importer and the trainer's cache do that).

`trainer run --data` and `curator import-pairs` both read these through `open_dataset` and
`dataset_rows`. A hub id is fetched through the datasets cache; when it cannot be fetched
(offline, private, misspelt) the error is one line that says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from db.errors import CuratorError

COLUMNS = ("prompt", "chosen", "rejected", "strategy")
REQUIRED = ("prompt", "chosen", "rejected")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_datasets_folder(path: str | Path) -> bool:
    """A folder `save_to_disk` wrote: a Dataset (state.json + dataset_info.json) or a DatasetDict."""
    p = Path(path)
    return p.is_dir() and ((p / "dataset_dict.json").is_file()
                           or ((p / "state.json").is_file() and (p / "dataset_info.json").is_file()))


def is_hub_id(spec: str) -> bool:
    """SPEC names a hub dataset (owner/name) rather than a local path."""
    return bool(_HUB_ID.match(str(spec))) and not Path(spec).exists()


def is_datasets_source(spec: str | Path) -> bool:
    return is_datasets_folder(spec) or is_hub_id(str(spec))


def open_dataset(spec: str | Path, *, split: str = "train", what: str = "--data"):
    """The SPLIT of the datasets folder or hub id SPEC, audio columns undecoded, the columns checked."""
    import datasets

    spec = str(spec)
    if is_datasets_folder(spec):
        try:
            ds = datasets.load_from_disk(spec)
        except Exception as exc:  # noqa: BLE001 - datasets raises several types for a damaged folder
            raise CuratorError(f"{what} {spec}: not a readable datasets folder ({_first_line(exc)})") from None
    else:
        try:
            ds = datasets.load_dataset(spec, split=split)
        except Exception as exc:  # noqa: BLE001 - offline, missing, private: all one line
            raise CuratorError(f"{what} {spec}: the datasets id cannot be fetched ({_first_line(exc)}); "
                               "offline? load it once where the hub is reachable and pass the folder "
                               "save_to_disk wrote") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise CuratorError(f"{what} {spec}: no {split!r} split (has {', '.join(ds) or 'none'})")
        ds = ds[split]
    missing = [c for c in REQUIRED if c not in ds.column_names]
    if missing:
        raise CuratorError(f"{what} {spec}: missing column(s) {', '.join(missing)} "
                           f"(the Audio-alpaca layout is {', '.join(COLUMNS)})")
    for col in ("chosen", "rejected"):
        if isinstance(ds.features[col], datasets.Audio):
            ds = ds.cast_column(col, datasets.Audio(decode=False))
    return ds


def dataset_rows(ds, name: str, columns: tuple[str, ...] = COLUMNS) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, record) of every row in order: record holds the COLUMNS the dataset has."""
    cols = [c for c in columns if c in ds.column_names]
    view = ds.select_columns(cols)
    for i in range(0, len(view), 64):
        batch = view[i:i + 64]
        for k in range(len(batch[cols[0]])):
            yield f"{name} row {i + k}", {c: batch[c][k] for c in cols}


def dataset_name(spec: str | Path) -> str:
    """A short name for SPEC (the folder name, or the id's last part)."""
    return Path(str(spec).rstrip("/")).name


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
