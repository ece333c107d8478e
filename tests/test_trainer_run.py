"""`trainer run` on the tiny Tango: gradients, overfitting 8 pairs, SFT → DPO, resume, the CLI
end to end, the bad inputs that must end in one clear line, and the reference pre-pass
(trainer/reference.py: its terms are the live pass's, and a rerun reuses them)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from db.errors import CuratorError
from trainer.cache import FeatureCache, build_features
from trainer.config import TrainConfig
from trainer.data import load_export
from trainer.reference import CHUNK, ReferenceTable
from trainer.synthetic import write_export
from trainer.steps import dpo_forward, load_features, make_batch, micro_generator, pair_terms
from trainer.train import run_training

DUR = 0.32  # seconds: 32 mel frames → latents (8, 8, 16)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The tiny Tango, built once in the real layout."""
    from curator.models.tiny import build_tiny_tango

    return str(build_tiny_tango(tmp_path_factory.mktemp("tiny") / "tango"))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_export(tmp_path_factory.mktemp("export") / "train.parquet", 8, duration_s=DUR)


def _cfg(base, export, out, **kw):
    values = dict(model=base, data=str(export), out=str(out), duration_s=DUR, train_batch_size=2,
                  gradient_accumulation_steps=2, sft_epochs=1, dpo_epochs=1, lr_warmup_steps=1,
                  learning_rate=1e-4, log_every=1, checkpoint_every=100)
    values.update(kw)
    return TrainConfig(**values)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_only_the_policy_unet_learns(base, export, tmp_path):
    from curator.models.tango import load_tango

    tango = load_tango(base)
    pairs = load_export(export)
    cache = FeatureCache(tmp_path / "cache", tango, duration_s=DUR)
    build_features(cache, pairs, batch_size=8, progress=False)
    feats = load_features(cache, pairs)
    unet = tango.unet.train().requires_grad_(True)
    ref = copy.deepcopy(unet).eval().requires_grad_(False)
    before = {name: {k: v.clone() for k, v in m.state_dict().items()}
              for name, m in (("unet", unet), ("ref", ref), ("text", tango.text_encoder), ("vae", tango.vae))}
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    for micro in range(2):
        batch = make_batch(feats, torch.arange(4), micro_generator(0, micro, 0), num_timesteps=1000,
                           uncond_prob=0.5, device="cpu")
        loss, _ = dpo_forward(unet, ref, tango.scheduler, batch, 2000.0)
        loss.backward()
        assert all(p.grad is None for p in ref.parameters())
        assert all(p.grad is None for p in tango.text_encoder.parameters())
        assert all(p.grad is None for p in tango.vae.parameters())
        opt.step()
        opt.zero_grad()
    for name, module in (("ref", ref), ("text", tango.text_encoder), ("vae", tango.vae)):
        for k, v in module.state_dict().items():
            assert torch.equal(v, before[name][k]), f"{name}.{k} changed"
    unchanged = [k for k, p in unet.named_parameters() if torch.equal(p.detach(), before["unet"][k])]
    assert not unchanged, f"trainable parameters that did not change: {unchanged[:5]}"


