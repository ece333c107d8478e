"""diffusers AudioLDM / AudioLDM2 pipelines by hub id or local folder (a `save_pretrained` folder
whose model_index.json names the pipeline class)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from db.errors import CuratorError
from curator.models.tango.model import MelLatentParts

PIPELINES = {"AudioLDMPipeline": "audioldm", "AudioLDM2Pipeline": "audioldm2"}


def pipeline_class_of(spec: str) -> str | None:
    """The `_class_name` in SPEC's model_index.json (local folder, or the hub when reachable);
    None when SPEC has none."""
    folder = Path(spec).expanduser()
    if folder.is_dir():
        index = folder / "model_index.json"
        if not index.is_file():
            return None
        try:
            return json.loads(index.read_text(encoding="utf-8")).get("_class_name")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise CuratorError(f"{index} is not valid JSON: {exc}") from None
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(spec, "model_index.json")
    except Exception:  # not a hub repo, offline, or no model_index.json
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("_class_name")
    except (json.JSONDecodeError, AttributeError):
        return None


def load_pipeline(spec: str, kind: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """AudioLDMPipeline (kind "audioldm") or AudioLDM2Pipeline ("audioldm2") from SPEC."""
    from diffusers import AudioLDM2Pipeline, AudioLDMPipeline

    cls = {"audioldm": AudioLDMPipeline, "audioldm2": AudioLDM2Pipeline}.get(kind)
    if cls is None:
        raise CuratorError(f"unknown AudioLDM kind {kind!r} (expected audioldm or audioldm2)")
    try:
        pipe = cls.from_pretrained(spec, dtype=dtype)
    except Exception as exc:  # missing folder/files, offline hub, wrong class: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CuratorError(f"cannot load {cls.__name__} from {spec!r}: {first}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


# --------------------------------------------------------------------------- training view


@dataclass
class AudioLDMModel(MelLatentParts):
    """An AudioLDMPipeline's parts in the shape the trainer and curator.models.tango's mel/latent
    helpers read (tokenizer, text_encoder, unet, vae, vocoder, scheduler, stft, mel_basis).

    AudioLDM's front end is the one Tango inherited (TacotronSTFT 1024/160/1024, 16 kHz, 0–8 kHz,
    as many mel bins as the vocoder takes: 64), so clips become latents through the same
    waveform_to_mel/mel_to_latent. The prompt
    conditions the UNet through its class embedding: the CLAP text embedding, L2-normalised, as
    AudioLDMPipeline computes it; the unconditional input is the embedding of "" (the pipeline's
    negative prompt), not a zero vector. `scheduler` is a DDPMScheduler on the pipeline's noise
    schedule (training noise); `pipe.scheduler` (the sampler) is what a checkpoint saves.
    """

    pipe: Any
    tokenizer: Any
    text_encoder: Any
    unet: Any
    vae: Any
    vocoder: Any
    scheduler: Any
    stft: Any  # curator.models.tango.StftConfig
    mel_basis: torch.Tensor
    source: str
    null_prompt: str = ""
    kind: str = "audioldm"


def load_audioldm_model(spec: str, *, device: str | torch.device = "cpu") -> AudioLDMModel:
    """load_pipeline(SPEC, "audioldm") (the generator's loader), viewed for training."""
    from diffusers import DDPMScheduler

    from curator.models.tango.config import StftConfig
    from curator.models.tango.parts import stft_buffers

    pipe = load_pipeline(spec, "audioldm", device=device)
    rate = int(pipe.vocoder.config.sampling_rate)
    # the pipeline's own convention: the mel has as many bins as the vocoder takes (64 for AudioLDM)
    stft = StftConfig(sampling_rate=rate, n_mel_channels=int(pipe.vocoder.config.model_in_dim),
                      mel_fmax=min(8000.0, rate / 2))
    stft.validate(str(spec))
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    return AudioLDMModel(pipe=pipe, tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, unet=pipe.unet,
                         vae=pipe.vae, vocoder=pipe.vocoder, scheduler=scheduler, stft=stft,
                         mel_basis=stft_buffers(stft)["mel_basis"].to(device), source=str(spec))


def encode_audioldm_prompts(model: AudioLDMModel, prompts: Sequence[str]) -> torch.Tensor:
    """(B, D) L2-normalised CLAP text embeddings, as AudioLDMPipeline conditions its UNet."""
    tok = model.tokenizer(list(prompts), padding="max_length", max_length=model.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt")
    device = model.text_encoder.device
    with torch.no_grad():
        embeds = model.text_encoder(tok.input_ids.to(device), attention_mask=tok.attention_mask.to(device)).text_embeds
    return torch.nn.functional.normalize(embeds, dim=-1)


def save_audioldm_model(model: AudioLDMModel, folder: str | Path) -> Path:
    """The pipeline with MODEL's current UNet, in the save_pretrained layout (model_index.json),
    so `curator generate --checkpoint FOLDER` loads it through load_pipeline."""
    pipe = type(model.pipe)(vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
                            scheduler=model.pipe.scheduler, vocoder=model.vocoder)
    pipe.save_pretrained(folder)
    return Path(folder)
