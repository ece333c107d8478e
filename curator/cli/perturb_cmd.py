"""`curator perturb`: Strategy 2 (on T1) or 3 (on T2) perturbed captions from an LLM (arXiv 2404.09956 §4.1)."""

from __future__ import annotations

import typer

from curator.cli.common import DB_DEFAULT, DbOpt, choices, show_progress, user_errors
from db.errors import CuratorError
from curator.perturb.parse import PERTURB_STRATEGIES
from db.session import open_store, session_scope

PerturbStrategy = choices("PerturbStrategy", PERTURB_STRATEGIES)


@user_errors
def perturb(
    strategy: PerturbStrategy = typer.Option(..., "--strategy", help="2: concepts perturbed, on T1; 3: temporal order perturbed, on T2."),
    model: str = typer.Option(None, "--model", help="LLM model name sent to the endpoint (paper: GPT-4); needed for --backend openai."),
    base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (default: OPENAI_BASE_URL or api.openai.com). Key from OPENAI_API_KEY."),
    concurrency: int = typer.Option(4, "--concurrency", help="Requests in flight at once."),
    max_retries: int = typer.Option(5, "--max-retries", help="Retries per request on 429, 5xx, timeouts and dropped connections (exponential backoff with jitter, honouring Retry-After)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per request."),
    backend: str = typer.Option("openai", "--backend", help="openai (any OpenAI-compatible endpoint) or world (the rule-based miniature-world perturber)."),
    limit: int = typer.Option(None, "--limit", help="Ask at most this many captions in this run."),
    db: DbOpt = DB_DEFAULT,
) -> None:
    """Ask the LLM for five perturbed captions per caption; stores every raw answer, never asks twice; resumable."""
    from curator.perturb.parse import check_strategy
    from curator.perturb.run import run_perturbations

    strategy = check_strategy(strategy.value)
    open_store(db)  # refuses an un-migrated store before anything slow starts
    if backend == "openai":
        from curator.perturb.llm import LLMConfig, OpenAIPerturber

        if not model:
            raise CuratorError("--model is required with --backend openai (the model name the endpoint serves)")
        perturber = OpenAIPerturber(LLMConfig(model=model, base_url=base_url, timeout=timeout, max_retries=max_retries))
        for note in perturber.notes:
            typer.echo(f"note: {note}", err=True)
    elif backend == "world":
        from curator.world import make_perturber
        perturber = make_perturber()
        if model and model != perturber.model:
            typer.echo(f"note: --model {model} is not used by --backend world; requests are recorded as "
                       f"model {perturber.model}", err=True)
    else:
        raise CuratorError(f"unknown --backend {backend!r}: expected openai or world")

    with session_scope(db) as session:
        counts = run_perturbations(session, perturber, strategy, concurrency=concurrency, limit=limit,
                                   progress=show_progress())
    typer.echo(counts.summary())
    for line in counts.failures:
        typer.echo(f"failed: {line}", err=True)
    if counts.malformed:
        typer.echo(f"note: {counts.malformed} answers had no parseable lines; they are stored with n_parsed=0", err=True)
    if counts.failed:
        typer.echo(f"{counts.failed} requests failed after every retry; rerun the same command to ask them again", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("perturb")(perturb)
