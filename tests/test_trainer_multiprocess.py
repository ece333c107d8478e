"""Data-parallel `trainer run` with two real processes (torchrun on CPU, gloo): one global batch
split across ranks, one checkpoint and one metrics stream, each rank its own reference terms,
and a resume with another process count refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from builders.ports import free_port
from trainer.synthetic import write_export

DUR = 0.32


def _launch(n: int, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "trainer", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_share_one_run(tmp_path):
    export = write_export(tmp_path / "e.parquet", 8, duration_s=DUR)
    out = tmp_path / "run"
    args = ["run", "--model", "tiny", "--data", str(export), "--out", str(out), "--quiet",
            "--set", f"duration_s={DUR}", "--set", "train_batch_size=2", "--set", "gradient_accumulation_steps=1",
            "--set", "log_every=1", "--set", "lr_warmup_steps=1", "--set", "dpo_epochs=1", "--set", "checkpoint_every=3"]
    res = _launch(2, args, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("trained 4 steps on 8 pairs") == 1  # one summary, from rank 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    # global batch 2 pairs × 2 processes = 4 → 2 steps per epoch; one SFT epoch, then one DPO epoch
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    assert [m["epoch"] for m in lines] == [0.5, 1.0, 1.5, 2.0]
    assert [m["phase"] for m in lines] == ["sft", "sft", "dpo", "dpo"]
    state = json.loads((out / "step-4" / "trainer_state.json").read_text())
    assert state["num_processes"] == 2 and state["n_pairs"] == 8
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("step-")) == ["step-3", "step-4"]
    assert len(list((out / "cache" / "reference").iterdir())) == 2  # each rank precomputed its own slice

    from curator.generate.backends import resolve_generator

    (clip,) = resolve_generator(None, checkpoint=out / "step-4").generate(["a bell"], steps=2, guidance=3.0,
                                                                          seeds=[0], duration_s=DUR)
    assert len(clip) == round(DUR * 16000)

    # resuming a two-process run in one process would change every batch: refused in one line
    from typer.testing import CliRunner

    from trainer.cli import app

    one = CliRunner().invoke(app, [*args, "--resume", str(out / "step-3")])
    assert one.exit_code == 2
    errors = [ln for ln in one.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "2 process(es)" in errors[0], one.output
