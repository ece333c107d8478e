"""`curator db upgrade|downgrade|current`."""

from __future__ import annotations

import typer

from curator.cli.common import DB_DEFAULT, DbOpt, user_errors
from db import session as store

db_app = typer.Typer(help="Create and migrate the store.", no_args_is_help=True)


@db_app.command("upgrade")
@user_errors
def upgrade(db: DbOpt = DB_DEFAULT, revision: str = typer.Option("head", help="Target revision.")) -> None:
    """Create the store or migrate it to the latest revision."""
    rev = store.upgrade(db, revision)
    typer.echo(f"store {store.safe_url(db)} at revision {rev}")


@db_app.command("downgrade")
@user_errors
def downgrade(revision: str = typer.Argument(..., help="Revision to go back to ('base' drops everything)."),
              db: DbOpt = DB_DEFAULT) -> None:
    """Migrate the store back to REVISION."""
    rev = store.downgrade(db, revision)
    typer.echo(f"store {store.safe_url(db)} at revision {rev or 'base'}")


@db_app.command("current")
@user_errors
def current(db: DbOpt = DB_DEFAULT) -> None:
    """Print the store's revision and the latest one."""
    rev = store.current_revision(store.make_engine(db))
    typer.echo(f"store revision: {rev or 'none (not migrated)'}; latest: {store.head_revision()}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
