"""`curator listen ...`: clip sets and listening sessions from the command line.

The same functions as the rater app's admin part (annotate_ui.logic.listening); raters rate in the app.

    curator listen clip-sets                                     list the clip sets (systems)
    curator listen clip-set create NAME --generator G [--checkpoint C] [--strategy eval]
    curator listen clip-set create NAME --clip ID --clip ID ...  explicit clips, one per prompt
    curator listen create NAME --clip-set A --clip-set B [--prompts 50] [--raters-per-clip 4] [--gold N] [--seed S]
    curator listen list [--open-only]
    curator listen open|close NAME
    curator listen results NAME [--out DIR]                      mean ± 95 % CI, Krippendorff's α, exclusions
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from annotate_ui.logic.listening.clipsets import clip_set_from_generator, create_clip_set, list_clip_sets
from annotate_ui.logic.listening.design import create_listening_session, list_sessions, set_session_open
from curator.cli.common import DB_DEFAULT, DbOpt, JsonOpt, echo_json, user_errors
from db.errors import CuratorError
from db.listening import DEFAULT_GOLD_REL_THRESHOLD, DEFAULT_MIN_RATERS, DEFAULT_N_PROMPTS
from db.session import session_scope


def _ci(ci) -> str:
    """`mean [low, high]` of a MeanCI (bootstrap intervals need not be symmetric), `—` without ratings."""
    if ci is None or ci.mean is None:
        return "—"
    if ci.half_width is None:
        return f"{ci.mean:.2f} (n={ci.n}, no CI)"
    return f"{ci.mean:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


def _span(ci) -> str:
    return "—" if ci is None or ci.low is None else f"{ci.low:.3f}, {ci.high:.3f}"


def _num(x: Optional[float]) -> str:
    return "undefined" if x is None else f"{x:.3f}"


def register(app: typer.Typer) -> None:
    listen = typer.Typer(help="Listening sessions (arXiv 2404.09956 §5.3): clip sets, sessions, results.",
                         no_args_is_help=True)
    app.add_typer(listen, name="listen")
    clip_set = typer.Typer(help="Make a clip set: one system's clips, one per prompt.", no_args_is_help=True)
    listen.add_typer(clip_set, name="clip-set")

    @listen.command("clip-sets")
    @user_errors
    def clip_sets(db: DbOpt = DB_DEFAULT) -> None:
        """Clip sets (systems) with generator, checkpoint and number of clips; `trainer eval` writes them too."""

        with session_scope(db) as s:
            rows = list_clip_sets(s)
        if not rows:
            typer.echo("no clip sets; make one with `curator listen clip-set create NAME --generator G` "
                       "or `trainer eval --db ...`")
        for r in rows:
            typer.echo(f"{r['id']}\t{r['name']}\t{r['generator']}\t{r['checkpoint_id']}\t{r['n_clips']} clips")

    @clip_set.command("create")
    @user_errors
    def clip_set_create(
        name: str = typer.Argument(..., help="Name of the new clip set."),
        generator: Optional[str] = typer.Option(
            None, "--generator", "--from-generator", help="Take the stored clips of this generator (AudioClip.generator)."),
        checkpoint: Optional[str] = typer.Option(
            None, "--checkpoint", help="With --generator: its checkpoint id (needed when it has clips of several)."),
        strategy: str = typer.Option("eval", "--strategy", help="With --generator: clips of this strategy "
                                                               "(`trainer eval` writes 'eval')."),
        caption: List[int] = typer.Option([], "--caption", help="With --generator: only these caption ids (repeatable)."),
        clip: List[int] = typer.Option([], "--clip", help="Instead of --generator: these audio clip ids, one per "
                                                         "prompt, all of one generator (repeatable)."),
        note: str = typer.Option("", "--note", help="Free text kept with the set."),
        db: DbOpt = DB_DEFAULT,
    ) -> None:
        """A clip set from a generator's stored clips (lowest slot per caption) or from explicit clip ids."""

        if (generator is None) == (not clip):
            raise CuratorError("give either --generator G or --clip ID (repeatable), not both and not neither")
        if clip and (checkpoint is not None or caption or strategy != "eval"):
            raise CuratorError("--checkpoint, --strategy and --caption go with --generator, not with --clip")
        with session_scope(db) as s:
            if generator is not None:
                cs = clip_set_from_generator(s, name, generator=generator, checkpoint_id=checkpoint, strategy=strategy,
                                             caption_ids=caption or None, note=note)
            else:
                cs = create_clip_set(s, name, list(clip), note=note)
            typer.echo(f"created clip set {cs.name} (id {cs.id}): {len(cs.items)} clips of {cs.generator} @ "
                       f"{cs.checkpoint_id}")

    @listen.command("create")
    @user_errors
    def create(
        name: str = typer.Argument(..., help="Name of the new listening session."),
        clip_set_names: List[str] = typer.Option(
            [], "--clip-set", help="A clip set (system) by name; repeat for each system (at least one)."),
        prompts: int = typer.Option(DEFAULT_N_PROMPTS, "--prompts",
                                    help="Prompts drawn with --seed from the captions every clip set covers "
                                         "(arXiv 2404.09956 §5.3: 50)."),
        caption: List[int] = typer.Option([], "--caption", help="Use these caption ids as the prompts instead "
                                                               "of drawing --prompts (repeatable)."),
        split: Optional[str] = typer.Option(None, "--split", help="Draw only captions of this split (e.g. test)."),
        raters_per_clip: int = typer.Option(DEFAULT_MIN_RATERS, "--raters-per-clip",
                                            help="Ratings each clip needs from kept raters (arXiv 2404.09956 §5.3: ≥ 4)."),
        gold: Optional[int] = typer.Option(None, "--gold", help="Gold items (a clip shown with another prompt; "
                                                               "default 10 % of the clips, at least 2; 0: none)."),
        gold_threshold: float = typer.Option(DEFAULT_GOLD_REL_THRESHOLD, "--gold-threshold",
                                             help="Exclude a rater whose mean REL on gold items is ≥ this."),
        seed: int = typer.Option(0, "--seed", help="Seed of the prompt draw, the gold items and each rater's order."),
        db: DbOpt = DB_DEFAULT,
    ) -> None:
        """A listening session: prompts × clip sets plus gold items; open for raters at once."""

        if not clip_set_names:
            raise CuratorError("give at least one --clip-set NAME (see `curator listen clip-sets`)")
        for flag, value, low in (("--prompts", prompts, 1), ("--raters-per-clip", raters_per_clip, 1),
                                 ("--gold", gold, 0), ("--seed", seed, 0)):
            if value is not None and value < low:
                raise CuratorError(f"{flag} must be a whole number ≥ {low}, got {value}")
        if not 1 <= gold_threshold <= 5:
            raise CuratorError(f"--gold-threshold must be between 1 and 5, got {gold_threshold:g}")
        with session_scope(db) as s:
            ls = create_listening_session(
                s, name, list(clip_set_names), n_prompts=prompts, caption_ids=caption or None, split=split,
                seed=seed, n_gold=gold, min_raters=raters_per_clip, gold_rel_threshold=gold_threshold)
            n_gold = sum(it.is_gold for it in ls.items)
            n_prompts = len({it.caption_id for it in ls.items if not it.is_gold})
            typer.echo(f"created listening session {ls.name} (id {ls.id}): {n_prompts} prompts × {len(ls.systems)} "
                       f"systems = {len(ls.items) - n_gold} clips + {n_gold} gold items; {ls.min_raters} raters "
                       f"per clip; seed {ls.seed}; open")

    @listen.command("list")
    @user_errors
    def list_(
        open_only: bool = typer.Option(False, "--open-only", help="Only sessions raters can rate now."),
        db: DbOpt = DB_DEFAULT,
    ) -> None:
        """Listening sessions with their state and number of items."""

        with session_scope(db) as s:
            rows = list_sessions(s, open_only=open_only)
        if not rows:
            typer.echo("no listening sessions" + (" are open" if open_only else
                                                  "; make one with `curator listen create NAME --clip-set A ...`"))
        for r in rows:
            typer.echo(f"{r['id']}\t{r['name']}\t{'open' if r['is_open'] else 'closed'}\t{r['n_items']} items\t"
                       f"{r['min_raters']} raters per clip")

    def _set_open(name: str, is_open: bool, db: str) -> None:

        with session_scope(db) as s:
            ls = set_session_open(s, name, is_open)
            typer.echo(f"listening session {ls.name} is now {'open' if ls.is_open else 'closed'}")

    @listen.command("open")
    @user_errors
    def open_(name: str = typer.Argument(..., help="Listening session name."), db: DbOpt = DB_DEFAULT) -> None:
        """Let raters rate this session (again)."""
        _set_open(name, True, db)

    @listen.command("close")
    @user_errors
    def close(name: str = typer.Argument(..., help="Listening session name."), db: DbOpt = DB_DEFAULT) -> None:
        """Stop taking ratings for this session (its ratings stay)."""
        _set_open(name, False, db)

    @listen.command("results")
    @user_errors
    def results(
        name: str = typer.Argument(..., help="Listening session name."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also write results.json, systems.csv, differences.csv, "
                                                              "raters.csv and ratings.csv into this folder."),
        db: DbOpt = DB_DEFAULT,
        as_json: JsonOpt = False,
    ) -> None:
        """Mean ± 95 % CI per system for OVL and REL, Krippendorff's α (ordinal), excluded raters."""
        from annotate_ui.logic.listening.results import export_results, session_results  # loads scipy: only here

        with session_scope(db) as s:
            res = session_results(s, name)
            paths = export_results(s, res.session_id, out) if out is not None else {}
        if as_json:  # the results.json document, without the per-rating rows
            echo_json(res.as_dict() | {"written": [str(p) for p in paths.values()]})
            return
        typer.echo(f"{res.session_name}: {res.n_prompts} prompts × {len(res.systems)} systems = {res.n_items} clips, "
                   f"{res.n_gold_items} gold items; {res.n_items_covered} of {res.n_items} clips have ≥ "
                   f"{res.min_raters} ratings from kept raters")
        typer.echo(f"intervals: {res.ci_method}")
        typer.echo("system\tgenerator\tcheckpoint\tclips\tratings\tOVL mean [95% CI]\tREL mean [95% CI]")
        for x in res.systems:
            typer.echo(f"{x.name}\t{x.generator}\t{x.checkpoint_id}\t{x.ovl.n}\t{x.n_ratings}\t{_ci(x.ovl)}\t{_ci(x.rel)}")
        for d in res.differences:
            typer.echo(f"paired difference {d.system_a} − {d.system_b} over {d.n_prompts} prompts: "
                       f"OVL {_ci(d.ovl)}, REL {_ci(d.rel)}")
        typer.echo(f"Krippendorff's alpha (ordinal): OVL {_num(res.alpha_ovl)} [95% CI {_span(res.alpha_ovl_ci)}], "
                   f"REL {_num(res.alpha_rel)} [95% CI {_span(res.alpha_rel_ci)}]")
        typer.echo("raters: " + (", ".join(f"{r.name} {r.n_rated}/{r.n_assigned}" for r in res.raters) or "none yet"))
        typer.echo(f"excluded raters: {', '.join(res.excluded_raters) or 'none'} ({res.gold_rule})")
        for w in res.warnings:
            typer.echo(f"warning: {w}")
        for p in paths.values():
            typer.echo(f"wrote {p}")
