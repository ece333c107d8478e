"""`annotate-ui`: launch the rater app on a migrated store."""

from __future__ import annotations

import logging

import typer
from sqlalchemy import func, select

from curator.cli.common import AudioRootOpt, DB_DEFAULT, DbOpt, user_errors, version_option
from db.annotation import User
from db.errors import CuratorError
from db.session import safe_url

cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@cli.command()
@user_errors
def serve(
    db: DbOpt = DB_DEFAULT,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="TCP port."),
    audio_root: AudioRootOpt = None,
    concurrency: int = typer.Option(16, "--concurrency", min=1, max=256, help="Events handled at once per event."),
    lease_minutes: float = typer.Option(30.0, "--lease-minutes", min=0.1,
                                        help="An open assignment not voted within this goes back to the queue."),
    session_idle_minutes: float = typer.Option(60.0, "--session-idle-minutes", min=0.1,
                                               help="A login unused for this long is logged out."),
    max_body_kb: int = typer.Option(1024, "--max-body-kb", min=16, help="Request bodies over this are refused unread."),
    login_max_failures: int = typer.Option(5, "--login-max-failures", min=1,
                                           help="Failed logins of one account or from one client before a lockout."),
    login_lockout_s: float = typer.Option(60.0, "--login-lockout-s", min=1.0,
                                          help="The first lockout; each further one doubles (up to a day)."),
    workers: int = typer.Option(1, "--workers", help="Server processes on one socket (more than 1 needs a PostgreSQL store)."),
    min_played_share: float = typer.Option(
        1.0, "--min-played-share",
        help="A vote or rating is accepted once the server has sent this share of each of its clips to the rater "
             "(1.0: to the end)."),
    version: bool = version_option("annotate-ui"),
) -> None:
    """Serve the blind pair audit, threshold tuning and listening sessions behind the store's login."""
    # imported when the app starts, so `annotate-ui --help` answers without loading Gradio (seconds)
    from annotate_ui.web.server import ServeSettings, check_workers, serve

    check_workers(db, workers)
    settings = ServeSettings(db=db, audio_root=str(audio_root) if audio_root else None, host=host, port=port,
                             concurrency=concurrency, lease_s=60 * lease_minutes, session_idle_s=60 * session_idle_minutes,
                             max_body_bytes=1024 * max_body_kb, login_max_failures=login_max_failures,
                             login_lockout_s=login_lockout_s, min_played_share=min_played_share)
    ctx = settings.context()  # refuses an un-migrated store
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with ctx.session() as s:
        admins = s.scalar(select(func.count()).select_from(User).where(User.role == "admin", User.active.is_(True)))
    if not admins:
        raise CuratorError(f"store {safe_url(db)} has no active admin: run `curator users add NAME --role admin --db {safe_url(db)}`")
    typer.echo(f"annotate-ui on http://{host}:{port} (store {safe_url(db)}, audio {ctx.audio_store.root}"
               + (f", {workers} processes)" if workers > 1 else ")"))
    serve(settings, workers)


def main() -> None:
    cli()
