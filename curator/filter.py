"""Threshold presets and the ensemble filter over candidate pairs (arXiv 2404.09956 §4.1.2).

A pair survives a preset only if EVERY condition holds under EVERY model of the preset:

    winner ≥ α_m,   loser ≥ β_m,   winner > loser,   Δ_m = winner − loser ∈ [Δ_m min, Δ_m max]

for m = model 1 and model 2. The pool is loaded once into a `PairTable` of numpy arrays
(column-contiguous, sorted by strategy then pair id, histogram bin indices cached), so moving
a slider re-runs only a handful of vectorised comparisons and bincounts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Iterable, Sequence

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.errors import CuratorError
from db.models import STRATEGIES, ClapModel, Preset, utcnow

DEFAULT_PRESET = "paper"
N_MODELS = 2  # the paper's ensemble: 630k-audioset-best (model 1) and 630k-best (model 2), arXiv 2404.09956 §4.1.2
DEFAULT_BINS = 40
MAX_NAME_LEN = 200


# --------------------------------------------------------------------------------------------
# Thresholds and presets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """α, β and Δ bounds per model. Defaults are the paper's (arXiv 2404.09956 §4.1.2, Figure 4)."""

    alpha1: float = 0.45  # winner score under model 1 ≥ α1
    alpha2: float = 0.60  # winner score under model 2 ≥ α2
    beta1: float = 0.40  # loser score under model 1 ≥ β1
    beta2: float = 0.0  # loser score under model 2 ≥ β2
    delta1_min: float = 0.05  # Δ1 = winner − loser under model 1 in [0.05, 0.35]
    delta1_max: float = 0.35
    delta2_min: float = 0.08  # Δ2 under model 2 in [0.08, 0.70]
    delta2_max: float = 0.70

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


# --------------------------------------------------------------------------------------------
# The pair table
# --------------------------------------------------------------------------------------------


def resolve_models(session: Session, model_names: Sequence[str | None] | None = None) -> list[ClapModel]:
    """Model 1 and model 2: the names given, None entries filled by the first models by position."""
    ensemble = session.scalars(select(ClapModel).order_by(ClapModel.position, ClapModel.id)).all()
    wanted = list(model_names) if model_names is not None else [None] * N_MODELS
    if len(wanted) != N_MODELS:
        raise CuratorError(f"the filter takes {N_MODELS} models, got {len(wanted)}: {wanted}")
    by_name = {m.name: m for m in ensemble}
    chosen: list[ClapModel | None] = []
    for i, name in enumerate(wanted):
        if name is None:
            chosen.append(None)
        elif name not in by_name:
            known = ", ".join(by_name) or "none"
            raise CuratorError(f"model{i + 1} {name!r} is not a CLAP model of the store (known: {known})")
        else:
            chosen.append(by_name[name])
    rest = iter(m for m in ensemble if m not in chosen)
    for i, m in enumerate(chosen):
        if m is None:
            nxt = next(rest, None)
            if nxt is None:
                raise CuratorError(f"the store has {len(ensemble)} CLAP model(s); the filter needs {N_MODELS} "
                                   "(arXiv 2404.09956 §4.1.2): run `curator score` with two --model")
            chosen[i] = nxt
    if chosen[0].id == chosen[1].id:
        raise CuratorError(f"model1 and model2 are both {chosen[0].name!r}; the ensemble needs two models")
    return chosen  # type: ignore[return-value]