def test_overfits_eight_pairs(base, export, tmp_path):
    from curator.models.tango import load_tango

    out = tmp_path / "run"
    cfg = _cfg(base, export, out, sft_epochs=0, dpo_epochs=1, max_steps=3, train_batch_size=4,
               gradient_accumulation_steps=1, learning_rate=1e-3, lr_warmup_steps=0, lr_scheduler="constant",
               uncond_prob=0.0)
    result = run_training(cfg, lambda: load_export(export), progress=False)
    assert [c.name for c in result.checkpoints] == ["step-3"]
    policy, ref = load_tango(result.checkpoints[-1]), load_tango(base)
    feats = load_features(FeatureCache(out / "cache", ref, duration_s=DUR), load_export(export))
    terms = pair_terms(policy.unet, ref.unet, ref.scheduler, feats, beta=cfg.beta, seed=123)
    assert terms["accuracy"] == 1.0
    assert terms["loss"] < math.log(2)
    # the frozen parts saved in the checkpoint are the base model's, bit for bit
    for a, b in ((policy.vae, ref.vae), (policy.text_encoder, ref.text_encoder)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_sft_then_dpo_and_resume_gives_the_same_losses(base, export, tmp_path):
    full = tmp_path / "full"
    run_training(_cfg(base, export, full), lambda: load_export(export), progress=False)
    want = _metrics(full)
    # 8 pairs, 2 × 2 per step → 2 steps per epoch: one SFT epoch, then DPO
    assert [m["phase"] for m in want] == ["sft", "sft", "dpo", "dpo"]
    assert "rewards/accuracies" not in want[0] and "rewards/accuracies" in want[2]

    part = tmp_path / "part"
    cfg = _cfg(base, export, part)
    first = run_training(cfg, lambda: load_export(export), progress=False, stop_after=2)
    assert first.global_step == 2 and (part / "step-2" / "main_config.json").is_file()
    with open(part / "metrics.jsonl", "a") as fh:  # a line an interrupted run wrote past its checkpoint
        fh.write(json.dumps({"step": 3, "loss": 99.0}) + "\n")
    run_training(cfg, lambda: load_export(export), resume=str(part / "step-2"), progress=False)
    got = _metrics(part)
    assert [m["step"] for m in got] == [1, 2, 3, 4]
    for a, b in zip(want, got):
        for key in ("loss", "mse/model_chosen", "rewards/margins", "grad_norm", "lr"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), (a["step"], key)

    # a resume whose recipe differs is refused, naming the field
    with pytest.raises(CuratorError, match="beta"):
        run_training(cfg.replace(beta=100.0), lambda: load_export(export), resume=str(part / "step-2"), progress=False)


def test_cli_two_steps_then_curator_generate(tmp_path):
    """The tiny preset end to end from an exported folder, then `curator generate --checkpoint`."""
    from curator.cli import app as curator_app
    from trainer.cli import app

    export_dir = tmp_path / "export"
    write_export(export_dir, 4, duration_s=DUR)
    out = tmp_path / "run"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"duration_s = {DUR}\ntrain_batch_size = 1\ngradient_accumulation_steps = 1\n")
    res = CliRunner().invoke(app, ["run", "--config", str(cfg), "--model", "tiny", "--data", str(export_dir),
                                   "--out", str(out), "--set", "max_steps=2", "--set", "checkpoint_every=1",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    step = out / "step-2"
    for name in ("main_config.json", "pytorch_model_main.bin", "pytorch_model_vae.bin", "pytorch_model_stft.bin",
                 "trainer_config.json", "trainer_state.json"):
        assert (step / name).is_file(), name
    assert json.loads((step / "trainer_config.json").read_text())["max_steps"] == 2
    assert [m["step"] for m in _metrics(out)] == [2] and (out / "step-1").is_dir()  # log_every 10: the last step

    # resume from the command line: the saved config, with --set for what may change
    res = CliRunner().invoke(app, ["run", "--resume", str(step), "--set", "max_steps=3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (out / "step-3" / "main_config.json").is_file() and [m["step"] for m in _metrics(out)] == [2, 3]

    # what `curator generate --checkpoint` resolves to: load_tango on the checkpoint, the official sampler
    from curator.generate.backends import resolve_generator

    gen = resolve_generator(None, checkpoint=step)
    waves = gen.generate(["a dog barks"], steps=2, guidance=3.0, seeds=[0], duration_s=DUR)
    assert waves[0].shape == (int(DUR * 16000),) and gen.checkpoint_id == str(step.resolve())

    # trainer eval on it: generate on held-out prompts, score with a world judge, write the scores
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog barks\nrain falls\n")
    report = tmp_path / "eval.json"
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(step), "--prompts", str(prompts), "--scorer",
                                   "world-judge-a", "--steps", "2", "--duration", str(DUR), "--out", str(report)])
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    assert data["n"] == 2 and set(data["mean"]) == {"world-judge-a"}

    # and the command itself
    from db.models import Caption, Selection, SelectionRun, text_hash
    from db.session import dispose_engines, open_store, upgrade

    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    with open_store(url)() as s:
        cap = Caption(text="a dog barks", text_sha=text_hash("a dog barks"), cluster=0)
        run = SelectionRun(embedding_model="x", clusters=1, per_cluster=1, seed=0, n_candidates=1, n_selected=1)
        s.add_all([cap, run])
        s.flush()
        s.add(Selection(run_id=run.id, caption_id=cap.id, cluster=0))
        s.commit()
    res = CliRunner().invoke(curator_app, ["generate", "--strategy", "1.2", "--checkpoint", str(step), "--db", url,
                                           "--duration", str(DUR), "--device", "cpu", "--batch-size", "4"])
    dispose_engines()
    assert res.exit_code == 0, res.output
    assert "4 generated" in res.output


@pytest.mark.parametrize("case", ["unknown-key", "out-of-range", "corrupt-audio", "missing-audio", "audioldm2-model",
                                  "not-a-checkpoint", "adamw8bit", "wrong-architecture"])
def test_bad_input_is_one_line(case, base, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainer.cli import app

    export = write_export(tmp_path / "e.parquet", 2, duration_s=DUR)
    args = ["run", "--model", base, "--data", str(export), "--out", str(tmp_path / "run"), "--quiet",
            "--set", f"duration_s={DUR}", "--set", "max_steps=1"]
    expect = {"unknown-key": "unknown key", "out-of-range": "beta", "corrupt-audio": "row 1 rejected",
              "missing-audio": "row 0 chosen", "audioldm2-model": "audioldm2 is not trainable", "not-a-checkpoint":
              "not a trainer checkpoint", "adamw8bit": "bitsandbytes",
              "wrong-architecture": "unet"}[case]
    if case == "unknown-key":
        args += ["--set", "learning_rat=1e-5"]
    elif case == "out-of-range":
        args += ["--set", "beta=-5"]
    elif case in ("corrupt-audio", "missing-audio"):
        table = pq.read_table(export).to_pylist()
        if case == "corrupt-audio":
            table[1]["rejected"] = {"bytes": b"RIFF not really a wave file", "path": "x.wav"}
        else:
            table[0]["chosen"] = {"bytes": None, "path": "gone.wav"}
        pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(export)), export)
    elif case == "audioldm2-model":
        from curator.models.tiny import build_tiny_audioldm2

        args[2] = str(build_tiny_audioldm2(tmp_path / "audioldm2"))
    elif case == "not-a-checkpoint":
        args += ["--resume", str(tmp_path)]
    elif case == "wrong-architecture":  # a Tango folder whose UNet config does not fit its weights
        import shutil

        other = tmp_path / "other"
        shutil.copytree(base, other)
        cfg = json.loads((other / "unet_config.json").read_text())
        cfg["cross_attention_dim"] = 48
        (other / "unet_config.json").write_text(json.dumps(cfg))
        args[2] = str(other)
    elif case == "adamw8bit":
        try:
            import bitsandbytes  # noqa: F401
            pytest.skip("bitsandbytes is installed")
        except ImportError:
            pass
        args += ["--set", "optimizer=adamw8bit"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and expect in lines[0].lower(), res.output


# --------------------------------------------------------------------------- the reference pre-pass

REF_RUN = dict(dpo_epochs=2, uncond_prob=0.5)  # 1 SFT + 2 DPO epochs of 2 steps, with dropout


def test_precomputed_reference_trains_like_the_live_pass(base, export, tmp_path, one_torch_thread):
    live = tmp_path / "live"
    run_training(_cfg(base, export, live, precompute_reference=False, **REF_RUN), lambda: load_export(export), progress=False)
    pre = tmp_path / "pre"
    run_training(_cfg(base, export, pre, **REF_RUN), lambda: load_export(export), progress=False)
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
    run_training(_cfg(base, export, tmp_path / "a", cache_dir=str(cache), **REF_RUN), lambda: load_export(export), progress=False)
    (folder,) = (cache / "reference").iterdir()
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    run_training(_cfg(base, export, tmp_path / "b", cache_dir=str(cache), beta=500.0, learning_rate=3e-4, **REF_RUN),
                 lambda: load_export(export), progress=False)
    assert [p.name for p in (cache / "reference").iterdir()] == [folder.name]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp  # nothing recomputed
    # another seed draws other noise: another key
    run_training(_cfg(base, export, tmp_path / "c", cache_dir=str(cache), seed=1, **REF_RUN), lambda: load_export(export),
                 progress=False)
    assert len(list((cache / "reference").iterdir())) == 2


def test_table_fills_only_missing_chunks_and_checks_its_range(tmp_path):
    calls = []

    def compute(micro):
        calls.append(micro)
        return torch.full((4,), float(micro))

    table = ReferenceTable(tmp_path / "ref", first=10, count=CHUNK + 3)
    assert table.fill(compute, progress=False) == CHUNK + 3
    (tmp_path / "ref" / "chunk-000001-3.pt").unlink()  # an interrupted pre-pass: the last chunk missing
    calls.clear()
    again = ReferenceTable(tmp_path / "ref", first=10, count=CHUNK + 3)
    assert again.fill(compute, progress=False) == 3 and calls == [10 + CHUNK, 11 + CHUNK, 12 + CHUNK]
    assert float(again[10][0]) == 10.0 and float(again[10 + CHUNK + 2][0]) == 10.0 + CHUNK + 2
    with pytest.raises(IndexError, match="outside"):
        again[9]
    # a longer run over the same plan (a resume with a higher max_steps): only the short last chunk is redone
    calls.clear()
    longer = ReferenceTable(tmp_path / "ref", first=10, count=CHUNK + 5)
    assert longer.fill(compute, progress=False) == 5 and calls == [10 + CHUNK + k for k in range(5)]
    assert float(longer[10 + CHUNK + 4][0]) == 10.0 + CHUNK + 4
    shorter = ReferenceTable(tmp_path / "ref", first=10, count=20)  # reads the full chunk 0
    assert shorter.fill(compute, progress=False) == 0 and float(shorter[29][0]) == 29.0


def test_resume_latest_and_the_checkpoint_limit(tmp_path):
    """`--resume latest` picks the highest step-K; checkpoints_total_limit removes the oldest after
    each new one, but never the checkpoint the run resumed from."""
    from trainer.cli import app

    export_dir = write_export(tmp_path / "export", 2, duration_s=DUR)
    out = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"duration_s: {DUR}\ntrain_batch_size: 1\ngradient_accumulation_steps: 1\n"
                   "checkpoint_every: 1\ncheckpoints_total_limit: 2\nlog_every: 1\n")
    res = CliRunner().invoke(app, ["run", "--resume", "latest", "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and "--resume latest" in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(app, ["run", "--config", str(cfg), "--model", "tiny", "--data", str(export_dir),
                                   "--out", str(out), "--set", "max_steps=3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("step-*")) == ["step-2", "step-3"]
    res = CliRunner().invoke(app, ["run", "--resume", "latest", "--out", str(out), "--set", "max_steps=5", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "trained 5 steps" in res.output
    assert sorted(p.name for p in out.glob("step-*")) == ["step-3", "step-5"]  # step-3: resumed from
    assert [m["step"] for m in _metrics(out)] == [1, 2, 3, 4, 5]
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(app, ["run", "--resume", "latest", "--out", str(empty), "--quiet"])
    assert res.exit_code == 2 and "no checkpoint in" in res.output


def test_report_to_tensorboard_logs_what_metrics_jsonl_has(base, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    export = write_export(tmp_path / "e.parquet", 2, duration_s=DUR)
    out = tmp_path / "run"
    run_training(_cfg(base, export, out, train_batch_size=1, gradient_accumulation_steps=1, max_steps=3,
                      report_to="tensorboard"), lambda: load_export(export), progress=False)
    events = list((out / "trainer").rglob("events.out.tfevents.*"))
    assert events, sorted(p.relative_to(out) for p in out.rglob("*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    lines = _metrics(out)  # the source of truth: the tracker holds the same numbers
    got = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert [s for s, _ in got] == [m["step"] for m in lines] == [1, 2, 3]
    assert [v for _, v in got] == pytest.approx([m["loss"] for m in lines], rel=1e-6)


def test_report_to_a_missing_tracker_names_the_extra(base, tmp_path, monkeypatch):
    import importlib.util

    from trainer.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    export = write_export(tmp_path / "e.parquet", 2, duration_s=DUR)
    res = CliRunner().invoke(app, ["run", "--model", base, "--data", str(export), "--out", str(tmp_path / "run"),
                                   "--set", f"duration_s={DUR}", "--set", "max_steps=1", "--set", "report_to=mlflow",
                                   "--quiet"])
    assert res.exit_code == 2
    assert res.output.strip() == ("error: report_to=mlflow needs the mlflow package: "
                                  "pip install 'audio-alpaca-studio[mlflow]'")
    assert not (tmp_path / "run" / "step-1").exists()  # refused before any work
