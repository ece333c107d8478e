"""The `trainer` command: `trainer run` (Diffusion-DPO fine-tuning) and `trainer eval`.
Parses and wires only; the work is in trainer.train and trainer.evaluate.

Multi-GPU: `accelerate launch --num_processes 2 -m trainer run --model PATH --data EXPORT --out RUN`
(data parallel; --set mixed_precision=bf16, gradient_checkpointing=true, optimizer=adamw8bit|adafactor
for small GPUs).
"""

from __future__ import annotations

import os

from pathlib import Path
from typing import List, Optional

import typer

from curator.cli.common import AudioRootOpt, OneLineErrors, choices, user_errors, version_option
from db.errors import CuratorError
from curator.paper import CLIP_SECONDS, EVAL_STEPS, GUIDANCE_SCALE
from db.session import session_scope
from trainer.config import AUDIT_POLICIES

app = typer.Typer(name="trainer", cls=OneLineErrors,
                  help="Diffusion-DPO fine-tuning of Tango on approved pairs (arXiv 2404.09956 §4.2, §5.1).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

@app.callback()
def _top(version: bool = version_option("trainer")) -> None:
    """Diffusion-DPO fine-tuning of Tango on approved pairs (arXiv 2404.09956 §4.2, §5.1)."""


AuditPolicy = choices("AuditPolicy", AUDIT_POLICIES)

DbOption = typer.Option(None, "--db", envvar="CURATOR_DB",
                        help="Store URL: pairs come from it with --preset; the run is recorded in it.")


def _run_epilog() -> str:
    from trainer.config import config_help

    # one paragraph per key: the help formatter keeps paragraphs apart
    return "Config keys (--config FILE or --set key=value):\n\n" + config_help().replace("\n", "\n\n")


@app.command("run", epilog=_run_epilog())
@user_errors
def run_cmd(
    config: Optional[Path] = typer.Option(None, "--config", help="A .json, .toml or .yaml file of config keys."),
    model: Optional[str] = typer.Option(None, "--model", help="tiny | a Tango folder | an AudioLDMPipeline folder | a hub id (the reference model)."),
    data: Optional[str] = typer.Option(None, "--data", help="An export folder or .parquet file, a datasets folder (save_to_disk) or hub id "
                                                             "(prompt, chosen, rejected, strategy); 'store' for --db pairs."),
    out: Optional[str] = typer.Option(None, "--out", help="Run folder: DIR/step-K/ checkpoints, DIR/metrics.jsonl."),
    set_: List[str] = typer.Option([], "--set", help="key=value config override (repeatable)."),
    db: Optional[str] = DbOption,
    preset: Optional[str] = typer.Option(None, "--preset", help="Store source: the filter preset (implies --data store)."),
    audit_policy: Optional[AuditPolicy] = typer.Option(
        None, "--audit-policy", help="Store source: what the raters' audits do to a pair (see audit_policy below)."),
    audio_root: AudioRootOpt = None,
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue from DIR/step-K of the same run, or "
                                                               "'latest' (the highest K in --out or the config's out)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Fine-tune the UNet: one SFT epoch on winners, then Diffusion-DPO (arXiv 2404.09956 §5.1)."""
    from trainer.config import load_config

    explicit = {"model": model, "data": data, "out": out, "preset": preset,
                "audit_policy": audit_policy.value if audit_policy is not None else None}
    if preset and not data:
        explicit["data"] = "store"
    if resume == "latest":
        from trainer.config import read_config_file
        from trainer.run_folder import latest_checkpoint

        where = out or (read_config_file(config).get("out") if config else None)
        if not where:
            raise CuratorError("--resume latest needs the run folder: give --out DIR (or a config with out)")
        resume = str(latest_checkpoint(where))
    if resume and not (config or model):  # resume with the saved config by default
        from trainer.run_folder import read_checkpoint

        from trainer.config import config_from_dict, parse_set

        values = read_checkpoint(resume)[0].to_dict()  # the saved config, then --set, then options
        values.update(parse_set(item) for item in set_)
        values.update({k: v for k, v in explicit.items() if v is not None})
        cfg = config_from_dict(values, where=f"--resume {resume}")
    else:
        cfg = load_config(config, set_, **explicit)
    run(cfg, db=db, audio_root=audio_root, resume=resume, progress=not quiet)


def run(cfg, *, db: str | None, audio_root: str | None, resume: str | None, progress: bool) -> None:
    from trainer.runs import StoreRecorder
    from trainer.train import run_training

    if cfg.out and Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise CuratorError(f"--out {cfg.out} is a file, not a run folder; give a folder (new or of this run)")
    if cfg.data == "store":
        if not db:
            raise CuratorError("--data store (or --preset) needs --db URL")
    if db:
        from curator.audio import audio_store_for

        with session_scope(db) as session:
            def loader():
                if cfg.data == "store":
                    from trainer.data import load_store_pairs

                    return load_store_pairs(session, audio_store_for(db, audio_root), preset=cfg.preset,
                                            policy=cfg.audit_policy)
                from trainer.data import load_pairs

                return load_pairs(cfg.data)

            result = run_training(cfg, loader, resume=resume, recorder=StoreRecorder(session), progress=progress)
    else:
        from trainer.data import load_pairs

        result = run_training(cfg, lambda: load_pairs(cfg.data), resume=resume, progress=progress)
    if int(os.environ.get("RANK", "0") or 0) != 0:  # one summary per launch, from the main process
        return
    last = result.last_metrics
    summary = ", ".join(f"{k} {last[k]:.4g}" for k in ("loss", "rewards/accuracies", "rewards/margins") if k in last)
    typer.echo(f"trained {result.global_step} steps on {result.n_pairs} pairs → {result.checkpoints[-1] if result.checkpoints else cfg.out}"
               + (f" ({summary})" if summary else ""))


@app.command("pretrain")
@user_errors
def pretrain_cmd(
    data: Optional[str] = typer.Option(None, "--data", help="world (miniature-world renders) | an export folder/.parquet | a folder of metadata.jsonl/.csv (file_name, caption) rows."),
    out: Optional[str] = typer.Option(None, "--out", help="Run folder; the finished model (Tango layout) is written to DIR itself."),
    config: Optional[Path] = typer.Option(None, "--config", help="A .json or .toml file of pretrain config keys."),
    set_: List[str] = typer.Option([], "--set", help="key=value config override (repeatable)."),
    size: str = typer.Option("default", "--size", help="default (two CPU cores) | large (a GPU) | smoke (seconds): the base values --config and --set change."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train a Tango-shaped text-to-audio model from scratch: frozen T5, mel VAE, HiFi-GAN, v-prediction UNet (resumable: rerun to continue)."""
    from trainer.pretrain import run_pretrain
    from trainer.pretrain_config import large_config, load_pretrain_config, smoke_config

    bases = {"default": {}, "large": large_config(), "smoke": smoke_config()}
    if size not in bases:
        raise CuratorError(f"--size {size!r}: expected one of {', '.join(bases)}")
    cfg = load_pretrain_config(config, set_, base=bases[size], data=data, out=out)
    result = run_pretrain(cfg, progress=not quiet, echo=typer.echo)
    if result.already_done:
        typer.echo(f"{result.out_dir} is already pretrained ({result.steps} steps); nothing to do")
        return
    final = result.summary.get("final", {}).get("unet", {})
    typer.echo(f"pretrained {result.steps} steps on {result.n_examples} clips → {result.out_dir}"
               + (f" (loss {final['loss']:.4g})" if "loss" in final else ""))


@app.command("compare")
@user_errors
def compare_cmd(
    checkpoint: List[str] = typer.Option(..., "--checkpoint", help="NAME=DIR (repeatable; the first is the baseline of the paired differences)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Held-out prompts, one per line."),
    db: Optional[str] = DbOption,
    split: str = typer.Option("test", "--split", help="With --db and no --prompts: captions of this split."),
    scorer: List[str] = typer.Option([], "--scorer", help="[NAME=]SPEC: world-judge-a|b, a laion .pt, an HF CLAP id (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Folder for results.json, table.md, figure.png and the clips."),
    steps: int = typer.Option(EVAL_STEPS, "--steps", help="Denoising steps (arXiv 2404.09956 §5.3)."),
    guidance: float = typer.Option(GUIDANCE_SCALE, "--guidance", help="Classifier-free guidance (arXiv 2404.09956 §3.1)."),
    duration: float = typer.Option(CLIP_SECONDS, "--duration", help="Seconds per clip."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds per prompt (0..N-1), the same for every checkpoint."),
    limit: int = typer.Option(0, "--limit", help="Only the first N prompts (0 = all)."),
    batch_size: int = typer.Option(4, "--batch-size"),
    listening: Optional[str] = typer.Option(None, "--listening", help="Create a listening session of this name over the checkpoints' clip sets (needs --db)."),
    audio_root: AudioRootOpt = None,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Same prompts and seeds for every checkpoint: scores, temporal metrics, FAD, mean ± 95 % CI, paired differences, splits."""
    from annotate_ui.logic.listening.design import create_listening_session
    from trainer.compare import CompareSettings, compare, parse_checkpoint_spec
    from trainer.evaluate import read_prompts

    if seeds < 1:
        raise CuratorError(f"--seeds must be >= 1, got {seeds}")
    settings = CompareSettings(steps=steps, guidance=guidance, duration_s=duration, seeds=tuple(range(seeds)),
                               batch_size=batch_size, limit=limit)
    specs = [parse_checkpoint_spec(c) for c in checkpoint]
    texts = read_prompts(prompts) if prompts else None
    warn = lambda line: typer.echo(line, err=True)  # noqa: E731
    if db:
        from curator.audio import audio_store_for

        with session_scope(db) as session:
            result = compare(specs, scorer, settings, prompts=texts, out_dir=out, session=session,
                             audio_store=audio_store_for(db, audio_root), split=split, listening=listening,
                             create_listening=create_listening_session, progress=not quiet, warn=warn)
    else:
        result = compare(specs, scorer, settings, prompts=texts, out_dir=out, listening=listening,
                         progress=not quiet, warn=warn)
    typer.echo(_compare_summary(result))


def _compare_summary(result) -> str:
    res = result.results
    blk = res["all"]["metrics"]
    lines = [f"{len(res['checkpoints'])} checkpoints × {res['n_prompts']} prompts × {len(res['settings']['seeds'])} seeds "
             f"→ {result.out_dir / 'results.json'}, table.md, figure.png"]
    for name in res["checkpoints"]:
        cells = [f"{m} {blk[name][m]['mean']:.4f}" for m in res["metrics"] if m in blk.get(name, {})]
        lines.append(f"  {name}: " + ", ".join(cells))
    if result.clip_sets:
        lines.append("  clip sets: " + ", ".join(result.clip_sets.values()))
    if result.listening:
        lines.append(f"  listening session: {result.listening}")
    return "\n".join(lines)


@app.command("eval")
@user_errors
def eval_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="DIR/step-K of a run (or any Tango or AudioLDM folder, e.g. the base)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Held-out prompts, one per line."),
    db: Optional[str] = DbOption,
    split: str = typer.Option("test", "--split", help="With --db and no --prompts: captions of this split."),
    scorer: List[str] = typer.Option([], "--scorer", help="[NAME=]SPEC: world-judge-a|b, a laion .pt, an HF CLAP id (repeatable)."),
    steps: int = typer.Option(EVAL_STEPS, "--steps", help="Denoising steps (arXiv 2404.09956 §5.3)."),
    guidance: float = typer.Option(GUIDANCE_SCALE, "--guidance", help="Classifier-free guidance (arXiv 2404.09956 §3.1)."),
    duration: float = typer.Option(CLIP_SECONDS, "--duration", help="Seconds per clip."),
    seed: int = typer.Option(0, "--seed"),
    limit: int = typer.Option(0, "--limit", help="Only the first N prompts (0 = all)."),
    batch_size: int = typer.Option(4, "--batch-size"),
    name: Optional[str] = typer.Option(None, "--name", help="Clip set name (default: eval:<checkpoint>)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write per-prompt scores to this JSON file."),
    audio_root: AudioRootOpt = None,
) -> None:
    """Generate on held-out prompts, score with the curator's scorers, store a clip set."""
    from trainer.evaluate import EvalSettings, evaluate, read_prompts

    settings = EvalSettings(steps=steps, guidance=guidance, duration_s=duration, seed=seed, batch_size=batch_size,
                            limit=limit)
    if not scorer:
        raise CuratorError("give at least one --scorer (e.g. world-judge-a or a CLAP checkpoint)")
    if db:
        from curator.audio import audio_store_for

        with session_scope(db) as session:
            texts = read_prompts(prompts) if prompts else None
            report = evaluate(checkpoint, scorer, settings, prompts=texts, session=session,
                              audio_store=audio_store_for(db, audio_root), split=split, name=name)
    else:
        if not prompts:
            raise CuratorError("give --prompts FILE, or --db URL for the store's held-out captions")
        report = evaluate(checkpoint, scorer, settings, prompts=read_prompts(prompts))
    if out:
        report.write(out)
    for line in report.summary_lines():
        typer.echo(line)


def main() -> None:
    app()
