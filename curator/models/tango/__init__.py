"""Tango (arXiv 2404.09956 §3.1) in diffusers/transformers classes, read from and written to the
declare-lab checkpoint layout. The ONE Tango loader: the curator and the trainer both use it.

The package's public API is what this module exports (below); the pieces live in
`config` (file names, defaults, typed configs), `keys` (one rule table per name mapping, used in
both directions), `parts` (parts built from configs), `checkpoint` (load and save), `model` (the
`Tango` dataclass, text/mel/latent conversions) and `sampler` (the official sampler).

API:

- `Tango` dataclass: tokenizer, text_encoder (`T5EncoderModel`, frozen), unet
  (`UNet2DConditionModel`), vae (diffusers `AutoencoderKL`), vocoder (`SpeechT5HifiGan`),
  scheduler (`DDPMScheduler`, v-prediction), stft (`StftConfig`), mel_basis, config (the
  main_config.json dict), source (folder or hub id it came from).
- `load_tango(path_or_hub_id, *, device="cpu", dtype=torch.float32) -> Tango`
- `save_tango(tango, folder) -> Path` (same layout, atomic)
- `encode_text(tango, prompts) -> (hidden (B, L, D), mask (B, L) bool)`
- `latent_frames(tango, duration_s) -> int`: latent time length of a clip
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

from curator.models.tango.checkpoint import load_tango, save_tango
from curator.models.tango.model import Tango, encode_text, latent_to_waveform, mel_to_latent, waveform_to_mel
from curator.models.tango.sampler import generate, latent_frames

__all__ = ["Tango", "load_tango", "save_tango", "encode_text", "waveform_to_mel", "mel_to_latent",
           "latent_to_waveform", "latent_frames", "generate"]
