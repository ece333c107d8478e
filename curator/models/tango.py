"""Tango (arXiv 2404.09956 §3.1) in diffusers/transformers classes, read from and written to the
declare-lab checkpoint layout. The ONE Tango loader: the curator and the trainer both use it.

API (others call these; names and signatures are agreed):

- `Tango` dataclass: tokenizer, text_encoder (`T5EncoderModel`, frozen), unet
  (`UNet2DConditionModel`), vae (diffusers `AutoencoderKL`), vocoder (`SpeechT5HifiGan`),
  scheduler (`DDPMScheduler`, v-prediction), stft (`StftConfig`), mel_basis, config (the
  main_config.json dict), source (folder or hub id it came from).
- `load_tango(path_or_hub_id, *, device="cpu", dtype=torch.float32) -> Tango`
- `save_tango(tango, folder) -> Path` (same layout, atomic)
- `encode_text(tango, prompts) -> (hidden (B, L, D), mask (B, L) bool)`
- `waveform_to_mel(tango, waves (B, T) at 16 kHz) -> (B, 1, T // hop, 64)` log-mel
- `mel_to_latent(tango, mel, *, sample=False) -> (B, 8, frames / 4, 16)`, scaled by the VAE's factor
- `latent_to_waveform(tango, latents) -> (B, samples)` float waveform in [-1, 1]
- `generate(tango, prompts, *, steps, guidance, seeds, duration_s) -> list[np.ndarray]`: the
  official sampler (classifier-free guidance with the T5 encoding of "" as the unconditional input).

The checkpoint layout (declare-lab/tango, `tango.py`): a folder or hub repo with
- `main_config.json`: the `AudioDiffusion` arguments (text_encoder_name, scheduler_name,
  unet_model_name, unet_model_config_path, snr_gamma, freeze_text_encoder, uncondition);
- `pytorch_model_main.bin`: the state dict of the whole `AudioDiffusion` module: `unet.*`
  (diffusers UNet2DConditionModel names) and `text_encoder.*` (transformers T5EncoderModel names);
- `vae_config.json` / `pytorch_model_vae.bin`: AudioLDM's own `AutoencoderKL` (LDM key names:
  `encoder.down.0.block.0...`, `mid.attn_1.q` as 1×1 convs, ...) which also holds the HiFi-GAN
  vocoder under `vocoder.*` (`ups.N`, `resblocks.N.convs1.M`, ...); mapped here onto diffusers
  `AutoencoderKL` and transformers `SpeechT5HifiGan`;
- `stft_config.json` / `pytorch_model_stft.bin`: AudioLDM's `TacotronSTFT` arguments and its
  buffers (`stft_fn.forward_basis`, `stft_fn.inverse_basis`, `mel_basis`).
`save_tango` writes the same files (original key names, so a saved folder travels through the
same mapping a downloaded one does) plus what makes it self-contained offline: `unet_config.json`
(named by main_config's unet_model_config_path), `vocoder_config.json`, `text_encoder/` (T5 config
and tokenizer) and `scheduler/scheduler_config.json`. Real checkpoints lack these; their defaults
are the published ones below (UNet: the repo's configs/diffusion_model_config.json; vocoder:
AudioLDM's HiFi-GAN 16 kHz/64 mels; scheduler: SD-2.1's).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from db.errors import CuratorError
from curator.fsutil import remove_stale_siblings, temp_sibling

log = logging.getLogger(__name__)

MAIN_CONFIG = "main_config.json"
MAIN_WEIGHTS = "pytorch_model_main.bin"
VAE_CONFIG = "vae_config.json"
VAE_WEIGHTS = "pytorch_model_vae.bin"
STFT_CONFIG = "stft_config.json"
STFT_WEIGHTS = "pytorch_model_stft.bin"
LAYOUT_FILES = (MAIN_CONFIG, MAIN_WEIGHTS, VAE_CONFIG, VAE_WEIGHTS, STFT_CONFIG, STFT_WEIGHTS)
# written by save_tango so a saved folder loads offline; optional when loading
UNET_CONFIG = "unet_config.json"
VOCODER_CONFIG = "vocoder_config.json"
TEXT_ENCODER_DIR = "text_encoder"
SCHEDULER_DIR = "scheduler"
EXTRA_FILES = (UNET_CONFIG, VOCODER_CONFIG, f"{TEXT_ENCODER_DIR}/*", f"{SCHEDULER_DIR}/*")

# The Tango UNet (arXiv 2404.09956 §3.1; declare-lab/tango configs/diffusion_model_config.json).
TANGO_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 8,
    "sample_size": [32, 2],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
    "upcast_attention": True,
}

# Noise schedule: stabilityai/stable-diffusion-2-1's scheduler config read as a DDPMScheduler,
# as the official code does (arXiv 2404.09956 §3.1): 1000 steps, scaled_linear 0.00085–0.012, v-prediction.
SD21_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}

# AudioLDM's HiFi-GAN (16 kHz, 64 mels; arXiv 2404.09956 §3.1), in the original config's names.
HIFIGAN_16K_64: dict[str, Any] = {
    "resblock": "1",
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [16, 16, 8, 4, 4],
    "upsample_initial_channel": 1024,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "num_mels": 64,
    "sampling_rate": 16000,
}

GUIDANCE = 3.0  # classifier-free guidance scale (arXiv 2404.09956 §3.1)


# --------------------------------------------------------------------------- configs


def _typed(cls, data: Any, where: str, *, optional: frozenset[str] = frozenset()):
    """Build dataclass `cls` from a JSON dict, naming unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise CuratorError(f"{where}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names - optional)
    if unknown:
        raise CuratorError(f"{where}: unknown key(s) {', '.join(unknown)}")
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:  # a required key is missing
        raise CuratorError(f"{where}: {exc}") from None


def _check(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise CuratorError(f"{where}: {message}")


@dataclass
class MainConfig:
    """main_config.json: the arguments of the official `AudioDiffusion`."""

    text_encoder_name: str
    scheduler_name: str
    unet_model_name: str | None = None
    unet_model_config_path: str | None = None
    snr_gamma: float | None = None
    freeze_text_encoder: bool = True
    uncondition: bool = False

    def validate(self, where: str) -> None:
        _check(isinstance(self.text_encoder_name, str) and bool(self.text_encoder_name), where,
               f"text_encoder_name must be a model name, got {self.text_encoder_name!r}")
        _check("t5" in self.text_encoder_name.lower(), where,
               f"text_encoder_name {self.text_encoder_name!r} is not a T5 encoder (Tango uses FLAN-T5)")
        _check(isinstance(self.scheduler_name, str), where, f"scheduler_name must be a string, got {self.scheduler_name!r}")
        _check(self.unet_model_config_path is not None or self.unet_model_name is None, where,
               f"unet_model_name={self.unet_model_name!r} (a UNet initialised from Stable Diffusion with "
               "group_in/group_out adapters) is not supported; only unet_model_config_path checkpoints are")
        _check(self.unet_model_config_path is not None, where, "unet_model_config_path is missing")
        _check(self.snr_gamma is None or (isinstance(self.snr_gamma, (int, float)) and self.snr_gamma > 0), where,
               f"snr_gamma must be positive or null, got {self.snr_gamma!r}")


# keys some released main_config.json files carry that do not change the model
_MAIN_IGNORED = frozenset({"beta_dpo"})


@dataclass
class StftConfig:
    """stft_config.json: AudioLDM's TacotronSTFT arguments (16 kHz, hop 160, 64 mels)."""

    filter_length: int = 1024
    hop_length: int = 160
    win_length: int = 1024
    n_mel_channels: int = 64
    sampling_rate: int = 16000
    mel_fmin: float = 0.0
    mel_fmax: float = 8000.0

    def validate(self, where: str) -> None:
        for name in ("filter_length", "hop_length", "win_length", "n_mel_channels", "sampling_rate"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value > 0, where, f"{name} must be a positive integer, got {value!r}")
        _check(self.win_length <= self.filter_length, where,
               f"win_length {self.win_length} exceeds filter_length {self.filter_length}")
        _check(0 <= self.mel_fmin < self.mel_fmax <= self.sampling_rate / 2, where,
               f"mel range {self.mel_fmin}–{self.mel_fmax} Hz is not within 0–{self.sampling_rate / 2} Hz")


@dataclass
class DDConfig:
    """The encoder/decoder part of AudioLDM's VAE config."""

    z_channels: int
    in_channels: int
    out_ch: int
    ch: int
    ch_mult: list[int]
    num_res_blocks: int
    double_z: bool = True
    resolution: int = 256
    downsample_time: bool = False
    attn_resolutions: list[int] = field(default_factory=list)
    dropout: float = 0.0
    mel_bins: int | None = None


@dataclass
class VaeConfig:
    """vae_config.json: the arguments of AudioLDM's `AutoencoderKL`."""

    ddconfig: dict[str, Any]
    embed_dim: int
    scale_factor: float = 1.0
    image_key: str = "fbank"
    subband: int = 1
    time_shuffle: int = 1

    def dd(self, where: str) -> DDConfig:
        dd = _typed(DDConfig, self.ddconfig, f"{where} ddconfig")
        _check(dd.double_z is True, where, f"ddconfig.double_z must be true, got {dd.double_z!r}")
        _check(not dd.attn_resolutions, where,
               f"ddconfig.attn_resolutions must be empty (diffusers AutoencoderKL has no down/up attention), got {dd.attn_resolutions!r}")
        _check(dd.in_channels == 1 and dd.out_ch == 1, where,
               f"a mel VAE has 1 input and output channel, got in_channels={dd.in_channels}, out_ch={dd.out_ch}")
        _check(isinstance(dd.ch_mult, list) and len(dd.ch_mult) >= 1 and all(isinstance(m, int) and m > 0 for m in dd.ch_mult),
               where, f"ddconfig.ch_mult must be a list of positive integers, got {dd.ch_mult!r}")
        _check(self.embed_dim == dd.z_channels, where,
               f"embed_dim {self.embed_dim} must equal ddconfig.z_channels {dd.z_channels}")
        _check(self.subband == 1, where, f"subband {self.subband} is not supported (only 1)")
        _check(isinstance(self.scale_factor, (int, float)) and self.scale_factor > 0, where,
               f"scale_factor must be positive, got {self.scale_factor!r}")
        return dd


_VAE_IGNORED = frozenset({"lossconfig", "ckpt_path", "reload_from_ckpt", "ignore_keys", "colorize_nlabels",
                          "monitor", "base_learning_rate"})

_VOCODER_KEYS = set(HIFIGAN_16K_64)


def _vocoder_config(data: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(data) - _VOCODER_KEYS)
    _check(not unknown, where, f"unknown key(s) {', '.join(unknown)}")
    cfg = {**HIFIGAN_16K_64, **data}
    _check(str(cfg["resblock"]) == "1", where, f"resblock type {cfg['resblock']!r} is not supported (only '1')")
    _check(len(cfg["upsample_rates"]) == len(cfg["upsample_kernel_sizes"]), where,
           "upsample_rates and upsample_kernel_sizes differ in length")
    _check(len(cfg["resblock_kernel_sizes"]) == len(cfg["resblock_dilation_sizes"]), where,
           "resblock_kernel_sizes and resblock_dilation_sizes differ in length")
    return cfg


# --------------------------------------------------------------------------- the model


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


# --------------------------------------------------------------------------- key mapping

_RESNET_RENAMES = {"nin_shortcut": "conv_shortcut"}
_ATTN_TO_DIFFUSERS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_ATTN_TO_ORIGINAL = {v: k for k, v in _ATTN_TO_DIFFUSERS.items()}


def _resnet_part(rest: str, table: dict[str, str]) -> str:
    head, _, tail = rest.partition(".")
    return f"{table.get(head, head)}.{tail}" if tail else table.get(head, head)


def vae_key_to_diffusers(key: str, n_levels: int) -> str:
    """One AudioLDM (LDM) VAE key → diffusers AutoencoderKL key."""
    if key in ("quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight", "post_quant_conv.bias"):
        return key
    m = re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)", key)
    if m:
        return key
    m = re.fullmatch(r"(encoder|decoder)\.norm_out\.(weight|bias)", key)
    if m:
        return f"{m[1]}.conv_norm_out.{m[2]}"
    m = re.fullmatch(r"encoder\.down\.(\d+)\.block\.(\d+)\.(.+)", key)
    if m:
        return f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{_resnet_part(m[3], _RESNET_RENAMES)}"
    m = re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)", key)
    if m:
        return f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}"
    m = re.fullmatch(r"decoder\.up\.(\d+)\.block\.(\d+)\.(.+)", key)
    if m:
        return f"decoder.up_blocks.{n_levels - 1 - int(m[1])}.resnets.{m[2]}.{_resnet_part(m[3], _RESNET_RENAMES)}"
    m = re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)", key)
    if m:
        return f"decoder.up_blocks.{n_levels - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}"
    m = re.fullmatch(r"(encoder|decoder)\.mid\.block_([12])\.(.+)", key)
    if m:
        return f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{_resnet_part(m[3], _RESNET_RENAMES)}"
    m = re.fullmatch(r"(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)", key)
    if m:
        return f"{m[1]}.mid_block.attentions.0.{_ATTN_TO_DIFFUSERS[m[2]]}.{m[3]}"
    raise KeyError(key)


