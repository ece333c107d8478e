"""The `curator` command. Each submodule parses and wires one group of commands."""

from __future__ import annotations

import typer

from curator.cli.common import OneLineErrors

app = typer.Typer(
    name="curator",
    cls=OneLineErrors,
    help="Audio-alpaca curation studio: captions → perturbations → clips → CLAP scores → pairs → export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from curator.cli.common import set_quiet, version_option  # noqa: E402


@app.callback()
def _top(version: bool = version_option("curator"),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or library chatter; "
                                                                 "results and errors still print.")) -> None:
    set_quiet(quiet)


from curator.cli import db_cmd  # noqa: E402

db_cmd.register(app)

from curator.cli import (  # noqa: E402
    captions_cmd, demo_cmd, export_cmd, generate_cmd, listen_cmd, pairs_cmd, perturb_cmd, score_cmd, users_cmd,
    world_cmd,
)

# Command groups registered in pipeline order; each module has register(app).
for _mod in (captions_cmd, perturb_cmd, generate_cmd, score_cmd, pairs_cmd, export_cmd, world_cmd, demo_cmd,
             users_cmd, listen_cmd):
    _mod.register(app)


def main() -> None:
    app()
