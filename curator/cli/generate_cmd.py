"""`curator generate`: parse, wire, run curator.generate.run.run_generation.

Sharded runs: `accelerate launch -m curator generate ...` starts one process per GPU; each takes
a disjoint slice of the work (accelerate's PartialState gives its rank, the number of processes
and its device) and all write to the one store (use PostgreSQL when several machines share it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from curator.cli.common import DB_DEFAULT, AudioRootOpt, DbOpt, choices, show_progress, user_errors
from curator.paper import CLIP_SECONDS
from db.models import STRATEGIES
from db.session import open_store, session_scope

Strategy = choices("Strategy", STRATEGIES)


def register(app: typer.Typer) -> None:
    @app.command("generate")
    @user_errors
    def generate(
        strategy: Strategy = typer.Option(..., "--strategy",
                                     help="1.1 (T1, 5/25/50/100 steps), 1.2 (T1, 4 seeds × 50 steps), "
                                          "2 (T1, caption vs perturbed caption), 3 (T2, the same) — arXiv 2404.09956 §4.1."),
        model: Optional[str] = typer.Option(None, "--model",
                                            help="world | tiny | Tango folder (main_config.json) | declare-lab/... | "
                                                 "diffusers AudioLDM/AudioLDM2 folder or hub id."),
        backend: Optional[str] = typer.Option(None, "--backend", help="Override detection: tango|audioldm|audioldm2|world."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint",
                                                  help="A trainer checkpoint RUN/step-K (a Tango folder); replaces --model."),
        seed: int = typer.Option(0, "--seed", help="Run seed; each clip's seed is derived from it and recorded."),
        batch_size: int = typer.Option(8, "--batch-size", min=1, help="Clips per generator call."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N captions of the set."),
        duration: float = typer.Option(CLIP_SECONDS, "--duration", help=f"Seconds per clip (Tango: {CLIP_SECONDS})."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 … (default: accelerate's)."),
        db: DbOpt = DB_DEFAULT,
        audio_root: AudioRootOpt = None,
    ) -> None:
        """Generate the clips of one strategy for every caption of its set (resumable, sharded with accelerate)."""
        from accelerate import PartialState

        from curator.audio import audio_store_for
        from db.errors import CuratorError
        from curator.generate.backends import resolve_generator
        from curator.generate.run import check_strategy, run_generation

        strategy = check_strategy(strategy.value)
        if not duration > 0:
            raise CuratorError(f"--duration must be positive, got {duration}")
        open_store(db)  # refuses an un-migrated store before anything slow starts
        state = PartialState(cpu=device == "cpu")
        generator = resolve_generator(model, backend=backend, checkpoint=checkpoint, device=device or state.device)
        store = audio_store_for(db, audio_root)
        with session_scope(db) as session:
            counts = run_generation(session, store, generator, strategy, seed=seed, batch_size=batch_size, limit=limit,
                                    shard=(state.process_index, state.num_processes), duration_s=duration,
                                    progress=show_progress())
        typer.echo(
            f"strategy {strategy} [{generator.name} {generator.checkpoint_id}] shard "
            f"{state.process_index + 1}/{state.num_processes}: {counts['generated']} generated, "
            f"{counts['existing']} already present, {counts['planned']} planned for {counts['captions']} captions"
            + (f", {counts['no_perturbation']} captions without perturbations skipped" if strategy in ("2", "3") else "")
        )