@dataclass
class PairTable:
    """The candidate pool as numpy arrays, sorted by strategy then pair id.

    winner/loser/delta are (N, 2) float64 in Fortran order, so each model's column is contiguous.
    """

    model_names: tuple[str, str]
    model_ids: tuple[int, int]
    pair_id: np.ndarray  # (N,) int64
    strategy: np.ndarray  # (N,) int8, index into STRATEGIES
    caption_id: np.ndarray  # (N,) int64
    winner_clip_id: np.ndarray  # (N,) int64
    loser_clip_id: np.ndarray  # (N,) int64
    winner: np.ndarray  # (N, 2) float64: winner score under model 1, model 2
    loser: np.ndarray  # (N, 2)
    n_unscored: int = 0  # pairs left out: no score under one of the two models
    delta: np.ndarray = field(init=False)  # (N, 2) winner − loser
    strategy_bounds: np.ndarray = field(init=False)  # (len(STRATEGIES)+1,) row offsets per strategy
    _bins: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.pair_id)
        for name in ("strategy", "caption_id", "winner_clip_id", "loser_clip_id"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"PairTable.{name} has {len(getattr(self, name))} rows, pair_id has {n}")
        for name in ("winner", "loser"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n, N_MODELS):
                raise ValueError(f"PairTable.{name} has shape {arr.shape}, expected ({n}, {N_MODELS})")
            if not np.all(np.isfinite(arr)):
                bad = int(self.pair_id[~np.isfinite(arr).all(axis=1)][0])
                raise CuratorError(f"pair {bad} has a NaN or infinite {name} score")
            setattr(self, name, np.asfortranarray(arr))
        self.strategy = np.asarray(self.strategy, dtype=np.int8)
        order = np.lexsort((self.pair_id, self.strategy))
        if n and not np.array_equal(order, np.arange(n)):
            for name in ("pair_id", "strategy", "caption_id", "winner_clip_id", "loser_clip_id"):
                setattr(self, name, np.ascontiguousarray(getattr(self, name)[order]))
            self.winner = np.asfortranarray(self.winner[order])
            self.loser = np.asfortranarray(self.loser[order])
        self.delta = np.asfortranarray(self.winner - self.loser)
        self.strategy_bounds = np.searchsorted(self.strategy, np.arange(len(STRATEGIES) + 1), side="left")

    def __len__(self) -> int:
        return len(self.pair_id)

    def column(self, quantity: str, model: int) -> np.ndarray:
        """'alpha' (winner score) or 'delta' of model index 0/1, contiguous."""
        if quantity == "alpha":
            return self.winner[:, model]
        if quantity == "delta":
            return self.delta[:, model]
        if quantity == "loser":
            return self.loser[:, model]
        raise ValueError(f"unknown quantity {quantity!r} (alpha, delta, loser)")

    def bin_index(self, quantity: str, model: int, edges: np.ndarray) -> np.ndarray:
        """np.histogram's bin of every row for uniform EDGES (cached: sliders reuse it)."""
        key = (quantity, model, len(edges), float(edges[0]), float(edges[-1]))
        idx = self._bins.get(key)
        if idx is None:
            idx = _uniform_bin_index(self.column(quantity, model), edges)
            self._bins[key] = idx
        return idx


