"""`--model [NAME=]CHECKPOINT` → a Scorer (the agreed backend name resolution).

CHECKPOINT is `world-judge-a` / `world-judge-b` (the miniature world's judges, curator.world),
a laion-clap `.pt` file, or a transformers CLAP folder / hub id. Without NAME= the model is named
after the checkpoint (file stem, folder name, hub id, judge name).
"""

from __future__ import annotations

import re
from pathlib import Path

from curator.backends import Scorer
from db.errors import CuratorError

WORLD_JUDGES = ("world-judge-a", "world-judge-b")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$")


def parse_model_spec(spec: str) -> tuple[str | None, str]:
    """'NAME=CHECKPOINT' → (NAME, CHECKPOINT); 'CHECKPOINT' → (None, CHECKPOINT)."""
    spec = spec.strip()
    if not spec:
        raise CuratorError("--model needs [NAME=]CHECKPOINT, got an empty value")
    if "=" in spec:
        name, checkpoint = spec.split("=", 1)
        if _NAME.match(name) and "/" not in name:
            if not checkpoint:
                raise CuratorError(f"--model {spec!r}: no checkpoint after {name}=")
            return name, checkpoint
        if not name:
            raise CuratorError(f"--model {spec!r}: empty NAME before '='")
    return None, spec


def make_scorer(spec: str, *, device: str = "cpu", batch_size: int = 16,
                tokenizer_source: str | None = None) -> tuple[str, Scorer]:
    """(ensemble name, scorer) for one --model value."""
    name, checkpoint = parse_model_spec(spec)
    if checkpoint in WORLD_JUDGES:
        try:
            from curator.world import make_judge
        except ImportError as exc:
            raise CuratorError(f"--model {checkpoint}: the miniature world (curator.world) is not available: {exc}") from None
        scorer = make_judge(checkpoint)
        return name or scorer.name, scorer
    if checkpoint.endswith((".pt", ".pth", ".ckpt")) and not Path(checkpoint).expanduser().is_file():
        raise CuratorError(f"CLAP checkpoint {checkpoint} does not exist")
    from curator.scoring.clap import load_clap

    scorer = load_clap(checkpoint, name=name, device=device, batch_size=batch_size, tokenizer_source=tokenizer_source)
    return scorer.name, scorer
