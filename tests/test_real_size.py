"""Tango at its true dimensions (curator/models/real_size.py) and the memory estimate that refuses
a run that cannot fit (trainer/memory.py). Cheap: the full size is only counted on the meta
device; what is built and loaded is the same structure at a small width."""

from __future__ import annotations

import pytest

from db.errors import CuratorError
from curator.models.real_size import AUDIOLDM_VAE, FLAN_T5_LARGE, build_real_size_tango, parameter_counts
from curator.models.tango import load_tango
from curator.models.tango.config import HIFIGAN_16K_64, TANGO_UNET_CONFIG
from trainer.config import TrainConfig
from trainer.memory import GiB, check_fits, estimate_train_memory, latent_positions

SMALL = {  # the real structure (block types, layers, heads per level, projections), narrow
    "unet": {"block_out_channels": [32, 64, 64, 64], "attention_head_dim": [1, 2, 2, 2], "cross_attention_dim": 32},
    "text_encoder": {"vocab_size": 1000, "d_model": 32, "d_kv": 8, "d_ff": 88, "num_layers": 2, "num_heads": 4},
    "vae": {"ddconfig": {"ch": 32}},
    "vocoder": {"upsample_initial_channel": 32},
}


def test_full_size_counts_are_the_published_model():
    counts = parameter_counts()  # meta device: nothing allocated
    assert counts["unet"] == 865_933_768  # arXiv 2404.09956 §3.1: the 866 M UNet
    assert counts["text_encoder"] == 341_231_104  # FLAN-T5-Large's encoder
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    assert parameter_counts(SMALL)["unet"] < 5_000_000


def test_real_structure_saved_and_loaded_through_the_one_loader(tmp_path):
    folder = build_real_size_tango(tmp_path / "tango", overrides=SMALL)
    for name in ("main_config.json", "pytorch_model_main.bin", "vae_config.json", "pytorch_model_vae.bin",
                 "stft_config.json", "pytorch_model_stft.bin"):
        assert (folder / name).is_file(), name
    tango = load_tango(folder)
    unet = dict(tango.unet.config)
    for key in ("down_block_types", "up_block_types", "layers_per_block", "in_channels", "out_channels",
                "use_linear_projection", "upcast_attention", "norm_num_groups", "flip_sin_to_cos"):
        assert unet[key] == TANGO_UNET_CONFIG[key] or list(unet[key]) == TANGO_UNET_CONFIG[key], key
    assert list(unet["block_out_channels"]) == [32, 64, 64, 64] and unet["cross_attention_dim"] == 32
    t5 = tango.text_encoder.config
    assert (t5.feed_forward_proj, t5.num_layers, t5.d_model) == (FLAN_T5_LARGE["feed_forward_proj"], 2, 32)
    vae = tango.vae.config
    dd = AUDIOLDM_VAE["ddconfig"]
    assert list(vae.block_out_channels) == [32 * m for m in dd["ch_mult"]]
    assert (vae.latent_channels, vae.layers_per_block) == (dd["z_channels"], dd["num_res_blocks"])
    assert vae.scaling_factor == pytest.approx(AUDIOLDM_VAE["scale_factor"])
    assert list(tango.vocoder.config.upsample_rates) == HIFIGAN_16K_64["upsample_rates"]
    assert (tango.stft.hop_length, tango.stft.n_mel_channels, tango.stft.sampling_rate) == (160, 64, 16000)


def test_memory_estimate_of_the_paper_recipe():
    n = 865_933_768
    cfg = TrainConfig()  # AdamW fp32, 4 pairs × 10.24 s, reference precomputed
    est = estimate_train_memory(n, cfg)
    assert latent_positions(10.24) == 256 * 16
    assert est.weights == est.gradients == 4 * n and est.optimizer == 8 * n and est.reference == 0
    assert est.activations > 0 and est.total > 16 * n
    live = estimate_train_memory(n, cfg.replace(precompute_reference=False))
    assert live.total - est.total == pytest.approx(4 * n)
    small = estimate_train_memory(n, cfg.replace(optimizer="adamw8bit", mixed_precision="bf16",
                                                 gradient_checkpointing=True))
    assert small.optimizer == 2 * n and small.activations < est.activations / 5
    assert "GiB (weights 3.2, gradients 3.2, optimizer 6.5" in est.line() and "4 pair(s) × 10.24 s" in est.line()


def test_a_run_that_cannot_fit_is_refused_before_any_work(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import trainer.memory
    from curator.models.tiny import build_tiny_tango
    from trainer.cli import app
    from trainer.synthetic import write_export

    class Unet:  # the real UNet's size, without its memory
        config = dict(TANGO_UNET_CONFIG)

        def parameters(self):
            import torch

            return iter([torch.empty(1).expand(865_933_768)])

    with pytest.raises(CuratorError) as err:
        check_fits(TrainConfig(), Unet(), "cuda", available=12 * GiB)
    msg = str(err.value)
    assert msg.startswith("this run needs about") and "but cuda has 12.0 GiB free" in msg and "\n" not in msg
    assert "mixed_precision=bf16" in msg and "memory_check=false" in msg
    est = check_fits(TrainConfig(memory_check=False), Unet(), "cuda", available=1 * GiB)  # asked to try anyway
    assert est.total > GiB

    # through `trainer run`: refused with the estimate before the cache or a checkpoint is written
    monkeypatch.setattr(trainer.memory, "free_bytes", lambda device: 1.0 * 2**20)
    base = build_tiny_tango(tmp_path / "tiny")
    export = write_export(tmp_path / "e.parquet", 2, duration_s=0.32)
    out = tmp_path / "run"
    args = ["run", "--model", str(base), "--data", str(export), "--out", str(out), "--quiet",
            "--set", "duration_s=0.32", "--set", "max_steps=1", "--set", "train_batch_size=64"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "error: this run needs about" in res.output and "64 pair(s) × 0.32 s" in res.output
    assert not (out / "cache").exists() and not list(out.glob("step-*"))
