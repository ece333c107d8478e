"""The Tango checkpoint's configs: the declare-lab layout's file names, the published defaults a
real checkpoint omits (UNet, scheduler, vocoder), and typed dataclasses for main_config.json,
stft_config.json and vae_config.json that validate on load with one line naming the bad value."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from db.errors import CuratorError

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