_RESNET_TO_ORIGINAL = {v: k for k, v in _RESNET_RENAMES.items()}


def vae_key_to_original(key: str, n_levels: int) -> str:
    """One diffusers AutoencoderKL key → AudioLDM (LDM) VAE key (inverse of vae_key_to_diffusers)."""
    if key in ("quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight", "post_quant_conv.bias"):
        return key
    if re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)", key):
        return key
    m = re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(weight|bias)", key)
    if m:
        return f"{m[1]}.norm_out.{m[2]}"
    m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key)
    if m:
        return f"encoder.down.{m[1]}.block.{m[2]}.{_resnet_part(m[3], _RESNET_TO_ORIGINAL)}"
    m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)", key)
    if m:
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key)
    if m:
        return f"decoder.up.{n_levels - 1 - int(m[1])}.block.{m[2]}.{_resnet_part(m[3], _RESNET_TO_ORIGINAL)}"
    m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)", key)
    if m:
        return f"decoder.up.{n_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)", key)
    if m:
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_resnet_part(m[3], _RESNET_TO_ORIGINAL)}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)", key)
    if m:
        return f"{m[1]}.mid.attn_1.{_ATTN_TO_ORIGINAL[m[2]]}.{m[3]}"
    raise KeyError(key)


def _is_attn_proj_weight(original_key: str) -> bool:
    return bool(re.fullmatch(r"(encoder|decoder)\.mid\.attn_1\.(q|k|v|proj_out)\.weight", original_key))


