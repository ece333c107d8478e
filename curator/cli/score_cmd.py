"""`curator score`: CLAP scores of every clip under an ensemble of models (arXiv 2404.09956 §4.1.2)."""

from __future__ import annotations

from typing import Annotated

import typer

from curator.cli.common import DB_DEFAULT, AudioRootOpt, DbOpt, show_progress, user_errors
from db.session import open_store, session_scope

HELP = (
    "Score every clip against its caption's text with each --model, in ensemble order.\n\n"
    "--model is [NAME=]CHECKPOINT, repeated. CHECKPOINT is world-judge-a / world-judge-b, a laion-clap .pt file "
    "(the paper's 630k-audioset-best.pt as model 1 and 630k-best.pt as model 2) or a transformers CLAP folder / "
    "hub id (e.g. laion/clap-htsat-unfused). The world judges analyse the audio of the miniature world; a caption "
    "their grammar cannot parse scores 0.0 (below every paper threshold) with a warning naming it.\n\n"
    "The FIRST --model is model 1: it ranks the four clips of each Strategy 1 caption in `curator pairs`; the pair "
    "filter applies its thresholds under every model.\n\n"
    "Scores are cached per (clip, text, model): a rerun scores only what is missing, and an interrupted run resumes."
)


def score(
    model: Annotated[list[str], typer.Option("--model", help="[NAME=]CHECKPOINT; repeat in ensemble order (first = model 1, ranks Strategy 1 pairs).")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Clips per model call (and per commit).")] = 16,
    device: Annotated[str, typer.Option("--device", help="torch device for CLAP models (cpu, cuda, cuda:1).")] = "cpu",
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer + feature extractor for laion .pt checkpoints: hub id or folder (default laion/clap-htsat-unfused).")] = None,
    db: DbOpt = DB_DEFAULT,
    audio_root: AudioRootOpt = None,
) -> None:
    from curator.audio import audio_store_for
    from curator.scoring.run import run_scoring
    from curator.scoring.specs import make_scorer

    open_store(db)  # refuses an un-migrated store before anything slow starts
    names, scorers = [], []
    for spec in model:
        name, scorer = make_scorer(spec, device=device, batch_size=batch_size, tokenizer_source=tokenizer)
        names.append(name)
        scorers.append(scorer)
    store = audio_store_for(db, audio_root)
    with session_scope(db) as session:
        counts = run_scoring(session, store, scorers, names=names, batch_size=batch_size,
                             progress=show_progress())
    typer.echo(f"scored {counts['scored']} (clip, model) pairs, {counts['cached']} already cached; "
               f"{counts['clips']} clips, models in order: {', '.join(names)}")


def register(app: typer.Typer) -> None:
    app.command("score", help=HELP)(user_errors(score))
