"""`curator demo`: a whole demo store built with the miniature world, offline, in minutes.

Steps (each a runner the real pipeline uses, so nothing is special-cased): migrate the store →
write world captions → import → select T1 (KMeans) → Strategy 2 and 3 perturbations (world
rules) → generate all four strategies (world generator) → score with both world judges →
candidate pairs → the default preset → work for the raters: the audit queue filled with the
least certain pairs (DEMO_OVERLAP raters each) and a listening session comparing the world
generator at 5 and at 100 denoising steps (Strategy 1.1's clips), so a rater who logs in can
vote and rate at once. Every step is resumable, so a rerun on the same store adds nothing and
reports the same counts; the counts depend only on the seed and N.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sqlalchemy import func, select

from db.annotation import AuditItem, User
from db.errors import CuratorError
from db.listening import ListeningItem, ListeningSession
from db.models import (
    STRATEGIES, AudioClip, Caption, Pair, Perturbation, PerturbationRequest, Score, Selection, SelectionRun,
)
from db.session import open_store, safe_url, upgrade

# The pipeline's runners and the rater app's logic are imported inside the functions that use
# them: `curator` imports this module at start (for DEFAULT_CAPTIONS), and they load torch,
# pandas and scipy, which no other command should pay for.

DEFAULT_CAPTIONS = 200
PER_CLUSTER = 10
DEMO_AUDIT_PAIRS = 50  # the least certain pairs queued for the raters
DEMO_OVERLAP = 3  # raters per queued pair
DEMO_LISTEN_STEPS = (5, 100)  # the two systems of the demo listening session (Strategy 1.1's extremes)
DEMO_LISTEN_PROMPTS = 10
DEMO_SESSION = "demo: world generator @ 5 vs 100 steps"


@dataclass(frozen=True)
class DemoResult:
    counts: dict[str, int]  # rows per table and pairs kept per strategy under the default preset
    kept: dict[str, int]  # pairs kept per strategy under the default preset (and "total")
    pool: dict[str, int]  # candidate pairs per strategy (and "total")


def demo_selection_size(n: int) -> tuple[int, int]:
    """(clusters, per cluster) for T1: about half the captions, PER_CLUSTER per cluster."""
    per = min(PER_CLUSTER, max(1, n // 4))
    clusters = max(1, (n // 2) // per)
    return clusters, per


def run_demo(db_url: str, *, captions: int = DEFAULT_CAPTIONS, seed: int = 0, audio_root: str | None = None,
             duration_s: float | None = None, echo: Callable[[str], None] = print,
             progress: bool = True) -> DemoResult:
    """Build (or finish) a demo store at DB_URL; returns its counts."""
    from curator import filter as flt
    from curator.audio import atomic_write_bytes, audio_store_for
    from curator.captions import import_captions, select_captions
    from curator.generate.run import run_generation
    from curator.pairs import build_pairs
    from curator.perturb.run import run_perturbations
    from curator.scoring.run import run_scoring
    from curator.world import JUDGE_NAMES, make_generator, make_judge, make_perturber, random_captions
    from curator.world.render import DEFAULT_DURATION_S

    if captions < 2:
        raise CuratorError(f"the demo needs at least 2 captions, got {captions}")
    duration = DEFAULT_DURATION_S if duration_s is None else duration_s
    echo(f"1/10 migrating the store")
    upgrade(db_url)
    store = audio_store_for(db_url, audio_root)
    factory = open_store(db_url)
    with factory() as session:
        echo(f"2/10 writing and importing {captions} world captions (seed {seed})")
        path = Path(store.root) / "demo" / f"world-captions-{captions}-seed{seed}.txt"
        atomic_write_bytes(path, ("\n".join(random_captions(captions, seed)) + "\n").encode("utf-8"))
        imported = import_captions(session, path, source="world-demo")
        session.commit()
        echo(f"   {imported.added} added, {imported.already_stored} already stored")


        if session.scalar(select(func.count()).select_from(SelectionRun)) == 0:
            clusters, per = demo_selection_size(captions)
            echo(f"3/10 selecting T1: {clusters} clusters × {per} captions")
            select_captions(session, clusters=clusters, per_cluster=per, seed=seed, progress=progress)
            session.commit()
        else:
            echo("3/10 T1 already selected")

        perturber = make_perturber()
        for strategy in ("2", "3"):
            echo(f"4/10 perturbing captions for Strategy {strategy} ({perturber.model})")
            run_perturbations(session, perturber, strategy, concurrency=1, progress=progress)
            session.commit()

        generator = make_generator()
        for strategy in STRATEGIES:
            echo(f"5/10 generating Strategy {strategy} clips (world generator, {duration:g} s)")
            run_generation(session, store, generator, strategy, seed=seed, duration_s=duration, progress=progress)
            session.commit()

        echo(f"6/10 scoring every clip with {', '.join(JUDGE_NAMES)}")
        run_scoring(session, store, [make_judge(n) for n in JUDGE_NAMES], names=list(JUDGE_NAMES))
        session.commit()

        echo("7/10 building candidate pairs")
        build_pairs(session, progress=progress)
        session.commit()

        echo("8/10 applying the default preset")
        preset = flt.ensure_default_preset(session)
        session.commit()
        table = flt.load_preset_table(session, preset)
        mask = flt.keep_mask(table, flt.thresholds_of(preset))
        kept = flt.strategy_counts(table, mask)
        pool = flt.strategy_counts(table)
        queued = fill_demo_queue(session, preset)
        session.commit()
        echo(f"9/10 audit queue: {queued} uncertain pairs, {DEMO_OVERLAP} raters each")
        ls = ensure_demo_listening(session)
        session.commit()
        echo(f"10/10 listening session {ls.name!r}: {len(ls.items)} clips")
        counts = _table_counts(session)
        counts.update({f"kept_{k}": int(v) for k, v in kept.items()})
        session.commit()
    return DemoResult(counts, kept, pool)


def fill_demo_queue(session, preset) -> int:
    """Queue the DEMO_AUDIT_PAIRS least certain pairs under PRESET for DEMO_OVERLAP raters each, once:
    a store whose queue already has pairs is left alone. Returns the pairs in the queue."""
    from annotate_ui.logic.tuning import TuningData, fill_queue
    from curator import filter as flt

    have = int(session.scalar(select(func.count()).select_from(AuditItem)))
    if have:
        return have
    table = TuningData.load(session, (preset.model1, preset.model2)).table
    if len(table) == 0:
        return 0
    return fill_queue(session, table, flt.thresholds_of(preset), n=DEMO_AUDIT_PAIRS, mode="uncertain",
                      added_by="curator demo", overlap=DEMO_OVERLAP)


def ensure_demo_listening(session):
    """The demo listening session: two clip sets of the world generator's Strategy 1.1 clips (one at
    each of DEMO_LISTEN_STEPS), DEMO_LISTEN_PROMPTS prompts both cover, gold items as by default.
    Created once; a rerun returns the existing session."""
    from annotate_ui.logic.listening import clipsets, design

    existing = session.scalar(select(ListeningSession).where(ListeningSession.name == DEMO_SESSION))
    if existing is not None:
        return existing
    sets = []
    for steps in DEMO_LISTEN_STEPS:
        clips = list(session.scalars(select(AudioClip).where(AudioClip.strategy == "1.1", AudioClip.steps == steps)
                                     .order_by(AudioClip.caption_id, AudioClip.id)))
        if not clips:
            raise CuratorError(f"the demo store has no Strategy 1.1 clips at {steps} steps")
        first: dict[int, AudioClip] = {}
        for c in clips:
            first.setdefault(c.caption_id, c)
        sets.append(clipsets.create_clip_set(session, f"demo: world @ {steps} steps", list(first.values()),
                                             note=f"Strategy 1.1 clips of the world generator at {steps} steps",
                                             exist_ok=True))
    n = min(DEMO_LISTEN_PROMPTS, len(design.common_captions(session, sets)))
    return design.create_listening_session(session, DEMO_SESSION, sets, n_prompts=n, seed=0)


def _table_counts(session) -> dict[str, int]:

    out = {}
    for name, model in (("captions", Caption), ("selected", Selection), ("perturbation_requests", PerturbationRequest),
                        ("perturbations", Perturbation), ("clips", AudioClip), ("scores", Score), ("pairs", Pair),
                        ("audit_items", AuditItem), ("listening_items", ListeningItem)):
        out[name] = int(session.scalar(select(func.count()).select_from(model)))
    return out


DEMO_ACCOUNTS = (("admin", "admin"), ("rater", "rater"))


def ensure_demo_accounts(session) -> dict[str, str]:
    """Create the demo's `admin` and `rater` accounts if the store has no users yet.

    Returns {name: password} for the accounts created now (random passwords, to be printed once;
    the store keeps only their argon2 hashes). A store that already has users is left alone.
    """
    from annotate_ui.logic.auth import add_user

    if session.scalar(select(func.count()).select_from(User)):
        return {}
    created = {}
    for name, role in DEMO_ACCOUNTS:
        created[name] = secrets.token_urlsafe(9)
        add_user(session, name, role, created[name])
    return created


def next_steps(db_url: str) -> str:
    url = safe_url(db_url)
    return "\n".join([
        "next:",
        f"  annotate-ui --db {url}        # log in as rater: audit pairs and rate the listening session at once",
        f"  curator stats --db {url}      # pairs kept per strategy, α/Δ histograms",
        f"  curator export OUT --db {url} # write the Audio-alpaca parquet + audio",
    ])
