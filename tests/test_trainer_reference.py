"""The reference pre-pass (trainer/reference.py): the precomputed terms are the live reference
pass's, a run with them trains exactly as one without, and a rerun reuses them."""

from __future__ import annotations

import json

import pytest
import torch

from trainer.config import TrainConfig
from trainer.data import load_export
from trainer.reference import CHUNK, ReferenceTable
from trainer.synthetic import write_export
from trainer.train import run_training

DUR = 0.32


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from curator.models.tiny import build_tiny_tango

    return str(build_tiny_tango(tmp_path_factory.mktemp("tiny") / "tango"))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_export(tmp_path_factory.mktemp("export") / "train.parquet", 8, duration_s=DUR)


def _cfg(base, export, out, **kw):
    values = dict(model=base, data=str(export), out=str(out), duration_s=DUR, train_batch_size=2,
                  gradient_accumulation_steps=2, sft_epochs=1, dpo_epochs=2, lr_warmup_steps=1,
                  learning_rate=1e-4, log_every=1, checkpoint_every=100, uncond_prob=0.5)
    values.update(kw)
    return TrainConfig(**values)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_precomputed_reference_trains_like_the_live_pass(base, export, tmp_path, one_torch_thread):
    live = tmp_path / "live"
    run_training(_cfg(base, export, live, precompute_reference=False), lambda: load_export(export), progress=False)
    pre = tmp_path / "pre"
    run_training(_cfg(base, export, pre), lambda: load_export(export), progress=False)
    want, got = _metrics(live), _metrics(pre)
    assert [m["phase"] for m in got] == ["sft", "sft", "dpo", "dpo", "dpo", "dpo"]
    assert not (live / "cache" / "reference").exists()
    for a, b in zip(want, got, strict=True):
        for key in ("loss", "rewards/margins", "rewards/accuracies", "mse/ref_chosen", "mse/ref_rejected",
                    "mse/model_chosen", "grad_norm"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-8), (a["step"], key)
    # 4 DPO steps × 2 micro-batches on one process, in one chunk
    (folder,) = (pre / "cache" / "reference").iterdir()
    (chunk,) = folder.iterdir()
    table = torch.load(chunk, weights_only=True)
    assert table.shape == (8, 4)  # (micro-batches, 2B)
    assert torch.all(table > 0)


def test_rerun_with_another_beta_reuses_the_reference(base, export, tmp_path, one_torch_thread):
    cache = tmp_path / "cache"
    run_training(_cfg(base, export, tmp_path / "a", cache_dir=str(cache)), lambda: load_export(export), progress=False)
    (folder,) = (cache / "reference").iterdir()
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    run_training(_cfg(base, export, tmp_path / "b", cache_dir=str(cache), beta=500.0, learning_rate=3e-4),
                 lambda: load_export(export), progress=False)
    assert [p.name for p in (cache / "reference").iterdir()] == [folder.name]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp  # nothing recomputed
    # another seed draws other noise: another key
    run_training(_cfg(base, export, tmp_path / "c", cache_dir=str(cache), seed=1), lambda: load_export(export),
                 progress=False)
    assert len(list((cache / "reference").iterdir())) == 2


def test_table_fills_only_missing_chunks_and_checks_its_range(tmp_path):
    calls = []

    def compute(micro):
        calls.append(micro)
        return torch.full((4,), float(micro))

    table = ReferenceTable(tmp_path / "ref", first=10, count=CHUNK + 3)
    assert table.fill(compute, progress=False) == CHUNK + 3
    (tmp_path / "ref" / "chunk-000001.pt").unlink()  # an interrupted pre-pass: the last chunk missing
    calls.clear()
    again = ReferenceTable(tmp_path / "ref", first=10, count=CHUNK + 3)
    assert again.fill(compute, progress=False) == 3 and calls == [10 + CHUNK, 11 + CHUNK, 12 + CHUNK]
    assert float(again[10][0]) == 10.0 and float(again[10 + CHUNK + 2][0]) == 10.0 + CHUNK + 2
    with pytest.raises(IndexError, match="outside"):
        again[9]
