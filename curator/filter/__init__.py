"""The pair filter (arXiv 2404.09956 §4.1.2). A pair survives a preset only if EVERY condition
holds under EVERY model of the preset:

    winner ≥ α_m,   loser ≥ β_m,   winner > loser,   Δ_m = winner − loser ∈ [Δ_m min, Δ_m max]

for m = model 1 and model 2.

This module is the filter's public API (what the UI, the trainer, export and the CLI import); the
pieces live in `presets` (thresholds and the store's named presets), `table` (the pool as numpy
arrays) and `view` (keep mask, counts per strategy, histograms). Text rendering is the CLI's
(curator/cli/filter_text.py).
"""

from curator.filter.presets import (
    DEFAULT_PRESET,
    MAX_NAME_LEN,
    PAPER_THRESHOLDS,
    THRESHOLD_FIELDS,
    Thresholds,
    delete_preset,
    ensure_default_preset,
    get_preset,
    list_presets,
    parse_range,
    preset_dict,
    save_preset,
    thresholds_of,
)
from curator.filter.table import N_MODELS, PairTable, load_pair_table, load_preset_table, resolve_models
from curator.filter.view import (
    DEFAULT_BINS,
    FilterView,
    Histogram,
    default_range,
    evaluate,
    histograms,
    keep_mask,
    strategy_counts,
)

__all__ = [
    "DEFAULT_PRESET", "MAX_NAME_LEN", "PAPER_THRESHOLDS", "THRESHOLD_FIELDS", "Thresholds", "delete_preset",
    "ensure_default_preset", "get_preset", "list_presets", "parse_range", "preset_dict", "save_preset",
    "thresholds_of", "N_MODELS", "PairTable", "load_pair_table", "load_preset_table", "resolve_models",
    "DEFAULT_BINS", "FilterView", "Histogram", "default_range", "evaluate", "histograms", "keep_mask",
    "strategy_counts",
]
