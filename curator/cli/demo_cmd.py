"""`curator demo [--db URL] [--captions N]`: a demo store built end to end with the miniature world."""

from __future__ import annotations

import typer

from curator.cli.common import DB_DEFAULT, AudioRootOpt, DbOpt, show_progress, user_errors
from curator.cli.filter_text import render_counts
from curator.cli.demo import DEFAULT_CAPTIONS
from curator.paper import CLIP_SECONDS
from db.session import session_scope


def demo(db: DbOpt = DB_DEFAULT,
         captions: int = typer.Option(DEFAULT_CAPTIONS, "--captions", help="Number of world captions."),
         seed: int = typer.Option(0, "--seed", help="Seed: the same seed and N give the same store counts."),
         duration: float = typer.Option(CLIP_SECONDS, "--duration", help=f"Clip length in seconds (Tango: {CLIP_SECONDS})."),
         audio_root: AudioRootOpt = None,
         accounts: bool = typer.Option(False, "--accounts", help="Also create the demo accounts admin and rater "
                                       "(random passwords, printed once) if the store has no users.")) -> None:
    """Build a demo store offline: world captions → T1/T2 → perturbations → all four strategies →
    both world judges → pairs → the default preset. Resumable: rerunning adds nothing."""
    from curator.cli.demo import next_steps, run_demo

    result = run_demo(db, captions=captions, seed=seed, audio_root=audio_root, duration_s=duration,
                      echo=lambda s: typer.echo(s, err=True), progress=show_progress())
    typer.echo("store: " + ", ".join(f"{k} {v}" for k, v in result.counts.items() if not k.startswith("kept_")))
    typer.echo(render_counts(result.kept, result.pool))
    if accounts:
        from curator.cli.demo import ensure_demo_accounts

        with session_scope(db) as session:
            created = ensure_demo_accounts(session)
        for name, password in created.items():
            typer.echo(f"account {name}: password {password}   (shown once; only its hash is stored)")
        if not created:
            typer.echo("accounts: the store already has users; none created")
    typer.echo(next_steps(db))


def register(app: typer.Typer) -> None:
    app.command("demo")(user_errors(demo))
