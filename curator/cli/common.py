"""Options every command shares, and the edge where errors become one line."""

from __future__ import annotations

import functools
import os
import sys
from typing import Annotated, Callable, TypeVar

import typer
from sqlalchemy.exc import DBAPIError
from typer.core import TyperGroup

from db.errors import CuratorError, shorten
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


# --------------------------------------------------------------------------- habits every command shares


def version_text(prog: str) -> str:
    """`PROG VERSION` (the package's version, the one curator.__version__ records in exports)."""
    import curator

    return f"{prog} {curator.__version__}"


def version_option(prog: str):
    """A `--version` option for PROG's top-level callback: prints the version and exits."""

    def show(value: bool) -> None:
        if value:
            typer.echo(version_text(prog))
            raise typer.Exit()

    return typer.Option(False, "--version", callback=show, is_eager=True, help="Print the version and exit.")


_QUIET = {"on": False}


def set_quiet(on: bool) -> None:
    """`--quiet`: no progress bars and no library chatter (transformers, diffusers, datasets logs at
    error level only); results and errors still print."""
    _QUIET["on"] = bool(on)
    if on:
        import logging

        for name in ("transformers", "diffusers", "datasets", "huggingface_hub", "accelerate", "sentence_transformers"):
            logging.getLogger(name).setLevel(logging.ERROR)
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


def show_progress() -> bool:
    """Whether long work shows progress bars (false under `--quiet`)."""
    return not _QUIET["on"]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of the table.")]


def echo_json(data) -> None:
    """DATA as indented JSON on stdout (numpy numbers and arrays as plain JSON)."""
    import json

    def plain(o):
        import numpy as np

        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        if hasattr(o, "isoformat"):
            return o.isoformat()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=plain))


def choices(name: str, values) -> type:
    """A str Enum of VALUES (typer shows its members in --help and refuses anything else); the
    command reads `.value`."""
    import enum

    return enum.Enum(name, [(v, v) for v in values], type=str)


# the exception classes of the parser typer runs (click's, or the copy newer typer versions carry)
_UsageError = typer.BadParameter.__base__


class OneLineErrors(TyperGroup):
    """The top-level command group: a usage error (a bad choice, a missing option, an unknown
    flag) is one line on stderr with exit status 2, like every other error a user can cause."""

    @staticmethod
    def _one_line(exc, where: str):
        message = " ".join(exc.format_message().replace("Value error, ", "").split())
        if not message:  # no arguments: the help was printed, let the parser finish as usual
            raise exc
        typer.secho(f"error: {message} (see `{where} --help`)", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _UsageError as exc:
            self._one_line(exc, exc.ctx.command_path if exc.ctx is not None else (info_name or self.name))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _UsageError as exc:
            self._one_line(exc, exc.ctx.command_path if exc.ctx is not None else ctx.command_path)
