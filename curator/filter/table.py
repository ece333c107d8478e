"""The candidate pool as a `PairTable` of numpy arrays: every pair scored under both models of
the ensemble, column-contiguous, sorted by strategy then pair id, loaded in one query, with the
histogram bin index of every row cached so a slider move only re-runs comparisons and bincounts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.errors import CuratorError
from db.models import STRATEGIES, ClapModel, Preset

N_MODELS = 2  # the paper's ensemble: 630k-audioset-best (model 1) and 630k-best (model 2), arXiv 2404.09956 §4.1.2


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