_VOCODER_SAME = re.compile(r"(conv_pre|conv_post)\.(weight|bias)|resblocks\.\d+\.convs[12]\.\d+\.(weight|bias)")


def _rename_vocoder_key(key: str, upsampler_from: str, upsampler_to: str) -> str:
    """HiFi-GAN keys differ only in the upsampler's name (`ups` vs `upsampler`); the rest is kept."""
    m = re.fullmatch(rf"{upsampler_from}\.(\d+)\.(weight|bias)", key)
    if m:
        return f"{upsampler_to}.{m[1]}.{m[2]}"
    if _VOCODER_SAME.fullmatch(key):
        return key
    raise KeyError(key)


def vocoder_key_to_diffusers(key: str) -> str:
    """AudioLDM HiFi-GAN key (without the `vocoder.` prefix) → SpeechT5HifiGan key."""
    return _rename_vocoder_key(key, "ups", "upsampler")


def vocoder_key_to_original(key: str) -> str:
    """SpeechT5HifiGan key → AudioLDM HiFi-GAN key (without the `vocoder.` prefix)."""
    return _rename_vocoder_key(key, "upsampler", "ups")


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace weight-norm pairs (`X.weight_g`, `X.weight_v`, torch's dim=0 convention) by `X.weight`,
    as HiFi-GAN's remove_weight_norm does; plain keys pass through."""
    out = {k: v for k, v in state.items() if not k.endswith((".weight_g", ".weight_v"))}
    for key in state:
        if key.endswith(".weight_v"):
            base = key[: -len("_v")]
            v, g = state[key], state.get(base + "_g")
            if g is None:
                raise CuratorError(f"weight-norm key {key!r} has no matching {base + '_g'!r}")
            norm = v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.ndim - 1)))
            out[base] = g * v / norm
    return out


