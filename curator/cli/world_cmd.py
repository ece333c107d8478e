"""`curator world captions N --seed S [--out FILE]`: captions of the miniature world."""

from __future__ import annotations

from pathlib import Path

import typer

from curator.audio import atomic_write_bytes
from curator.cli.common import user_errors

world_app = typer.Typer(help="The miniature world: procedural sound events for offline demos and tests.",
                        no_args_is_help=True)


@world_app.command("captions")
@user_errors
def captions(
    n: int = typer.Argument(..., help="Number of distinct captions."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed writes the same captions."),
    out: Path | None = typer.Option(None, "--out", help="File to write (one caption a line); default stdout."),
) -> None:
    """Write N captions of the world grammar, one per line (input for `curator captions import`)."""
    from db.errors import CuratorError
    from curator.world.grammar import random_captions

    if n < 1:
        raise CuratorError(f"N must be at least 1, got {n}")
    text = "\n".join(random_captions(n, seed)) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_bytes(out, text.encode("utf-8"))
        typer.echo(f"wrote {n} captions to {out}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(world_app, name="world")
