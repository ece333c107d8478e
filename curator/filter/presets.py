"""Threshold presets of the pair filter (arXiv 2404.09956 §4.1.2): the validated `Thresholds`
(the paper's by default), and the named presets of the store (`Preset` rows; "paper" is built in
and cannot be changed). Functions take the caller's Session and flush; the caller commits."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import CuratorError
from curator.paper import ALPHA, BETA_LOSER, DELTA1, DELTA2
from db.models import ClapModel, Preset, utcnow

DEFAULT_PRESET = "paper"
MAX_NAME_LEN = 200


@dataclass(frozen=True)
class Thresholds:
    """α, β and Δ bounds per model. Defaults are the paper's (arXiv 2404.09956 §4.1.2, Figure 4)."""

    alpha1: float = ALPHA[0]  # winner score under model 1 ≥ α1
    alpha2: float = ALPHA[1]  # winner score under model 2 ≥ α2
    beta1: float = BETA_LOSER[0]  # loser score under model 1 ≥ β1
    beta2: float = BETA_LOSER[1]  # loser score under model 2 ≥ β2
    delta1_min: float = DELTA1[0]  # Δ1 = winner − loser under model 1 in [Δ1 min, Δ1 max]
    delta1_max: float = DELTA1[1]
    delta2_min: float = DELTA2[0]  # Δ2 under model 2 in [Δ2 min, Δ2 max]
    delta2_max: float = DELTA2[1]

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CuratorError(f"threshold {f.name}={value!r} is not a number")
            if not math.isfinite(value):
                raise CuratorError(f"threshold {f.name}={value!r} is not finite")
            # CLAP scores are cosines in [-1, 1]; Δ of two cosines is in [-2, 2]
            limit = 2.0 if f.name.startswith("delta") else 1.0
            if not -limit <= value <= limit:
                raise CuratorError(f"threshold {f.name}={value!r} is outside [-{limit:g}, {limit:g}]")
            object.__setattr__(self, f.name, float(value))
        for m in (1, 2):
            lo, hi = getattr(self, f"delta{m}_min"), getattr(self, f"delta{m}_max")
            if lo > hi:
                raise CuratorError(f"threshold delta{m} range {lo:g}:{hi:g} is empty (min > max)")

    @property
    def alpha(self) -> tuple[float, float]:
        return (self.alpha1, self.alpha2)

    @property
    def beta(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    @property
    def delta(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return ((self.delta1_min, self.delta1_max), (self.delta2_min, self.delta2_max))

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def replace(self, **changes: float) -> "Thresholds":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise CuratorError(f"unknown threshold(s): {', '.join(sorted(unknown))}")
        return Thresholds(**{**self.as_dict(), **changes})


PAPER_THRESHOLDS = Thresholds()
THRESHOLD_FIELDS = tuple(f.name for f in fields(Thresholds))


def parse_range(value: str, *, name: str) -> tuple[float, float]:
    """'0.05:0.35' → (0.05, 0.35); one clear line for anything else."""
    parts = value.split(":")
    if len(parts) != 2:
        raise CuratorError(f"{name} {value!r} is not a range MIN:MAX (e.g. 0.05:0.35)")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise CuratorError(f"{name} {value!r} is not a range of two numbers MIN:MAX") from None
    return lo, hi


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise CuratorError("preset name is empty")
    name = name.strip()
    if len(name) > MAX_NAME_LEN:
        raise CuratorError(f"preset name {name[:40]!r}… is longer than {MAX_NAME_LEN} characters")
    return name


def thresholds_of(preset: Preset) -> Thresholds:
    """The validated thresholds a preset row holds."""
    return Thresholds(**{name: getattr(preset, name) for name in THRESHOLD_FIELDS})


def ensure_default_preset(session: Session) -> Preset:
    """The "paper" preset (the paper's thresholds, models = first two of the ensemble); created if missing."""
    preset = session.scalar(select(Preset).where(Preset.name == DEFAULT_PRESET))
    if preset is None:
        preset = Preset(name=DEFAULT_PRESET, author="arXiv 2404.09956 §4.1.2", model1=None, model2=None,
                        **PAPER_THRESHOLDS.as_dict())
        session.add(preset)
        session.flush()
    return preset


def get_preset(session: Session, name: str = DEFAULT_PRESET) -> Preset:
    """The preset NAME ("paper" is created on first use); unknown names are one clear line."""
    name = _check_name(name)
    if name == DEFAULT_PRESET:
        return ensure_default_preset(session)
    preset = session.scalar(select(Preset).where(Preset.name == name))
    if preset is None:
        known = ", ".join(p.name for p in list_presets(session)) or "none"
        raise CuratorError(f"preset {name!r} does not exist (known: {known})")
    return preset


def list_presets(session: Session) -> list[Preset]:
    """Every preset, "paper" first, then by name."""
    ensure_default_preset(session)
    presets = session.scalars(select(Preset).order_by(Preset.name)).all()
    return sorted(presets, key=lambda p: (p.name != DEFAULT_PRESET, p.name))


def _check_model_name(session: Session, name: str | None, which: str) -> str | None:
    if name is None:
        return None
    if session.scalar(select(ClapModel.id).where(ClapModel.name == name)) is None:
        known = ", ".join(session.scalars(select(ClapModel.name).order_by(ClapModel.position, ClapModel.id))) or "none"
        raise CuratorError(f"{which} {name!r} is not a CLAP model of the store (known: {known})")
    return name


def save_preset(session: Session, name: str, thresholds: Thresholds, *, author: str,
                model1: str | None = None, model2: str | None = None) -> Preset:
    """Create or update the preset NAME. "paper" keeps the paper's values and cannot be changed."""
    name = _check_name(name)
    if not isinstance(thresholds, Thresholds):
        raise CuratorError(f"preset {name!r}: thresholds must be a Thresholds, got {type(thresholds).__name__}")
    if name == DEFAULT_PRESET:
        raise CuratorError(f"preset {DEFAULT_PRESET!r} holds the paper's thresholds and cannot be changed; "
                           "save under another name")
    if model1 is not None and model1 == model2:
        raise CuratorError(f"preset {name!r}: model1 and model2 are both {model1!r}; the ensemble needs two models")
    _check_model_name(session, model1, "model1")
    _check_model_name(session, model2, "model2")
    preset = session.scalar(select(Preset).where(Preset.name == name))
    if preset is None:
        preset = Preset(name=name)
        session.add(preset)
    for key, value in thresholds.as_dict().items():
        setattr(preset, key, value)
    preset.model1, preset.model2, preset.author = model1, model2, author or ""
    preset.updated_at = utcnow()
    session.flush()
    return preset


def delete_preset(session: Session, name: str) -> None:
    name = _check_name(name)
    if name == DEFAULT_PRESET:
        raise CuratorError(f"preset {DEFAULT_PRESET!r} cannot be deleted")
    session.delete(get_preset(session, name))
    session.flush()


def preset_dict(preset: Preset) -> dict:
    """A preset as plain data (manifest, `presets show`)."""
    return {"name": preset.name, **thresholds_of(preset).as_dict(), "model1": preset.model1,
            "model2": preset.model2, "author": preset.author,
            "updated_at": preset.updated_at.isoformat() if preset.updated_at else None}
