"""Options every command shares, and the edge where errors become one line."""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Callable, TypeVar

import typer
from sqlalchemy.exc import DBAPIError

from curator.errors import CuratorError, shorten
from db.session import DEFAULT_DB, safe_url

DbOpt = Annotated[
    str,
    typer.Option("--db", envvar="CURATOR_DB", help="Store URL (sqlite:///FILE or postgresql://...)."),
]
DB_DEFAULT = DEFAULT_DB

AudioRootOpt = Annotated[
    str | None,
    typer.Option(
        "--audio-root",
        envvar="CURATOR_AUDIO_ROOT",
        help="Folder of the content-addressed audio store (default: <db>_audio/ beside a SQLite file, ./audio otherwise).",
    ),
]

F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def user_errors(fn: F) -> F:
    """Turn CuratorError (and an unreachable database) into one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CuratorError as exc:
            fail(str(exc))
        except DBAPIError as exc:  # an unreachable store, or a --db file that is not a database
            first = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else "unknown error"
            url = kwargs.get("db")
            where = f" {safe_url(url)}" if isinstance(url, str) else ""
            fail(shorten(f"store{where} failed: {first}"))
        except UnicodeDecodeError as exc:  # a text input read without a named check
            fail(f"an input is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})")
        except OSError as exc:  # a folder that cannot be written, a disk that is full
            where = f"{exc.filename}: " if exc.filename else ""
            fail(shorten(f"{where}{exc.strerror or exc}"))
        except KeyboardInterrupt:
            typer.echo("interrupted; rerun the same command to resume", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
