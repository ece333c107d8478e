"""Which model `trainer run --model SPEC` trains. The loading itself is curator.models.tango's
(the one Tango loader); this only resolves SPEC and checks the architecture fits training."""

from __future__ import annotations

from pathlib import Path

from curator.errors import CuratorError

TINY = "tiny"


def resolve_model(spec: str, out_dir: str | Path) -> str:
    """A loadable Tango folder or hub id for SPEC. `tiny` is built once into OUT/base-model/."""
    if spec == TINY:
        folder = Path(out_dir) / "base-model"
        if not (folder / "main_config.json").is_file():
            from curator.models.tiny import build_tiny_tango

            build_tiny_tango(folder, seed=0)
        return str(folder.resolve())
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "model_index.json").is_file():
            from curator.models.audioldm import pipeline_class_of

            kind = pipeline_class_of(str(path))
            raise CuratorError(f"--model {spec}: a diffusers {kind or 'pipeline'} folder; trainer run trains "
                               "Tango checkpoints (main_config.json layout) only")
        if not (path / "main_config.json").is_file():
            raise CuratorError(f"--model {spec}: not a Tango checkpoint folder (no main_config.json)")
        return str(path.resolve())
    return spec  # a hub id; load_tango says clearly when it cannot be fetched


def load_base(spec: str):
    """load_tango on a resolved SPEC, then the checks training needs, each one line."""
    from curator.models.tango import load_tango

    tango = load_tango(spec)
    check_architecture(tango, spec)
    return tango


def check_architecture(tango, where: str) -> None:
    unet, vae = tango.unet.config, tango.vae.config
    if unet.in_channels != vae.latent_channels or unet.out_channels != vae.latent_channels:
        raise CuratorError(f"{where}: UNet in/out channels {unet.in_channels}/{unet.out_channels} do not match the "
                           f"VAE's {vae.latent_channels} latent channels")
    d_text = tango.text_encoder.config.d_model
    if unet.cross_attention_dim != d_text:
        raise CuratorError(f"{where}: UNet cross_attention_dim {unet.cross_attention_dim} does not match the text "
                           f"encoder's hidden size {d_text}")
    kind = tango.scheduler.config.prediction_type
    if kind not in ("epsilon", "v_prediction"):
        raise CuratorError(f"{where}: scheduler prediction_type {kind!r} is not epsilon or v_prediction")


def unet_signature(unet) -> dict:
    """The UNet config without private keys: two checkpoints train the same architecture iff equal."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(unet.config).items() if not k.startswith("_")}
