"""Which model `trainer run --model SPEC` trains, and the few calls that differ between families.
The loading itself is the curator's (curator.models.tango.load_tango, the one Tango loader, and
curator.models.audioldm.load_pipeline, the one AudioLDM loader); this resolves SPEC, checks the
architecture fits training, and dispatches prompt encoding, UNet conditioning and saving.

Families:
- **Tango** (main_config.json layout, or `tiny`): FLAN-T5 hidden states through cross-attention;
  the unconditional input is a zeroed embedding (the official dropout, arXiv 2404.09956 §3.1).
- **AudioLDM** (a diffusers AudioLDMPipeline folder or hub id, model_index.json): the CLAP text
  embedding through the UNet's class embedding (`simple_projection`); unconditional = the
  embedding of "" (the pipeline's negative prompt). Checkpoints are pipeline folders.
AudioLDM2 (two text encoders and a GPT-2 prior feeding two cross-attentions) is refused in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from db.errors import CuratorError

TINY = "tiny"


def model_kind(spec: str) -> str:
    """"tango" or "audioldm" for SPEC, by the generator's detection (curator.generate.backends);
    what cannot be trained is refused in one line."""
    from curator.generate.backends import detect_backend

    kind = detect_backend(spec)
    if kind == "world":
        raise CuratorError("--model world: the miniature world renders audio procedurally and has no UNet to train; "
                           "use tiny, a Tango checkpoint or an AudioLDM pipeline")
    if kind == "audioldm2":
        raise CuratorError(f"--model {spec}: AudioLDM2 is not trainable here yet (its UNet takes two cross-attention "
                           "streams from a GPT-2 prior); train a Tango or AudioLDM model")
    return kind


def resolve_model(spec: str, out_dir: str | Path) -> str:
    """A loadable folder or hub id for SPEC. `tiny` is built once into OUT/base-model/."""
    if spec == TINY:
        folder = Path(out_dir) / "base-model"
        if not (folder / "main_config.json").is_file():
            from curator.models.tiny import build_tiny_tango

            build_tiny_tango(folder, seed=0)
        return str(folder.resolve())
    model_kind(spec)
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.is_dir() else spec  # a hub id: the loader says when it cannot be fetched


def is_audioldm(model) -> bool:
    return getattr(model, "kind", None) == "audioldm"


def load_base(spec: str):
    """The model SPEC names (Tango or AudioLDM) through the curator's loaders, then the checks
    training needs, each one line."""
    if model_kind(spec) == "audioldm":
        from curator.models.audioldm import load_audioldm_model

        model = load_audioldm_model(spec)
    else:
        from curator.models.tango import load_tango

        model = load_tango(spec)
    check_architecture(model, spec)
    return model


def check_architecture(model, where: str) -> None:
    unet, vae = model.unet.config, model.vae.config
    if unet.in_channels != vae.latent_channels or unet.out_channels != vae.latent_channels:
        raise CuratorError(f"{where}: UNet in/out channels {unet.in_channels}/{unet.out_channels} do not match the "
                           f"VAE's {vae.latent_channels} latent channels")
    if is_audioldm(model):
        d_text = model.text_encoder.config.projection_dim
        if unet.class_embed_type != "simple_projection" or unet.projection_class_embeddings_input_dim != d_text:
            raise CuratorError(f"{where}: the AudioLDM UNet must take the {d_text}-d CLAP embedding as a "
                               f"simple_projection class embedding (has {unet.class_embed_type!r}, "
                               f"{unet.projection_class_embeddings_input_dim})")
    else:
        d_text = model.text_encoder.config.d_model
        if unet.cross_attention_dim != d_text:
            raise CuratorError(f"{where}: UNet cross_attention_dim {unet.cross_attention_dim} does not match the text "
                               f"encoder's hidden size {d_text}")
    kind = model.scheduler.config.prediction_type
    if kind not in ("epsilon", "v_prediction"):
        raise CuratorError(f"{where}: scheduler prediction_type {kind!r} is not epsilon or v_prediction")


def encode_prompts(model, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """What the UNet is conditioned on, per prompt: (hidden (B, L, D), mask (B, L) bool).
    Tango: the T5 states; AudioLDM: the CLAP embedding as one position (L = 1)."""
    if is_audioldm(model):
        from curator.models.audioldm import encode_audioldm_prompts

        embeds = encode_audioldm_prompts(model, prompts)
        return embeds[:, None, :], torch.ones(embeds.shape[0], 1, dtype=torch.bool, device=embeds.device)
    from curator.models.tango import encode_text

    return encode_text(model, prompts)


def unet_inputs(unet, hidden: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
    """The conditioning keyword arguments of a UNet call (UNET may be wrapped for data parallel)."""
    config = getattr(unet, "module", unet).config
    if config.class_embed_type == "simple_projection":  # AudioLDM: the CLAP embedding, no cross-attention input
        return {"encoder_hidden_states": None, "class_labels": hidden[:, 0]}
    return {"encoder_hidden_states": hidden, "encoder_attention_mask": mask}


def save_model(model, folder: str | Path) -> Path:
    """A checkpoint `curator generate --checkpoint FOLDER` loads: a Tango folder or a pipeline folder."""
    if is_audioldm(model):
        from curator.models.audioldm import save_audioldm_model

        return save_audioldm_model(model, folder)
    from curator.models.tango import save_tango

    return save_tango(model, folder)


def unet_signature(unet) -> dict:
    """The UNet config without private keys: two checkpoints train the same architecture iff equal."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(unet.config).items() if not k.startswith("_")}
