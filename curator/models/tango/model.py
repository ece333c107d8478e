"""The loaded Tango and what it computes outside sampling: T5 text encodings, 16 kHz waveforms to
AudioLDM's log-mel, mel to scaled VAE latents and latents back to waveforms (VAE decoder, then
HiFi-GAN)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from db.errors import CuratorError
from curator.models.tango.config import StftConfig

class MelLatentParts:
    """What the mel/latent helpers below read of a model, shared by Tango and the AudioLDM
    training view (curator.models.audioldm.AudioLDMModel): `stft`, `vae`, `unet`."""

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def sample_rate(self) -> int:
        return self.stft.sampling_rate

    @property
    def vae_factor(self) -> int:
        """Time/frequency downsampling of the VAE (4 for AudioLDM's)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


@dataclass
class Tango(MelLatentParts):
    """A loaded Tango: every part, and what is needed to save it again."""

    tokenizer: Any  # transformers tokenizer of the text encoder
    text_encoder: Any  # transformers T5EncoderModel, frozen
    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL (AudioLDM's weights)
    vocoder: Any  # transformers SpeechT5HifiGan (AudioLDM's HiFi-GAN)
    scheduler: Any  # diffusers DDPMScheduler (v-prediction)
    stft: StftConfig
    mel_basis: torch.Tensor  # (n_mels, filter_length // 2 + 1)
    config: dict[str, Any]  # main_config.json
    source: str  # folder or hub id it was loaded from
    stft_buffers: dict[str, torch.Tensor] = field(default_factory=dict)  # pytorch_model_stft.bin as read

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Tango":
        for module in (self.text_encoder, self.unet, self.vae, self.vocoder):
            if device is not None:
                module.to(device)
            if dtype is not None and next(module.parameters()).dtype != dtype:
                module.to(dtype)
        self.mel_basis = self.mel_basis.to(device=device)
        return self


# --------------------------------------------------------------------------- text, mel, latents


def encode_text(tango: Tango, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 encodings as the official code computes them: (hidden (B, L, D), mask (B, L) bool),
    padded to the longest prompt, truncated at the tokenizer's model_max_length."""
    if isinstance(prompts, str) or not prompts:
        raise CuratorError("encode_text needs a non-empty list of prompts")
    batch = tango.tokenizer(list(prompts), max_length=tango.tokenizer.model_max_length, padding=True,
                            truncation=True, return_tensors="pt")
    return encode_ids(tango, batch.input_ids, batch.attention_mask)


def encode_ids(tango: Tango, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    device = tango.text_encoder.device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    with torch.no_grad():  # the text encoder is frozen (arXiv 2404.09956 §3.1)
        hidden = tango.text_encoder(input_ids=input_ids, attention_mask=attention_mask)[0]  # (B, L, D)
    return hidden, attention_mask == 1


def waveform_to_mel(tango: Tango, waves: torch.Tensor | np.ndarray, *, normalize: bool = True) -> torch.Tensor:
    """16 kHz waveforms (B, T) → log-mel (B, 1, T // hop, n_mels), as AudioLDM's TacotronSTFT
    (hann-windowed magnitude STFT with reflect padding, the checkpoint's mel filterbank,
    log(clamp(x, 1e-5))). normalize: the official preprocessing (remove the mean, peak at 0.5)."""
    x = torch.as_tensor(waves, dtype=torch.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise CuratorError(f"waveform_to_mel expects (B, T) waveforms, got shape {tuple(x.shape)}")
    s = tango.stft
    frames = x.shape[1] // s.hop_length
    if frames < 1:
        raise CuratorError(f"waveform of {x.shape[1]} samples is shorter than one hop ({s.hop_length})")
    x = x.to(tango.mel_basis.device)
    if normalize:
        x = x - x.mean(dim=1, keepdim=True)
        x = 0.5 * x / x.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
    x = torch.nan_to_num(x.clamp(-1.0, 1.0))
    window = torch.hann_window(s.win_length, periodic=True, device=x.device)
    spec = torch.stft(x, n_fft=s.filter_length, hop_length=s.hop_length, win_length=s.win_length, window=window,
                      center=True, pad_mode="reflect", return_complex=True).abs()  # (B, F, frames + 1)
    mel = torch.log(torch.clamp(tango.mel_basis @ spec, min=1e-5))  # (B, n_mels, frames + 1)
    return mel.transpose(1, 2)[:, None, :frames, :]  # (B, 1, frames, n_mels)


def mel_to_latent(tango: Tango, mel: torch.Tensor, *, sample: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """log-mel (B, 1, frames, n_mels) → scaled VAE latents (B, 8, frames / 4, n_mels / 4).
    sample=False takes the posterior mean; True draws one sample (with generator if given)."""
    f = tango.vae_factor
    if mel.ndim != 4 or mel.shape[1] != 1 or mel.shape[2] % f or mel.shape[3] % f:
        raise CuratorError(f"mel_to_latent expects (B, 1, frames, n_mels) with both divisible by {f}, "
                           f"got {tuple(mel.shape)}")
    mel = mel.to(device=tango.vae.device, dtype=next(tango.vae.parameters()).dtype)
    with torch.no_grad():
        posterior = tango.vae.encode(mel).latent_dist
        z = posterior.sample(generator=generator) if sample else posterior.mode()
    return z * tango.vae.config.scaling_factor  # (B, 8, frames / 4, 16)


def latent_to_waveform(tango: Tango, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents (B, 8, t, 16) → waveforms (B, 4·t·hop) in [-1, 1] (VAE decoder, then HiFi-GAN)."""
    vae_dtype = next(tango.vae.parameters()).dtype
    with torch.no_grad():
        mel = tango.vae.decode(latents.to(tango.vae.device, vae_dtype) / tango.vae.config.scaling_factor).sample
        voc_dtype = next(tango.vocoder.parameters()).dtype
        wave = tango.vocoder(mel.squeeze(1).to(voc_dtype))  # (B, samples)
    return wave.float().clamp(-1.0, 1.0)
