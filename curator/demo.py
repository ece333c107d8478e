"""`curator demo`: a whole demo store built with the miniature world, offline, in minutes.

Steps (each a runner the real pipeline uses, so nothing is special-cased): migrate the store →
write world captions → import → select T1 (KMeans) → Strategy 2 and 3 perturbations (world
rules) → generate all four strategies (world generator) → score with both world judges →
candidate pairs → the default preset. Every step is resumable, so a rerun on the same store
adds nothing and reports the same counts; the counts depend only on the seed and N.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sqlalchemy import func, select

from curator.errors import CuratorError

DEFAULT_CAPTIONS = 200
PER_CLUSTER = 10


@dataclass(frozen=True)
class DemoResult:
    counts: dict[str, int]  # rows per table and pairs kept per strategy under the default preset
    summary: str  # the per-strategy table, as `curator stats` prints it


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
    from db.models import STRATEGIES
    from db.session import open_store, upgrade

    if captions < 2:
        raise CuratorError(f"the demo needs at least 2 captions, got {captions}")
    duration = DEFAULT_DURATION_S if duration_s is None else duration_s
    echo(f"1/8 migrating the store")
    upgrade(db_url)
    store = audio_store_for(db_url, audio_root)
    factory = open_store(db_url)
    with factory() as session:
        echo(f"2/8 writing and importing {captions} world captions (seed {seed})")
        path = Path(store.root) / "demo" / f"world-captions-{captions}-seed{seed}.txt"
        atomic_write_bytes(path, ("\n".join(random_captions(captions, seed)) + "\n").encode("utf-8"))
        imported = import_captions(session, path, source="world-demo")
        session.commit()
        echo(f"   {imported.added} added, {imported.already_stored} already stored")

        from db.models import SelectionRun

        if session.scalar(select(func.count()).select_from(SelectionRun)) == 0:
            clusters, per = demo_selection_size(captions)
            echo(f"3/8 selecting T1: {clusters} clusters × {per} captions")
            select_captions(session, clusters=clusters, per_cluster=per, seed=seed, progress=progress)
            session.commit()
        else:
            echo("3/8 T1 already selected")

        perturber = make_perturber()
        for strategy in ("2", "3"):
            echo(f"4/8 perturbing captions for Strategy {strategy} ({perturber.model})")
            run_perturbations(session, perturber, strategy, concurrency=1, progress=progress)
            session.commit()

        generator = make_generator()
        for strategy in STRATEGIES:
            echo(f"5/8 generating Strategy {strategy} clips (world generator, {duration:g} s)")
            run_generation(session, store, generator, strategy, seed=seed, duration_s=duration, progress=progress)
            session.commit()

        echo(f"6/8 scoring every clip with {', '.join(JUDGE_NAMES)}")
        run_scoring(session, store, [make_judge(n) for n in JUDGE_NAMES], names=list(JUDGE_NAMES))
        session.commit()

        echo("7/8 building candidate pairs")
        build_pairs(session, progress=progress)
        session.commit()

        echo("8/8 applying the default preset")
        preset = flt.ensure_default_preset(session)
        session.commit()
        table = flt.load_preset_table(session, preset)
        mask = flt.keep_mask(table, flt.thresholds_of(preset))
        kept = flt.strategy_counts(table, mask)
        summary = flt.render_counts(kept, flt.strategy_counts(table))
        counts = _table_counts(session)
        counts.update({f"kept_{k}": int(v) for k, v in kept.items()})
        session.commit()
    return DemoResult(counts, summary)


def _table_counts(session) -> dict[str, int]:
    from db.models import AudioClip, Caption, Pair, Perturbation, PerturbationRequest, Score, Selection

    out = {}
    for name, model in (("captions", Caption), ("selected", Selection), ("perturbation_requests", PerturbationRequest),
                        ("perturbations", Perturbation), ("clips", AudioClip), ("scores", Score), ("pairs", Pair)):
        out[name] = int(session.scalar(select(func.count()).select_from(model)))
    return out


DEMO_ACCOUNTS = (("admin", "admin"), ("rater", "rater"))


def ensure_demo_accounts(session) -> dict[str, str]:
    """Create the demo's `admin` and `rater` accounts if the store has no users yet.

    Returns {name: password} for the accounts created now (random passwords, to be printed once;
    the store keeps only their argon2 hashes). A store that already has users is left alone.
    """
    import secrets

    from annotate_ui.auth import add_user
    from db.annotation import User

    if session.scalar(select(func.count()).select_from(User)):
        return {}
    created = {}
    for name, role in DEMO_ACCOUNTS:
        created[name] = secrets.token_urlsafe(9)
        add_user(session, name, role, created[name])
    return created


def next_steps(db_url: str) -> str:
    from db.session import safe_url

    url = safe_url(db_url)
    return "\n".join([
        "next:",
        f"  annotate-ui --db {url}        # rate and audit the pairs in the browser",
        f"  curator stats --db {url}      # pairs kept per strategy, α/Δ histograms",
        f"  curator export OUT --db {url} # write the Audio-alpaca parquet + audio",
    ])