def _uniform_bin_index(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each x for uniform edges, exactly as np.histogram assigns them; -1/nbins = outside."""
    nbins = len(edges) - 1
    lo, hi = float(edges[0]), float(edges[-1])
    norm = nbins / (hi - lo)
    f = (x - lo) * norm
    idx = np.floor(f, out=f).astype(np.intp)
    inside = (x >= lo) & (x <= hi)
    idx[x == hi] = nbins - 1
    np.clip(idx, 0, nbins - 1, out=idx)
    # np.histogram's correction for floating-point rounding at the edges
    dec = x < edges[idx]
    idx[dec] -= 1
    inc = (x >= edges[idx + 1]) & (idx != nbins - 1)
    idx[inc] += 1
    idx[~inside] = -1
    return idx


def _strategy_code(value: str) -> int:
    try:
        return STRATEGIES.index(value)
    except ValueError:
        raise CuratorError(f"pair strategy {value!r} is unknown (known: {', '.join(STRATEGIES)})") from None


def load_pair_table(session: Session, model_names: Sequence[str | None] | None = None) -> PairTable:
    """Every pair with scores under both models, as a PairTable (one query, no ORM objects)."""
    m1, m2 = resolve_models(session, model_names)
    # strategy as its code in SQL, so every column is numeric and the rows become one float64 array
    # (ids stay exact below 2**53); the raw DBAPI cursor skips SQLAlchemy's per-row objects.
    codes = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(STRATEGIES))
    sql = (
        f"SELECT p.id, CASE p.strategy {codes} ELSE -1 END, p.caption_id, p.winner_clip_id, p.loser_clip_id, "
        "a.winner_score, a.loser_score, b.winner_score, b.loser_score "
        "FROM pairs p "
        f"JOIN pair_scores a ON a.pair_id = p.id AND a.model_id = {int(m1.id)} "
        f"JOIN pair_scores b ON b.pair_id = p.id AND b.model_id = {int(m2.id)} "
        "ORDER BY p.id"
    )
    cur = session.connection().connection.driver_connection.cursor()
    try:
        cur.execute(sql)
        rows = cur.fetchall()
    finally:
        cur.close()
    total = session.execute(text("SELECT COUNT(*) FROM pairs")).scalar_one()
    n = len(rows)
    arr = np.array(rows, dtype=np.float64).reshape(n, 9)
    if n and arr[:, 1].min() < 0:
        bad = session.execute(text("SELECT strategy FROM pairs WHERE id = :i"),
                              {"i": int(arr[arr[:, 1] < 0, 0][0])}).scalar_one()
        _strategy_code(bad)
    strategy = arr[:, 1].astype(np.int8)
    ints = [arr[:, i].astype(np.int64) for i in (0, 2, 3, 4)]
    winner, loser = arr[:, [5, 7]], arr[:, [6, 8]]
    return PairTable(model_names=(m1.name, m2.name), model_ids=(m1.id, m2.id), pair_id=ints[0],
                     strategy=strategy, caption_id=ints[1], winner_clip_id=ints[2], loser_clip_id=ints[3],
                     winner=winner, loser=loser, n_unscored=int(total) - n)


def load_preset_table(session: Session, preset: Preset) -> PairTable:
    """The pair table for a preset's models (model1/model2 None = the first two by position)."""
    return load_pair_table(session, (preset.model1, preset.model2))


# --------------------------------------------------------------------------------------------
# Mask, counts, histograms
# --------------------------------------------------------------------------------------------


def keep_mask(table: PairTable, thresholds: Thresholds) -> np.ndarray:
    """Boolean (N,): True where every condition of arXiv 2404.09956 §4.1.2 holds under both models."""
    n = len(table)
    mask = np.ones(n, dtype=bool)
    tmp = np.empty(n, dtype=bool)  # per call: a table may be shared by concurrent UI sessions
    for m in range(N_MODELS):
        w, l, d = table.winner[:, m], table.loser[:, m], table.delta[:, m]
        dlo, dhi = thresholds.delta[m]
        np.greater_equal(w, thresholds.alpha[m], out=tmp)
        mask &= tmp
        np.greater_equal(l, thresholds.beta[m], out=tmp)
        mask &= tmp
        np.greater(w, l, out=tmp)
        mask &= tmp
        np.greater_equal(d, dlo, out=tmp)
        mask &= tmp
        np.less_equal(d, dhi, out=tmp)
        mask &= tmp
    return mask


def strategy_counts(table: PairTable, mask: np.ndarray | None = None) -> dict[str, int]:
    """Pairs kept per strategy, like the paper's Table 2: {'1.1', '1.2', '2', '3', 'total'}."""
    b = table.strategy_bounds
    if mask is None:
        counts = {s: int(b[i + 1] - b[i]) for i, s in enumerate(STRATEGIES)}
    else:
        counts = {s: int(np.count_nonzero(mask[b[i]:b[i + 1]])) for i, s in enumerate(STRATEGIES)}
    counts["total"] = sum(counts.values())
    return counts


@dataclass(frozen=True)
class Histogram:
    quantity: str  # "alpha" (winner score) or "delta" (winner − loser)
    model: int  # 1 or 2
    model_name: str
    edges: np.ndarray  # (bins + 1,)
    kept: np.ndarray  # (bins,) int64
    dropped: np.ndarray  # (bins,) int64

    @property
    def key(self) -> str:
        return f"{self.quantity}{self.model}"


def default_range(table: PairTable, quantity: str) -> tuple[float, float]:
    """The span of QUANTITY over both models (so the two models' histograms line up)."""
    if len(table) == 0:
        return (0.0, 1.0)
    key = ("range", quantity)
    if key not in table._bins:
        cols = [table.column(quantity, m) for m in range(N_MODELS)]
        lo, hi = float(min(c.min() for c in cols)), float(max(c.max() for c in cols))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        table._bins[key] = (lo, hi)
    return table._bins[key]


def histograms(table: PairTable, mask: np.ndarray, bins: int = DEFAULT_BINS, *,
               ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, Histogram]:
    """α (winner score) and Δ histograms per model, kept vs dropped: keys alpha1, alpha2, delta1, delta2.

    Counts equal np.histogram(column[mask], bins, range) and np.histogram(column[~mask], ...).
    """
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise CuratorError(f"histogram bins={bins!r} must be a positive integer")
    if len(mask) != len(table):
        raise ValueError(f"mask has {len(mask)} rows, table has {len(table)}")
    mask_i = mask.view(np.uint8)
    out: dict[str, Histogram] = {}
    for quantity in ("alpha", "delta"):
        lo, hi = (ranges or {}).get(quantity) or default_range(table, quantity)
        edges = np.linspace(lo, hi, bins + 1)
        for m in range(N_MODELS):
            idx = table.bin_index(quantity, m, edges)
            # one bincount gives both halves: bins [0, nb) = dropped, [nb, 2nb) = kept; -1 → outside
            combined = np.bincount(idx + 1 + (bins + 1) * mask_i, minlength=2 * (bins + 1))
            dropped, kept = combined[1:bins + 1], combined[bins + 2:]
            out[f"{quantity}{m + 1}"] = Histogram(quantity, m + 1, table.model_names[m], edges, kept, dropped)
    return out


@dataclass(frozen=True)
class FilterView:
    """Everything a threshold view shows for one setting of the sliders."""

    mask: np.ndarray
    counts: dict[str, int]
    histograms: dict[str, Histogram]


def evaluate(table: PairTable, thresholds: Thresholds, bins: int = DEFAULT_BINS) -> FilterView:
    mask = keep_mask(table, thresholds)
    return FilterView(mask, strategy_counts(table, mask), histograms(table, mask, bins))


# --------------------------------------------------------------------------------------------
# Text rendering (CLI)
# --------------------------------------------------------------------------------------------

_LABELS = {"alpha": "α (winner score)", "delta": "Δ (winner − loser)"}


def render_histogram(hist: Histogram, *, width: int = 40, marks: Iterable[tuple[float, str]] = ()) -> str:
    """A text histogram: one line per bin, █ kept and ░ dropped, scaled to the fullest bin.

    MARKS (value, label) are shown beside the bin holding the value (threshold lines)."""
    total = hist.kept + hist.dropped
    peak = int(total.max()) if total.size and total.max() > 0 else 1
    marks = list(marks)
    lines = [f"{_LABELS.get(hist.quantity, hist.quantity)}, model {hist.model} ({hist.model_name}): "
             f"{int(hist.kept.sum())} kept █, {int(hist.dropped.sum())} dropped ░"]
    nb = len(total)
    outside = [f"{label} = {value:g}" for value, label in marks if not hist.edges[0] <= value <= hist.edges[-1]]
    if outside:
        lines[0] += f" ({', '.join(outside)}: outside the range shown)"
    for i in range(nb):
        lo, hi = hist.edges[i], hist.edges[i + 1]
        k = int(round(width * hist.kept[i] / peak))
        d = int(round(width * total[i] / peak)) - k
        tags = [label for value, label in marks if lo <= value < hi or (i == nb - 1 and value == hi)]
        tag = ("  ◀ " + ", ".join(tags)) if tags else ""
        lines.append(f"{lo:+.3f} … {hi:+.3f} │{'█' * k}{'░' * d}{' ' * (width - k - d)}│ "
                     f"{int(hist.kept[i]):>7} / {int(total[i]):<7}{tag}")
    return "\n".join(lines)


def threshold_marks(thresholds: Thresholds, hist: Histogram) -> list[tuple[float, str]]:
    m = hist.model
    if hist.quantity == "alpha":
        return [(thresholds.alpha[m - 1], f"α{m}")]
    if hist.quantity == "delta":
        lo, hi = thresholds.delta[m - 1]
        return [(lo, f"Δ{m} min"), (hi, f"Δ{m} max")]
    return []


def render_counts(counts: dict[str, int], pool: dict[str, int] | None = None) -> str:
    """Table 2 style: strategy, pairs kept (and of how many candidates)."""
    lines = [f"{'strategy':<10}{'kept':>10}" + (f"{'candidates':>12}" if pool else "")]
    for key in (*STRATEGIES, "total"):
        label = "total" if key == "total" else f"S{key}"
        extra = f"{pool.get(key, 0):>12}" if pool else ""
        lines.append(f"{label:<10}{counts.get(key, 0):>10}{extra}")
    return "\n".join(lines)
