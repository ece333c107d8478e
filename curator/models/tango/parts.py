"""Empty Tango parts built from their configs (diffusers UNet and AutoencoderKL, transformers
SpeechT5HifiGan, the DDPM scheduler), the configs written back from built parts, and the STFT
buffers AudioLDM's TacotronSTFT holds."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from db.errors import CuratorError
from curator.models.tango.config import SD21_SCHEDULER_CONFIG, StftConfig, VaeConfig

def unet_from_config(config: dict[str, Any]):
    from diffusers import UNet2DConditionModel

    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        return UNet2DConditionModel.from_config(cfg)
    except (TypeError, ValueError) as exc:
        raise CuratorError(f"UNet config is invalid: {str(exc).splitlines()[0]}") from None


def vae_from_config(vc: VaeConfig, where: str):
    from diffusers import AutoencoderKL

    dd = vc.dd(where)
    n = len(dd.ch_mult)
    return AutoencoderKL(
        in_channels=dd.in_channels,
        out_channels=dd.out_ch,
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
        block_out_channels=[dd.ch * m for m in dd.ch_mult],
        latent_channels=dd.z_channels,
        layers_per_block=dd.num_res_blocks,
        sample_size=dd.resolution,
        scaling_factor=float(vc.scale_factor),
    )


def vae_config_of(vae) -> dict[str, Any]:
    """diffusers AutoencoderKL → the AudioLDM vae_config.json it corresponds to."""
    boc = list(vae.config.block_out_channels)
    ch = boc[0]
    if any(c % ch for c in boc):
        raise CuratorError(f"VAE block_out_channels {boc} are not multiples of the first one; cannot write vae_config.json")
    if list(vae.config.down_block_types) != ["DownEncoderBlock2D"] * len(boc):
        raise CuratorError(f"VAE down_block_types {vae.config.down_block_types} are not AudioLDM's")
    return {
        "image_key": "fbank",
        "subband": 1,
        "embed_dim": int(vae.config.latent_channels),
        "time_shuffle": 1,
        "ddconfig": {
            "double_z": True,
            "z_channels": int(vae.config.latent_channels),
            "resolution": int(vae.config.sample_size if isinstance(vae.config.sample_size, int) else 256),
            "downsample_time": False,
            "in_channels": int(vae.config.in_channels),
            "out_ch": int(vae.config.out_channels),
            "ch": int(ch),
            "ch_mult": [int(c // ch) for c in boc],
            "num_res_blocks": int(vae.config.layers_per_block),
            "attn_resolutions": [],
            "dropout": 0.0,
        },
        "scale_factor": float(vae.config.scaling_factor),
    }


def vocoder_from_config(cfg: dict[str, Any]):
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    return SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=cfg["num_mels"],
            sampling_rate=cfg["sampling_rate"],
            upsample_initial_channel=cfg["upsample_initial_channel"],
            upsample_rates=list(cfg["upsample_rates"]),
            upsample_kernel_sizes=list(cfg["upsample_kernel_sizes"]),
            resblock_kernel_sizes=list(cfg["resblock_kernel_sizes"]),
            resblock_dilation_sizes=[list(d) for d in cfg["resblock_dilation_sizes"]],
            normalize_before=False,
        )
    )


def vocoder_config_of(vocoder) -> dict[str, Any]:
    c = vocoder.config
    return {
        "resblock": "1",
        "upsample_rates": list(c.upsample_rates),
        "upsample_kernel_sizes": list(c.upsample_kernel_sizes),
        "upsample_initial_channel": int(c.upsample_initial_channel),
        "resblock_kernel_sizes": list(c.resblock_kernel_sizes),
        "resblock_dilation_sizes": [list(d) for d in c.resblock_dilation_sizes],
        "num_mels": int(c.model_in_dim),
        "sampling_rate": int(c.sampling_rate),
    }


def stft_buffers(stft: StftConfig) -> dict[str, torch.Tensor]:
    """TacotronSTFT's buffers (what pytorch_model_stft.bin holds) computed from its config."""
    import librosa
    from scipy.signal import get_window

    n_fft, cutoff = stft.filter_length, stft.filter_length // 2 + 1
    fourier = np.fft.fft(np.eye(n_fft))
    basis = np.vstack([np.real(fourier[:cutoff, :]), np.imag(fourier[:cutoff, :])])
    inverse = np.linalg.pinv(n_fft / stft.hop_length * basis).T
    window = get_window("hann", stft.win_length, fftbins=True)
    window = np.pad(window, ((n_fft - stft.win_length) // 2, n_fft - stft.win_length - (n_fft - stft.win_length) // 2))
    mel = librosa.filters.mel(sr=stft.sampling_rate, n_fft=n_fft, n_mels=stft.n_mel_channels,
                              fmin=stft.mel_fmin, fmax=stft.mel_fmax)
    return {
        "stft_fn.forward_basis": torch.tensor(basis * window[None, :], dtype=torch.float32)[:, None, :],
        "stft_fn.inverse_basis": torch.tensor(inverse * window[None, :], dtype=torch.float32)[:, None, :],
        "mel_basis": torch.tensor(mel, dtype=torch.float32),
    }


def default_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SD21_SCHEDULER_CONFIG)  # arXiv 2404.09956 §3.1
