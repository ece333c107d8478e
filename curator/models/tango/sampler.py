"""The official Tango sampler (arXiv 2404.09956 §3.1): classifier-free guidance with the T5
encoding of "" as the unconditional input, one seeded generator per clip."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from db.errors import CuratorError
from curator.models.tango.model import Tango, encode_ids, encode_text, latent_to_waveform
from curator.paper import GUIDANCE_SCALE

def latent_frames(tango: Tango, duration_s: float) -> int:
    """Latent time length for a clip of duration_s: mel frames / VAE factor, rounded up to what
    the UNet's downsampling needs (10.24 s → 1024 frames → 256, arXiv 2404.09956 §3.1)."""
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise CuratorError(f"duration must be a positive number of seconds, got {duration_s!r}")
    frames = math.ceil(duration_s * tango.sample_rate / tango.stft.hop_length)
    unet_factor = 2 ** (len(tango.unet.config.block_out_channels) - 1)
    return math.ceil(math.ceil(frames / tango.vae_factor) / unet_factor) * unet_factor


def _guidance_inputs(tango: Tango, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """[uncond; cond] encodings as the official sampler: "" padded to the prompts' length."""
    batch = tango.tokenizer(list(prompts), max_length=tango.tokenizer.model_max_length, padding=True,
                            truncation=True, return_tensors="pt")
    cond, cond_mask = encode_ids(tango, batch.input_ids, batch.attention_mask)
    uncond_batch = tango.tokenizer([""] * len(prompts), max_length=cond.shape[1], padding="max_length",
                                   truncation=True, return_tensors="pt")
    uncond, uncond_mask = encode_ids(tango, uncond_batch.input_ids, uncond_batch.attention_mask)
    return torch.cat([uncond, cond]), torch.cat([uncond_mask, cond_mask])


def generate(
    tango: Tango,
    prompts: Sequence[str],
    *,
    steps: int,
    guidance: float = GUIDANCE_SCALE,
    seeds: Sequence[int],
    duration_s: float,
    progress: bool = False,
) -> list[np.ndarray]:
    """The official Tango sampler, batched: one float32 16 kHz waveform per prompt. Each clip's
    starting noise and its DDPM step noise come from its own seeded generator, so a clip does not
    depend on what else is in the batch."""
    from diffusers import DDPMScheduler
    from tqdm.auto import tqdm

    if len(prompts) != len(seeds):
        raise CuratorError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    if not prompts:
        return []
    if not (isinstance(steps, int) and steps >= 1):
        raise CuratorError(f"steps must be a positive integer, got {steps!r}")
    device, dtype = tango.device, tango.dtype
    scheduler = DDPMScheduler.from_config(tango.scheduler.config)  # a private copy: set_timesteps mutates
    cfg = guidance > 1.0

    # 1. text encodings ([uncond; cond] for classifier-free guidance)
    if cfg:
        hidden, mask = _guidance_inputs(tango, prompts)
    else:
        hidden, mask = encode_text(tango, prompts)
    hidden = hidden.to(dtype)

    # 2. starting noise, one generator per clip (on CPU, so a seed means the same clip anywhere)
    t_lat = latent_frames(tango, duration_s)
    f_lat = tango.stft.n_mel_channels // tango.vae_factor
    shape = (tango.unet.config.in_channels, t_lat, f_lat)
    gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    latents = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device, dtype)  # (B, 8, t, 16)
    scheduler.set_timesteps(steps, device=device)
    latents = latents * scheduler.init_noise_sigma

    # 3. denoising loop (official: scale input, UNet with encoder_attention_mask, guidance, step)
    for t in tqdm(scheduler.timesteps, disable=not progress, desc="denoising", leave=False):
        model_in = torch.cat([latents] * 2) if cfg else latents
        model_in = scheduler.scale_model_input(model_in, t)
        with torch.no_grad():
            pred = tango.unet(model_in, t, encoder_hidden_states=hidden, encoder_attention_mask=mask).sample
        if cfg:
            uncond, cond = pred.chunk(2)
            pred = uncond + guidance * (cond - uncond)
        # step noise from the same per-clip generators (diffusers accepts one generator per sample)
        latents = scheduler.step(pred, t, latents, generator=gens).prev_sample

    # 4. decode, trim to the asked duration
    waves = latent_to_waveform(tango, latents).cpu().numpy()
    n = int(round(duration_s * tango.sample_rate))
    return [np.ascontiguousarray(w[:n], dtype=np.float32) for w in waves]
