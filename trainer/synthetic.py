"""Small synthetic Audio-alpaca exports (tests, benchmark, smoke runs): the published schema,
`prompt` / `chosen` / `rejected` / `strategy`, audio as Hugging Face Audio structs {bytes, path}.
Winners are tones whose pitch follows the prompt; losers are noise bursts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from curator.audio import SAMPLE_RATE, encode_wav

PROMPTS = ("a dog barks", "a bell rings", "a man speaks", "birds chirp", "a car passes", "rain falls",
           "a baby cries", "a clock ticks", "water flows", "a horn honks")


def pair_waves(i: int, duration_s: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, i])
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    chosen = 0.5 * np.sin(2 * np.pi * (220.0 + 110.0 * (i % 7)) * t)
    rejected = 0.3 * rng.standard_normal(t.shape) * (t < duration_s / 2)
    return chosen.astype(np.float32), rejected.astype(np.float32)


def write_export(path: str | Path, n: int = 8, *, duration_s: float = 0.64, seed: int = 0) -> Path:
    """An n-row parquet at PATH (a .parquet file, or FOLDER/data/train-00000-of-00001.parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix != ".parquet":
        path = path / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {"prompt": [], "chosen": [], "rejected": [], "strategy": []}
    for i in range(n):
        w, l = pair_waves(i, duration_s, seed)
        rows["prompt"].append(f"{PROMPTS[i % len(PROMPTS)]} {i}")
        rows["chosen"].append({"bytes": encode_wav(w, SAMPLE_RATE), "path": f"chosen_{i}.wav"})
        rows["rejected"].append({"bytes": encode_wav(l, SAMPLE_RATE), "path": f"rejected_{i}.wav"})
        rows["strategy"].append(("1.1", "1.2", "2", "3")[i % 4])
    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("prompt", pa.string()), ("chosen", audio), ("rejected", audio), ("strategy", pa.string())])
    pq.write_table(pa.table(rows, schema=schema), path)
    return path


def write_datasets_folder(parquet: str | Path, folder: str | Path, *, as_dict: bool = True) -> Path:
    """The rows of the PARQUET export as the published Audio-alpaca `datasets` layout (prompt,
    chosen/rejected as Audio at 16 kHz, strategy), written with save_to_disk to FOLDER: a
    DatasetDict with a `train` split (AS_DICT) or a bare Dataset."""
    import datasets
    import pyarrow.parquet as pq

    features = datasets.Features({"prompt": datasets.Value("string"), "chosen": datasets.Audio(sampling_rate=SAMPLE_RATE),
                                  "rejected": datasets.Audio(sampling_rate=SAMPLE_RATE),
                                  "strategy": datasets.Value("string")})
    ds = datasets.Dataset.from_list(pq.read_table(parquet).to_pylist(), features=features)
    (datasets.DatasetDict({"train": ds}) if as_dict else ds).save_to_disk(str(folder))
    return Path(folder)
