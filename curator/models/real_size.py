"""Tango at its true dimensions, with random weights: for measuring what a real training step or
generation batch costs without downloading a checkpoint.

The architecture is the published one (arXiv 2404.09956 §3.1): the UNet of declare-lab/tango's
`configs/diffusion_model_config.json` (curator.models.tango.TANGO_UNET_CONFIG), AudioLDM's VAE
and STFT as the declare-lab checkpoints publish them in `vae_config.json` / `stft_config.json`,
AudioLDM's 16 kHz / 64-mel HiFi-GAN (tango.HIFIGAN_16K_64), and a T5 encoder of
FLAN-T5-Large's shape (24 layers, d_model 1024, 16 heads, gated-GELU feed-forward of 2816). The
tokenizer is the offline one of curator.models.tiny (the encoder keeps FLAN-T5's 32 128-row
embedding). `build_real_size_tango` saves it in the declare-lab layout, so it goes through
`load_tango` exactly like a downloaded checkpoint.

`overrides` shrink any part while keeping its structure (block types, layers, linear projection,
upcast attention): the tests build such a model; the benchmark builds the real one.
`parameter_counts` counts every part at full size on the meta device (no memory).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from curator.models.tango import Tango, save_tango
from curator.models.tango.config import (
    HIFIGAN_16K_64,
    SD21_SCHEDULER_CONFIG,
    StftConfig,
    TANGO_UNET_CONFIG,
    VaeConfig,
)
from curator.models.tango.parts import stft_buffers, unet_from_config, vae_from_config, vocoder_from_config

# FLAN-T5-Large's encoder (arXiv 2404.09956 §3.1: hidden size 1024), as transformers T5Config arguments.
FLAN_T5_LARGE: dict[str, Any] = {
    "vocab_size": 32128,
    "d_model": 1024,
    "d_kv": 64,
    "d_ff": 2816,
    "num_layers": 24,
    "num_heads": 16,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "dropout_rate": 0.1,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
    "tie_word_embeddings": False,
    "is_encoder_decoder": False,
    "use_cache": False,
}

# AudioLDM's VAE in its vae_config.json form (the one Tango's checkpoints carry): 1-channel mel
# in, 8 latent channels, channels 128·(1, 2, 4), 2 res blocks per level, no down/up attention.
AUDIOLDM_VAE: dict[str, Any] = {
    "image_key": "fbank",
    "subband": 1,
    "embed_dim": 8,
    "time_shuffle": 1,
    "ddconfig": {"double_z": True, "z_channels": 8, "resolution": 256, "downsample_time": False, "in_channels": 1,
                 "out_ch": 1, "ch": 128, "ch_mult": [1, 2, 4], "num_res_blocks": 2, "attn_resolutions": [],
                 "dropout": 0.0},
    "scale_factor": 0.9227914214134216,
}

PARTS = ("unet", "text_encoder", "vae", "vocoder")


def real_size_configs(overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The four parts' configs (unet: diffusers, text_encoder: T5Config, vae: vae_config.json,
    vocoder: AudioLDM HiFi-GAN), with OVERRIDES[part] merged in (vae: into ddconfig too)."""
    configs = {"unet": copy.deepcopy(TANGO_UNET_CONFIG), "text_encoder": dict(FLAN_T5_LARGE),
               "vae": copy.deepcopy(AUDIOLDM_VAE), "vocoder": copy.deepcopy(HIFIGAN_16K_64)}
    for part, changes in (overrides or {}).items():
        if part not in configs:
            raise ValueError(f"unknown part {part!r} (parts: {', '.join(PARTS)})")
        changes = dict(changes)
        if part == "vae" and "ddconfig" in changes:
            configs["vae"]["ddconfig"].update(changes.pop("ddconfig"))
        configs[part].update(changes)
    return configs


def _modules(configs: dict[str, dict[str, Any]]) -> dict[str, torch.nn.Module]:
    from transformers import T5Config, T5EncoderModel

    return {"unet": unet_from_config(configs["unet"]),
            "text_encoder": T5EncoderModel(T5Config(**configs["text_encoder"])),
            "vae": vae_from_config(VaeConfig(**configs["vae"]), "real-size vae"),
            "vocoder": vocoder_from_config(configs["vocoder"])}


def parameter_counts(overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, int]:
    """Parameters of each part (and `total`), counted on the meta device: nothing is allocated."""
    with torch.device("meta"):
        modules = _modules(real_size_configs(overrides))
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
    counts["total"] = sum(counts.values())
    return counts


def real_size_tango(seed: int = 0, *, overrides: dict[str, dict[str, Any]] | None = None) -> Tango:
    """Tango at its real dimensions (or OVERRIDES' smaller ones), random weights seeded by SEED."""
    from diffusers import DDPMScheduler

    from curator.models.tiny import tiny_tokenizer

    torch.manual_seed(seed)
    configs = real_size_configs(overrides)
    modules = _modules(configs)
    stft = StftConfig()  # AudioLDM's stft_config.json: 1024 / 160 / 1024, 64 mels, 16 kHz, 0–8000 Hz
    buffers = stft_buffers(stft)
    return Tango(
        tokenizer=tiny_tokenizer(), text_encoder=modules["text_encoder"].eval().requires_grad_(False),
        unet=modules["unet"].eval(), vae=modules["vae"].eval(), vocoder=modules["vocoder"].eval(),
        scheduler=DDPMScheduler(**SD21_SCHEDULER_CONFIG), stft=stft, mel_basis=buffers["mel_basis"],
        config={"text_encoder_name": "google/flan-t5-large", "scheduler_name": "stabilityai/stable-diffusion-2-1",
                "unet_model_name": None, "unet_model_config_path": "unet_config.json", "snr_gamma": None,
                "freeze_text_encoder": True, "uncondition": False},
        source=f"real-size(seed={seed})", stft_buffers=buffers,
    )


def build_real_size_tango(folder: str | Path, seed: int = 0, *,
                          overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """Build the real-size Tango (random weights) and save it in the declare-lab layout at FOLDER."""
    return save_tango(real_size_tango(seed, overrides=overrides), folder)
