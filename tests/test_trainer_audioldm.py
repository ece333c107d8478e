"""`trainer run` on an AudioLDM-family model: a tiny diffusers AudioLDMPipeline saved with
save_pretrained, trained through the same loop (CLAP embedding as the UNet's class label),
checkpointed as a pipeline folder that `curator generate --checkpoint` loads."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trainer.cache import FeatureCache
from trainer.config import TrainConfig
from trainer.data import load_export
from trainer.model import load_base
from trainer.synthetic import write_export
from trainer.steps import load_features, pair_terms
from trainer.train import run_training

DUR = 0.32


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from curator.models.tiny import build_tiny_audioldm

    return str(build_tiny_audioldm(tmp_path_factory.mktemp("tiny") / "audioldm"))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_export(tmp_path_factory.mktemp("export") / "train.parquet", 8, duration_s=DUR)


def _cfg(base, export, out, **kw):
    values = dict(model=base, data=str(export), out=str(out), duration_s=DUR, train_batch_size=4,
                  gradient_accumulation_steps=1, sft_epochs=0, dpo_epochs=1, max_steps=20, lr_warmup_steps=0,
                  lr_scheduler="constant", learning_rate=1e-3, log_every=1, checkpoint_every=100, uncond_prob=0.0)
    values.update(kw)
    return TrainConfig(**values)


def test_audioldm_unet_learns_the_pairs_and_the_checkpoint_generates(base, export, tmp_path, one_torch_thread):
    from curator.generate.backends import AudioLDMGenerator, resolve_generator

    out = tmp_path / "run"
    result = run_training(_cfg(base, export, out), lambda: load_export(export), progress=False)
    step = result.checkpoints[-1]
    assert step.name == "step-20" and (step / "model_index.json").is_file()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in lines] == ["dpo"] * 20 and all(math.isfinite(m["loss"]) for m in lines)

    policy, ref = load_base(str(step)), load_base(base)
    feats = load_features(FeatureCache(out / "cache", ref, duration_s=DUR), load_export(export))
    assert feats.chosen.shape[1] == ref.vae.config.latent_channels
    assert feats.hidden.shape[1] == 1  # the CLAP embedding, one position
    assert feats.null_hidden is not None and float(feats.null_hidden.norm()) == pytest.approx(1.0, abs=1e-5)
    terms = pair_terms(policy.unet, ref.unet, ref.scheduler, feats, beta=2000.0, seed=123)
    assert terms["accuracy"] == 1.0 and terms["loss"] < math.log(2)
    # only the UNet was trained: the frozen parts saved in the checkpoint are the base model's
    for a, b in ((policy.vae, ref.vae), (policy.text_encoder, ref.text_encoder), (policy.vocoder, ref.vocoder)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert any(not torch.equal(x, y) for x, y in zip(policy.unet.state_dict().values(), ref.unet.state_dict().values()))

    gen = resolve_generator(None, checkpoint=step)
    assert isinstance(gen, AudioLDMGenerator)
    (clip,) = gen.generate(["a dog barking"], steps=2, guidance=3.0, seeds=[0], duration_s=DUR)
    assert clip.dtype == np.float32 and len(clip) == round(DUR * 16000) and np.all(np.isfinite(clip))


def test_sft_then_dpo_and_resume_on_audioldm(base, export, tmp_path, one_torch_thread):
    kw = dict(train_batch_size=2, gradient_accumulation_steps=2, sft_epochs=1, dpo_epochs=1, max_steps=0,
              lr_warmup_steps=1, lr_scheduler="linear", learning_rate=1e-4, uncond_prob=0.5)
    full = tmp_path / "full"
    run_training(_cfg(base, export, full, **kw), lambda: load_export(export), progress=False)
    want = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in want] == ["sft", "sft", "dpo", "dpo"]
    part = tmp_path / "part"
    cfg = _cfg(base, export, part, **kw)
    run_training(cfg, lambda: load_export(export), progress=False, stop_after=3)
    run_training(cfg, lambda: load_export(export), resume=str(part / "step-3"), progress=False)
    got = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(want, got, strict=True):
        for key in ("loss", "mse/model_chosen", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), (a["step"], key)

