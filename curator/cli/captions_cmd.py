"""`curator captions import|select`: the caption sets of arXiv 2404.09956 §4.1."""

from __future__ import annotations

from pathlib import Path

import typer

from curator.cli.common import DB_DEFAULT, DbOpt, show_progress, user_errors
from db.session import session_scope

captions_app = typer.Typer(help="Import captions and select T1 (arXiv 2404.09956 §4.1).", no_args_is_help=True)


@captions_app.command("import")
@user_errors
def import_cmd(
    path: Path = typer.Argument(..., help="AudioCaps CSV (audiocap_id,youtube_id,start_time,caption), "
                                          "JSONL with a \"caption\" or \"text\" field, or one caption per line."),
    source: str = typer.Option(None, "--source", help="Source name recorded per caption (default: the file name)."),
    split: str = typer.Option("train", "--split", help="Split recorded per caption."),
    db: DbOpt = DB_DEFAULT,
) -> None:
    """Import captions, de-duplicated (whitespace-normalised text); a rerun adds nothing."""
    from curator.captions import import_captions

    with session_scope(db) as session:
        result = import_captions(session, path, source=source, split=split)
    typer.echo(result.summary())


@captions_app.command("select")
@user_errors
def select_cmd(
    clusters: int = typer.Option(200, "--clusters", help="KMeans clusters K (paper: 200, arXiv 2404.09956 §4.1)."),
    per_cluster: int = typer.Option(70, "--per-cluster", help="Captions taken per cluster, closest to the centre first (paper: 70)."),
    model: str = typer.Option("all-MiniLM-L6-v2", "--model",
                              help="sentence-transformers id or folder (default: all-MiniLM-L6-v2, from the offline extra's package or the hub; paper: thenlper/gte-large)."),
    seed: int = typer.Option(0, "--seed", help="KMeans random_state."),
    batch_size: int = typer.Option(64, "--batch-size", help="Embedding batch size."),
    split: str = typer.Option("train", "--split", help="Candidate captions' split."),
    db: DbOpt = DB_DEFAULT,
) -> None:
    """Select T1: embed, KMeans, keep the N captions closest to each centre."""
    from curator.captions import select_captions

    with session_scope(db) as session:
        run = select_captions(session, model=model, clusters=clusters, per_cluster=per_cluster, progress=show_progress(),
                              seed=seed, batch_size=batch_size, split=split)
        typer.echo(f"selection run {run.id}: {run.n_selected} of {run.n_candidates} captions "
                   f"({clusters} clusters × up to {per_cluster}, model {model}, seed {seed})")


def register(app: typer.Typer) -> None:
    app.add_typer(captions_app, name="captions")
