"""diffusers AudioLDM / AudioLDM2 pipelines by hub id or local folder (a `save_pretrained` folder
whose model_index.json names the pipeline class)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from curator.errors import CuratorError

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
