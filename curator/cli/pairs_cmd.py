"""`curator pairs`, `curator stats`, `curator presets list|show|save|delete`."""

from __future__ import annotations

import json
from typing import Optional

import typer

from curator.cli.common import DB_DEFAULT, DbOpt, JsonOpt, echo_json, show_progress, user_errors
from curator.cli.filter_text import render_counts, render_histogram, threshold_marks
from curator.paper import ALPHA, BETA_LOSER, DELTA1, DELTA2
from db.session import session_scope

presets_app = typer.Typer(help="Threshold presets of the filter (α, β, Δ per model; arXiv 2404.09956 §4.1.2).",
                          no_args_is_help=True)


@user_errors
def pairs(db: DbOpt = DB_DEFAULT,
          batch_size: int = typer.Option(5000, min=1, help="Pairs inserted (and committed) per batch.")) -> None:
    """Build candidate pairs from scored clips (arXiv 2404.09956 §4.1.2).

    Strategies 1.1 and 1.2: the clip scoring highest under MODEL 1 wins; each other clip loses (3 pairs).

    Model 1 = the first CLAP model of the ensemble by position (the first `curator score --model`).

    Strategies 2 and 3: caption's clip vs perturbed caption's clip, kept where the first scores higher (model 1).

    Every pair gets winner/loser scores under every model. A rerun adds nothing twice and fills late scores.
    """
    from curator.pairs import build_pairs, describe

    with session_scope(db) as session:
        counts = build_pairs(session, batch_size=batch_size, progress=show_progress())
    typer.echo(describe(counts))


@user_errors
def stats(db: DbOpt = DB_DEFAULT,
          preset: str = typer.Option("paper", "--preset", help="Threshold preset to apply."),
          bins: int = typer.Option(20, min=1, max=200, help="Histogram bins."),
          width: int = typer.Option(40, min=10, max=200, help="Histogram bar width (characters)."),
          as_json: JsonOpt = False) -> None:
    """Pairs kept per strategy (like the paper's Table 2) and the α/Δ distributions, kept vs dropped."""
    from curator import filter as flt

    with session_scope(db) as session:
        p = flt.get_preset(session, preset)
        th = flt.thresholds_of(p)
        table = flt.load_preset_table(session, p)
    view = flt.evaluate(table, th, bins=bins)
    if as_json:
        echo_json({"preset": p.name, "thresholds": th.as_dict(), "models": list(table.model_names[:2]),
                   "n_unscored": int(table.n_unscored), "kept": view.counts, "pool": flt.strategy_counts(table),
                   "histograms": {key: {"model": h.model_name, "edges": h.edges, "kept": h.kept, "dropped": h.dropped}
                                  for key, h in view.histograms.items()}})
        return
    typer.echo(f"preset {p.name!r}: " + ", ".join(f"{k}={v:g}" for k, v in th.as_dict().items())
               + f"; model 1 = {table.model_names[0]}, model 2 = {table.model_names[1]}")
    if table.n_unscored:
        typer.echo(f"{table.n_unscored} pair(s) lack a score under one of the two models and are left out")
    typer.echo(render_counts(view.counts, flt.strategy_counts(table)))
    for key in ("alpha1", "alpha2", "delta1", "delta2"):
        hist = view.histograms[key]
        typer.echo("")
        typer.echo(render_histogram(hist, width=width, marks=threshold_marks(th, hist)))