def original_vae_to_diffusers(
    state: dict[str, torch.Tensor], n_levels: int, *, where: str = VAE_WEIGHTS
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """pytorch_model_vae.bin (AudioLDM names) → (AutoencoderKL state dict, SpeechT5HifiGan state dict)."""
    vae, vocoder = {}, {}
    for key, tensor in fold_weight_norm(state).items():
        try:
            if key.startswith("vocoder."):
                vocoder[vocoder_key_to_diffusers(key[len("vocoder."):])] = tensor
                continue
            new = vae_key_to_diffusers(key, n_levels)
        except KeyError:
            raise CuratorError(f"{where}: unexpected key {key!r} (not an AudioLDM VAE/HiFi-GAN state dict)") from None
        # LDM attention projections are 1×1 convolutions; diffusers uses linear layers
        vae[new] = tensor[:, :, 0, 0] if _is_attn_proj_weight(key) and tensor.ndim == 4 else tensor
    return vae, vocoder


def diffusers_vae_to_original(
    vae_state: dict[str, torch.Tensor], vocoder_state: dict[str, torch.Tensor], n_levels: int
) -> dict[str, torch.Tensor]:
    """Inverse of original_vae_to_diffusers (the vocoder's unused mean/scale buffers are dropped)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in vae_state.items():
        old = vae_key_to_original(key, n_levels)
        out[old] = tensor[:, :, None, None] if _is_attn_proj_weight(old) and tensor.ndim == 2 else tensor
    for key, tensor in vocoder_state.items():
        if key in ("mean", "scale"):  # normalize_before=False: not part of AudioLDM's HiFi-GAN
            continue
        out[f"vocoder.{vocoder_key_to_original(key)}"] = tensor
    return out


# --------------------------------------------------------------------------- building parts


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


# --------------------------------------------------------------------------- loading


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CuratorError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CuratorError(f"{path} is not valid JSON: {exc}") from None


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CuratorError(f"{path} is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CuratorError(f"cannot read {path}: {first}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CuratorError(f"{path} is not a state dict of tensors")
    return state


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_checkpoint(path_or_hub_id: str | Path) -> Path:
    """A local Tango folder, or a hub id downloaded with huggingface_hub (cache first)."""
    spec = str(path_or_hub_id)
    local = Path(spec).expanduser()
    if local.is_dir():
        folder = local
    elif local.exists():
        raise CuratorError(f"Tango checkpoint {spec} is a file; expected a folder with {', '.join(LAYOUT_FILES)}")
    elif _HUB_ID.match(spec) and not spec.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(repo_id=spec, allow_patterns=[*LAYOUT_FILES, *EXTRA_FILES]))
        except Exception as exc:  # offline, unknown repo, network error: one line either way
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CuratorError(f"cannot fetch Tango checkpoint {spec!r} from the Hugging Face hub "
                               f"(not cached, and: {first})") from None
    else:
        raise CuratorError(f"Tango checkpoint {spec} does not exist (neither a folder nor a hub id)")
    missing = [name for name in LAYOUT_FILES if not (folder / name).is_file()]
    if missing:
        raise CuratorError(f"{spec} is not a Tango checkpoint: missing {', '.join(missing)}")
    return folder


def _load_text_encoder(folder: Path, name: str):
    from transformers import AutoConfig, AutoTokenizer, T5Config, T5EncoderModel

    local = folder / TEXT_ENCODER_DIR
    source = str(local) if (local / "config.json").is_file() else name
    try:
        config = AutoConfig.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CuratorError(f"cannot load the text encoder config/tokenizer {source!r} "
                           f"(not in the folder, not cached, and: {first})") from None
    if not isinstance(config, T5Config):
        raise CuratorError(f"text encoder {source!r} is a {type(config).__name__}, not a T5 config")
    from accelerate import init_empty_weights

    with init_empty_weights():
        encoder = T5EncoderModel(config)
    return tokenizer, encoder


def _load_into(module, state: dict[str, torch.Tensor], what: str, where: str) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]!r})")
        raise CuratorError(f"{where}: the {what} weights do not match its config: {', '.join(parts)}")
    for key, tensor in state.items():
        if tuple(expected[key].shape) != tuple(tensor.shape):
            raise CuratorError(f"{where}: {what} weight {key!r} has shape {tuple(tensor.shape)}, "
                               f"the config expects {tuple(expected[key].shape)}")
    module.load_state_dict(state, strict=True, assign=True)


def load_tango(path_or_hub_id: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Tango:
    """Load a Tango checkpoint (declare-lab layout) from a folder or hub id."""
    from accelerate import init_empty_weights

    folder = resolve_checkpoint(path_or_hub_id)
    source = str(path_or_hub_id)

    # 1. configs, validated
    main_raw = _read_json(folder / MAIN_CONFIG)
    main = _typed(MainConfig, main_raw, str(folder / MAIN_CONFIG), optional=_MAIN_IGNORED)
    main.validate(str(folder / MAIN_CONFIG))
    stft = _typed(StftConfig, _read_json(folder / STFT_CONFIG), str(folder / STFT_CONFIG))
    stft.validate(str(folder / STFT_CONFIG))
    vae_where = str(folder / VAE_CONFIG)
    vae_cfg = _typed(VaeConfig, _read_json(folder / VAE_CONFIG), vae_where, optional=_VAE_IGNORED)
    dd = vae_cfg.dd(vae_where)
    voc_path = folder / VOCODER_CONFIG
    voc_cfg = _vocoder_config(_read_json(voc_path) if voc_path.is_file() else {}, str(voc_path))
    if voc_cfg["num_mels"] != stft.n_mel_channels or voc_cfg["sampling_rate"] != stft.sampling_rate:
        raise CuratorError(f"{folder}: vocoder ({voc_cfg['num_mels']} mels, {voc_cfg['sampling_rate']} Hz) "
                           f"does not match stft_config ({stft.n_mel_channels} mels, {stft.sampling_rate} Hz)")
    unet_cfg = _unet_config(folder, main.unet_model_config_path)

    # 2. modules (empty weights, filled from the files below)
    tokenizer, text_encoder = _load_text_encoder(folder, main.text_encoder_name)
    with init_empty_weights():
        unet = unet_from_config(unet_cfg)
        vae = vae_from_config(vae_cfg, vae_where)
    vocoder = vocoder_from_config(voc_cfg)

    # 3. pytorch_model_main.bin: the whole AudioDiffusion module
    main_where = str(folder / MAIN_WEIGHTS)
    state = _read_state(folder / MAIN_WEIGHTS)
    unet_state = {k[5:]: v for k, v in state.items() if k.startswith("unet.")}
    text_state = {k[13:]: v for k, v in state.items() if k.startswith("text_encoder.")}
    other = [k for k in state if not k.startswith(("unet.", "text_encoder."))]
    if not unet_state:
        raise CuratorError(f"{main_where} has no unet.* weights: not a Tango AudioDiffusion state dict")
    if other:
        raise CuratorError(f"{main_where}: unexpected key {other[0]!r} ({len(other)} outside unet.*/text_encoder.*)")
    if not text_state:
        raise CuratorError(f"{main_where} has no text_encoder.* weights")
    # T5 ties the encoder's embeddings to `shared`; checkpoints may keep only one of the two
    if "shared.weight" in text_state and "encoder.embed_tokens.weight" not in text_state:
        text_state["encoder.embed_tokens.weight"] = text_state["shared.weight"]
    if "encoder.embed_tokens.weight" in text_state and "shared.weight" not in text_state:
        text_state["shared.weight"] = text_state["encoder.embed_tokens.weight"]
    _load_into(unet, unet_state, "UNet", main_where)
    _load_into(text_encoder, text_state, "text encoder", main_where)

    # 4. pytorch_model_vae.bin: AudioLDM VAE + HiFi-GAN, original names → diffusers/transformers
    vae_bin = str(folder / VAE_WEIGHTS)
    vae_state, voc_state = original_vae_to_diffusers(_read_state(folder / VAE_WEIGHTS), len(dd.ch_mult), where=vae_bin)
    if not voc_state:
        raise CuratorError(f"{vae_bin} has no vocoder.* weights (AudioLDM's VAE carries its HiFi-GAN)")
    voc_state.setdefault("mean", torch.zeros(voc_cfg["num_mels"]))
    voc_state.setdefault("scale", torch.ones(voc_cfg["num_mels"]))
    _load_into(vae, vae_state, "VAE", vae_bin)
    _load_into(vocoder, voc_state, "vocoder", vae_bin)

    # 5. pytorch_model_stft.bin: TacotronSTFT buffers; the mel filterbank is used here
    stft_bin = str(folder / STFT_WEIGHTS)
    buffers = _read_state(folder / STFT_WEIGHTS)
    if "mel_basis" not in buffers:
        raise CuratorError(f"{stft_bin} has no mel_basis")
    mel_basis = buffers["mel_basis"].float()
    want = (stft.n_mel_channels, stft.filter_length // 2 + 1)
    if tuple(mel_basis.shape) != want:
        raise CuratorError(f"{stft_bin}: mel_basis has shape {tuple(mel_basis.shape)}, stft_config implies {want}")

    # 6. scheduler: the folder's, else the hub's (scheduler_name), else SD-2.1's values
    scheduler = _load_scheduler(folder, main.scheduler_name)

    for module in (text_encoder, unet, vae, vocoder):
        module.eval()
    text_encoder.requires_grad_(False)  # frozen (arXiv 2404.09956 §3.1)
    tango = Tango(
        tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, vae=vae, vocoder=vocoder,
        scheduler=scheduler, stft=stft, mel_basis=mel_basis, config=asdict(main), source=source,
        stft_buffers={k: v.clone() for k, v in buffers.items()},
    )
    return tango.to(device=device, dtype=dtype)


def _unet_config(folder: Path, config_path: str | None) -> dict[str, Any]:
    """The UNet config named by main_config's unet_model_config_path: that file inside the
    checkpoint folder, else (for the official name) the built-in copy of declare-lab's
    configs/diffusion_model_config.json. Never a file outside the folder (the current directory,
    an absolute path): a stray file there would silently change the model. The log line says which."""
    where = folder / MAIN_CONFIG
    if config_path:
        # a lexical check (no symlink resolution): a hub snapshot's files are links into its blob store
        root = Path(os.path.normpath(folder.absolute()))
        candidate = Path(os.path.normpath(root / config_path))
        if root in candidate.parents and candidate.is_file():
            cfg = _read_json(candidate)
            if not isinstance(cfg, dict):
                raise CuratorError(f"{candidate}: expected a JSON object")
            log.info("%s: UNet config from %s", folder, candidate)
            return cfg
        if Path(config_path).name == "diffusion_model_config.json":
            log.info("%s: unet_model_config_path %r is not in the checkpoint folder; using the built-in Tango UNet "
                        "config (declare-lab/tango configs/diffusion_model_config.json)", folder, config_path)
            return dict(TANGO_UNET_CONFIG)  # the official repo's file, shipped with the code
    raise CuratorError(f"{where}: unet_model_config_path {config_path!r} is neither a file inside {folder} nor the "
                       "official configs/diffusion_model_config.json")


def _load_scheduler(folder: Path, scheduler_name: str):
    from diffusers import DDPMScheduler

    local = folder / SCHEDULER_DIR / "scheduler_config.json"
    if local.is_file():
        try:
            return DDPMScheduler.from_pretrained(str(folder), subfolder=SCHEDULER_DIR)
        except Exception as exc:
            raise CuratorError(f"{local}: not a scheduler config ({str(exc).splitlines()[0]})") from None
    if scheduler_name:
        try:
            return DDPMScheduler.from_pretrained(scheduler_name, subfolder="scheduler")
        except Exception:  # offline or not cached: the same values, from arXiv 2404.09956 §3.1
            pass
    return default_scheduler()


# --------------------------------------------------------------------------- saving


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside PATH, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_json(obj: Any, path: Path) -> None:
    from curator.audio import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _contiguous_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _write_layout(tango: Tango, folder: Path) -> None:
    n_levels = len(tango.vae.config.block_out_channels)
    main = dict(tango.config)
    main["unet_model_config_path"] = UNET_CONFIG
    main["unet_model_name"] = None
    _atomic_json(main, folder / MAIN_CONFIG)
    _atomic_json({k: v for k, v in dict(tango.unet.config).items() if not k.startswith("_")}, folder / UNET_CONFIG)
    state = {f"unet.{k}": v for k, v in tango.unet.state_dict().items()}
    state.update({f"text_encoder.{k}": v for k, v in tango.text_encoder.state_dict().items()})
    atomic_torch_save(_contiguous_cpu(state), folder / MAIN_WEIGHTS)
    _atomic_json(vae_config_of(tango.vae), folder / VAE_CONFIG)
    original = diffusers_vae_to_original(tango.vae.state_dict(), tango.vocoder.state_dict(), n_levels)
    atomic_torch_save(_contiguous_cpu(original), folder / VAE_WEIGHTS)
    _atomic_json(vocoder_config_of(tango.vocoder), folder / VOCODER_CONFIG)
    _atomic_json(asdict(tango.stft), folder / STFT_CONFIG)
    buffers = dict(tango.stft_buffers) or stft_buffers(tango.stft)
    buffers["mel_basis"] = tango.mel_basis
    atomic_torch_save(_contiguous_cpu(buffers), folder / STFT_WEIGHTS)
    text_dir = folder / TEXT_ENCODER_DIR
    text_dir.mkdir(exist_ok=True)
    tango.text_encoder.config.save_pretrained(text_dir)
    tango.tokenizer.save_pretrained(text_dir)
    tango.scheduler.save_pretrained(folder / SCHEDULER_DIR)


def save_tango(tango: Tango, folder: str | Path) -> Path:
    """Write TANGO in the declare-lab layout. A new folder appears whole (written beside, then
    renamed); into an existing folder (e.g. a trainer checkpoint) each file is replaced atomically."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CuratorError(f"cannot save Tango to {folder}: it is a file")
    if folder.is_dir():
        _write_layout(tango, folder)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(folder)  # temp folders of a save that was killed
    tmp = temp_sibling(folder)
    tmp.mkdir()
    try:
        _write_layout(tango, tmp)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# --------------------------------------------------------------------------- text, mel, latents


def encode_text(tango: Tango, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 encodings as the official code computes them: (hidden (B, L, D), mask (B, L) bool),
    padded to the longest prompt, truncated at the tokenizer's model_max_length."""
    if isinstance(prompts, str) or not prompts:
        raise CuratorError("encode_text needs a non-empty list of prompts")
    batch = tango.tokenizer(list(prompts), max_length=tango.tokenizer.model_max_length, padding=True,
                            truncation=True, return_tensors="pt")
    return _encode_ids(tango, batch.input_ids, batch.attention_mask)


def _encode_ids(tango: Tango, input_ids: torch.Tensor, attention_mask: torch.Tensor):
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


# --------------------------------------------------------------------------- sampling


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
    cond, cond_mask = _encode_ids(tango, batch.input_ids, batch.attention_mask)
    uncond_batch = tango.tokenizer([""] * len(prompts), max_length=cond.shape[1], padding="max_length",
                                   truncation=True, return_tensors="pt")
    uncond, uncond_mask = _encode_ids(tango, uncond_batch.input_ids, uncond_batch.attention_mask)
    return torch.cat([uncond, cond]), torch.cat([uncond_mask, cond_mask])


def generate(
    tango: Tango,
    prompts: Sequence[str],
    *,
    steps: int,
    guidance: float = GUIDANCE,
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
