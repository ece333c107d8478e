"""`curator export` and `curator import-pairs`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from curator.cli.common import DB_DEFAULT, AudioRootOpt, DbOpt, choices, show_progress, user_errors
from curator.export import AUDIO_LAYOUTS
from db.session import session_scope

AudioLayout = choices("AudioLayout", AUDIO_LAYOUTS)


@user_errors
def export(
    out: Path = typer.Argument(..., help="Folder to write (must not exist unless --force)."),
    preset: str = typer.Option("paper", "--preset", help="Threshold preset whose kept pairs are exported."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    audio: AudioLayout = typer.Option("embedded", "--audio",
                              help="Where the clips go: embedded (WAV bytes in the parquet, as the published set), "
                                   "files (OUT/audio/*.wav, path-only cells), or both."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", metavar="REPO",
                                              help="Then upload OUT to this hub dataset repo (OWNER/NAME) with "
                                                   "huggingface_hub; the token is the machine's login or HF_TOKEN."),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: create the repo private."),
    db: DbOpt = DB_DEFAULT,
    audio_root: AudioRootOpt = None,
) -> None:
    """Write the pairs a preset keeps as an Audio-alpaca dataset (atomic, reproducible).

    OUT/data/train-00000-of-00001.parquet: prompt, chosen, rejected (16 kHz audio), strategy, pair_id,
    score_chosen_<model>, score_rejected_<model>; OUT/audio/*.wav with --audio files|both; OUT/README.md;
    OUT/manifest.json (preset, store, counts, sha256 of every file, time, code version). Loads with
    datasets.load_dataset("parquet", data_files=...).
    """
    import json

    from curator.audio import audio_store_for
    from curator.export import MANIFEST, export_audio_alpaca

    if push_to_hub is None and private:
        from db.errors import CuratorError

        raise CuratorError("--private goes with --push-to-hub REPO")

    with session_scope(db) as session:
        path = export_audio_alpaca(session, audio_store_for(db, audio_root), out, preset_name=preset, db_url=db,
                                   force=force, audio=audio.value, progress=show_progress())
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    counts = ", ".join(f"S{k}: {v}" for k, v in manifest["counts"].items() if k != "total")
    typer.echo(f"exported {manifest['n_pairs']} pairs ({counts}) with preset {preset!r} to {path}")
    if push_to_hub:
        from curator.export import push_export

        url = push_export(path, push_to_hub, private=private)
        typer.echo(f"uploaded {path} to the hub dataset {push_to_hub}: {url}")


@user_errors
def import_pairs(
    path: Path = typer.Argument(..., help="A parquet file shaped like Audio-alpaca, a datasets hub id or "
                                          "save_to_disk folder in its layout, or a folder with a CSV "
                                          "(prompt,chosen,rejected,strategy; audio file paths)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the set (default: file/folder name); "
                                                            "sources are recorded as import:NAME."),
    strategy_default: Optional[str] = typer.Option(None, "--strategy-default",
                                                   help="Strategy (1.1, 1.2, 2, 3) for rows that have none."),
    db: DbOpt = DB_DEFAULT,
    audio_root: AudioRootOpt = None,
) -> None:
    """Import a preference set made elsewhere so raters can audit it (idempotent; all rows or none)."""
    from curator.audio import audio_store_for
    from curator.import_pairs import import_pairs as run_import

    with session_scope(db) as session:  # all rows or none: an error rolls the import back
        counts = run_import(session, audio_store_for(db, audio_root), path, name=name,
                            strategy_default=strategy_default, progress=show_progress())
    typer.echo(f"imported {counts.rows} rows: {counts.pairs_created} new pairs ({counts.pairs_existing} already "
               f"there), {counts.clips_created} clips ({counts.converted} resampled/downmixed), "
               f"{counts.captions_created} new captions")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import-pairs")(import_pairs)