@presets_app.command("list")
@user_errors
def presets_list(db: DbOpt = DB_DEFAULT, as_json: JsonOpt = False) -> None:
    """Every preset with its thresholds."""
    from curator import filter as flt

    with session_scope(db) as session:
        rows = flt.list_presets(session)
        if as_json:
            echo_json([flt.preset_dict(p) for p in rows])
            return
        typer.echo(f"{'name':<20}{'α1':>6}{'α2':>6}{'β1':>6}{'β2':>6}{'Δ1':>13}{'Δ2':>13}  models / author")
        for p in rows:
            models = f"{p.model1 or '(1st)'}, {p.model2 or '(2nd)'}"
            typer.echo(f"{p.name:<20}{p.alpha1:>6.2f}{p.alpha2:>6.2f}{p.beta1:>6.2f}{p.beta2:>6.2f}"
                       f"{p.delta1_min:>6.2f}:{p.delta1_max:<6.2f}{p.delta2_min:>6.2f}:{p.delta2_max:<6.2f}"
                       f"  {models} / {p.author}")


@presets_app.command("show")
@user_errors
def presets_show(name: str = typer.Argument("paper", help="Preset name."), db: DbOpt = DB_DEFAULT) -> None:
    """One preset as JSON."""
    from curator import filter as flt

    with session_scope(db) as session:
        data = flt.preset_dict(flt.get_preset(session, name))
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@presets_app.command("save")
@user_errors
def presets_save(
    name: str = typer.Argument(..., help="Preset name (created, or updated when it exists)."),
    author: str = typer.Option(..., "--author", help="Who set these thresholds."),
    base: str = typer.Option("paper", "--from", help="Preset whose values fill the options not given."),
    alpha1: Optional[float] = typer.Option(None, help=f"Winner score under model 1 ≥ α1 (paper {ALPHA[0]})."),
    alpha2: Optional[float] = typer.Option(None, help=f"Winner score under model 2 ≥ α2 (paper {ALPHA[1]:.2f})."),
    beta1: Optional[float] = typer.Option(None, help=f"Loser score under model 1 ≥ β1 (paper {BETA_LOSER[0]:.2f})."),
    beta2: Optional[float] = typer.Option(None, help=f"Loser score under model 2 ≥ β2 (paper {BETA_LOSER[1]})."),
    delta1: Optional[str] = typer.Option(None, help=f"Δ1 = winner − loser range MIN:MAX (paper {DELTA1[0]}:{DELTA1[1]})."),
    delta2: Optional[str] = typer.Option(None, help=f"Δ2 range MIN:MAX (paper {DELTA2[0]}:{DELTA2[1]:.2f})."),
    model1: Optional[str] = typer.Option(None, help="Model 1 by name (default: first of the ensemble)."),
    model2: Optional[str] = typer.Option(None, help="Model 2 by name (default: second of the ensemble)."),
    db: DbOpt = DB_DEFAULT,
) -> None:
    """Save thresholds under NAME; options not given keep the values of --from (default: paper)."""
    from curator import filter as flt

    changes: dict[str, float] = {k: v for k, v in
                                 {"alpha1": alpha1, "alpha2": alpha2, "beta1": beta1, "beta2": beta2}.items()
                                 if v is not None}
    for m, value in ((1, delta1), (2, delta2)):
        if value is not None:
            changes[f"delta{m}_min"], changes[f"delta{m}_max"] = flt.parse_range(value, name=f"--delta{m}")
    with session_scope(db) as session:
        start = flt.get_preset(session, base)
        th = flt.thresholds_of(start).replace(**changes)
        p = flt.save_preset(session, name, th, author=author, model1=model1 or start.model1,
                            model2=model2 or start.model2)
        typer.echo(f"saved preset {p.name!r}: " + ", ".join(f"{k}={v:g}" for k, v in th.as_dict().items()))


@presets_app.command("delete")
@user_errors
def presets_delete(name: str = typer.Argument(..., help="Preset name."), db: DbOpt = DB_DEFAULT) -> None:
    """Delete a preset ("paper" stays)."""
    from curator import filter as flt

    with session_scope(db) as session:
        flt.delete_preset(session, name)
    typer.echo(f"deleted preset {name!r}")


def register(app: typer.Typer) -> None:
    app.command("pairs")(pairs)
    app.command("stats")(stats)
    app.add_typer(presets_app, name="presets")
