"""Reading and writing a Tango checkpoint in the declare-lab layout (see the package's docstring):
`resolve_checkpoint` (a folder or a hub id), `load_tango` (configs validated, parts built empty,
then filled from the three weight files through the key tables) and `save_tango` (the same files,
original key names, plus what makes the folder load offline; written atomically)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from db.errors import CuratorError
from curator.fsutil import atomic_write_json, remove_stale_siblings, temp_sibling
from curator.models.tango.config import (
    _MAIN_IGNORED,
    _VAE_IGNORED,
    EXTRA_FILES,
    LAYOUT_FILES,
    MAIN_CONFIG,
    MAIN_WEIGHTS,
    SCHEDULER_DIR,
    STFT_CONFIG,
    STFT_WEIGHTS,
    TANGO_UNET_CONFIG,
    TEXT_ENCODER_DIR,
    UNET_CONFIG,
    VAE_CONFIG,
    VAE_WEIGHTS,
    VOCODER_CONFIG,
    MainConfig,
    StftConfig,
    VaeConfig,
    _typed,
    _vocoder_config,
)
from curator.models.tango.keys import diffusers_vae_to_original, original_vae_to_diffusers
from curator.models.tango.model import Tango
from curator.models.tango.parts import (
    default_scheduler,
    stft_buffers,
    unet_from_config,
    vae_config_of,
    vae_from_config,
    vocoder_config_of,
    vocoder_from_config,
)

log = logging.getLogger(__name__)

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


def _contiguous_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _write_layout(tango: Tango, folder: Path) -> None:
    n_levels = len(tango.vae.config.block_out_channels)
    main = dict(tango.config)
    main["unet_model_config_path"] = UNET_CONFIG
    main["unet_model_name"] = None
    atomic_write_json(folder / MAIN_CONFIG, main)
    atomic_write_json(folder / UNET_CONFIG, {k: v for k, v in dict(tango.unet.config).items() if not k.startswith("_")})
    state = {f"unet.{k}": v for k, v in tango.unet.state_dict().items()}
    state.update({f"text_encoder.{k}": v for k, v in tango.text_encoder.state_dict().items()})
    atomic_torch_save(_contiguous_cpu(state), folder / MAIN_WEIGHTS)
    atomic_write_json(folder / VAE_CONFIG, vae_config_of(tango.vae))
    original = diffusers_vae_to_original(tango.vae.state_dict(), tango.vocoder.state_dict(), n_levels)
    atomic_torch_save(_contiguous_cpu(original), folder / VAE_WEIGHTS)
    atomic_write_json(folder / VOCODER_CONFIG, vocoder_config_of(tango.vocoder))
    atomic_write_json(folder / STFT_CONFIG, asdict(tango.stft))
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
