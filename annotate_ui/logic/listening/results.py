"""The admin side of a listening session (arXiv 2404.09956 §5.3): `session_results` (mean ± 95 % CI
per system, Krippendorff's α ordinal, ratings per rater, raters excluded by the gold items,
coverage against `min_raters`) and `export_results` (CSV + JSON, written atomically).

Gold screening rule (documented here and shown on the results page): a rater who has rated at
least one gold item and whose mean REL over the gold items is ≥ the session's
`gold_rel_threshold` (default 3.0) is excluded from every statistic; raters who have rated no
gold item yet are kept and reported as unscreened. A rater an admin excluded
(annotate_ui/logic/quality.py) is left out the same way, in every session.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_ui.logic.listening.design import get_session
from curator.stats import (
    MeanCI,
    design_mean_ci,
    krippendorff_alpha,
    krippendorff_alpha_ci,
    loo_agreement,
    paired_difference_ci,
)
from curator.audio import atomic_write_bytes
from db.errors import CuratorError
from db.annotation import User
from db.listening import ClipSet, ListeningItem, ListeningRating, ListeningSession

GOLD_RULE = (
    "A rater who rated at least one gold item (a clip shown with another prompt) and whose mean "
    "REL on the gold items is ≥ {threshold:g} is excluded from all statistics."
)


@dataclass
class RaterSummary:
    user_id: int
    name: str
    n_assigned: int
    n_rated: int
    n_skipped: int
    mean_ovl: Optional[float]
    mean_rel: Optional[float]
    n_gold: int
    gold_mean_rel: Optional[float]
    screened: bool
    excluded: bool  # by the gold rule or by an admin
    # Pearson r of this rater's real-item ratings with the other kept raters' mean on the same
    # clips (None: excluded, fewer than 3 shared clips, or no variation)
    agreement_ovl: Optional[float] = None
    agreement_rel: Optional[float] = None
    excluded_by_admin: bool = False


@dataclass
class SystemSummary:
    clip_set_id: int
    name: str
    generator: str
    checkpoint_id: str
    n_clips: int
    n_ratings: int
    ovl: MeanCI  # mean of per-clip means, two-way cluster bootstrap CI over prompts and raters
    rel: MeanCI


@dataclass
class PairedDifference:
    """system_a − system_b on the prompts both have (per-clip means, same cluster bootstrap)."""

    system_a: str
    system_b: str
    n_prompts: int
    ovl: MeanCI
    rel: MeanCI


@dataclass
class Results:
    session_id: int
    session_name: str
    seed: int
    min_raters: int
    gold_rel_threshold: float
    gold_rule: str
    n_prompts: int
    n_items: int
    n_gold_items: int
    systems: list[SystemSummary]
    alpha_ovl: Optional[float]
    alpha_rel: Optional[float]
    raters: list[RaterSummary]
    excluded_raters: list[str]
    n_items_covered: int  # real items with ≥ min_raters ratings from kept raters
    complete: bool
    warnings: list[str] = field(default_factory=list)
    differences: list[PairedDifference] = field(default_factory=list)
    alpha_ovl_ci: Optional[MeanCI] = None  # α with a bootstrap CI over clips
    alpha_rel_ci: Optional[MeanCI] = None
    ci_method: str = ("per-clip means (a clip counts once however many raters it had); 95 % CI by a two-way "
                      "cluster bootstrap over prompts and raters (scipy.stats.bootstrap, percentile)")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RatingRow:
    item_id: int
    clip_set_id: int
    system: str
    caption_id: int
    clip_id: int
    prompt: str
    is_gold: bool
    gold_kind: Optional[str]
    user_id: int
    rater: str
    position: int
    ovl: Optional[int]
    rel: Optional[int]
    rated_at: Optional[str]
    skipped: bool
    skip_reason: Optional[str]
    time_on_task_ms: Optional[int] = None  # server clock, from the item being shown to the rating


def rating_rows(session: Session, session_id: int) -> list[RatingRow]:
    """Every assignment of the session with its rating, in (item, rater) order (admin view)."""
    r, i = ListeningRating, ListeningItem
    q = (select(r, i, ClipSet.name, User.name)
         .join(i, i.id == r.item_id).join(ClipSet, ClipSet.id == i.clip_set_id).join(User, User.id == r.user_id)
         .where(r.session_id == session_id).order_by(i.id, r.user_id))
    out = []
    for rating, item, system, rater in session.execute(q):
        out.append(RatingRow(item.id, item.clip_set_id, system, item.caption_id, item.clip_id, item.prompt,
                             item.is_gold, item.gold_kind, rating.user_id, rater, rating.position, rating.ovl,
                             rating.rel, rating.rated_at.isoformat() if rating.rated_at else None,
                             rating.skipped_at is not None, rating.skip_reason, rating.time_on_task_ms))
    return out


def _mean(xs: Sequence[float]) -> Optional[float]:
    return float(np.mean(xs)) if len(xs) else None


def session_results(session: Session, ref: ListeningSession | int | str, confidence: float = 0.95) -> Results:
    """Mean ± CI per system, α (ordinal), per-rater summaries and gold screening (module doc)."""
    ls = get_session(session, ref)
    rows = rating_rows(session, ls.id)
    items = list(session.scalars(select(ListeningItem).where(ListeningItem.session_id == ls.id)))
    real_items = [it for it in items if not it.is_gold]

    # 1. Raters and the gold screening
    by_user: dict[int, list[RatingRow]] = defaultdict(list)
    for row in rows:
        by_user[row.user_id].append(row)
    raters: list[RaterSummary] = []
    kept: set[int] = set()
    by_admin = set(session.scalars(select(User.id).where(User.id.in_(list(by_user)), User.excluded_at.is_not(None))))
    for uid, rs in sorted(by_user.items(), key=lambda kv: kv[1][0].rater):
        rated = [x for x in rs if x.ovl is not None]
        real = [x for x in rated if not x.is_gold]
        gold = [x for x in rated if x.is_gold]
        gold_rel = _mean([x.rel for x in gold])
        excluded = (gold_rel is not None and gold_rel >= ls.gold_rel_threshold) or uid in by_admin
        if not excluded:
            kept.add(uid)
        raters.append(RaterSummary(uid, rs[0].rater, len(rs), len(rated), sum(x.skipped for x in rs),
                                   _mean([x.ovl for x in real]), _mean([x.rel for x in real]), len(gold),
                                   gold_rel, bool(gold), excluded, excluded_by_admin=uid in by_admin))

    # 2. Per system over kept raters' ratings of real items: raters × prompts tables (one clip per
    # prompt and system), the mean of per-clip means with a cluster bootstrap over prompts and raters
    usable = [x for x in rows if x.ovl is not None and not x.is_gold and x.user_id in kept]
    users = sorted({x.user_id for x in usable})
    prompts = sorted({it.caption_id for it in real_items})
    row_of = {u: k for k, u in enumerate(users)}
    col_of = {c: j for j, c in enumerate(prompts)}
    tables: dict[int, dict[str, np.ndarray]] = {}
    for sysrow in ls.systems:
        tables[sysrow.clip_set_id] = {k: np.full((len(users), len(prompts)), np.nan) for k in ("ovl", "rel")}
    for x in usable:
        for k in ("ovl", "rel"):
            tables[x.clip_set_id][k][row_of[x.user_id], col_of[x.caption_id]] = getattr(x, k)
    boot = dict(confidence=confidence, seed=ls.seed)
    systems = []
    for sysrow in ls.systems:
        cs = sysrow.clip_set
        mine = [x for x in usable if x.clip_set_id == cs.id]
        t = tables[cs.id]
        systems.append(SystemSummary(
            cs.id, cs.name, cs.generator, cs.checkpoint_id,
            n_clips=sum(1 for it in real_items if it.clip_set_id == cs.id), n_ratings=len(mine),
            ovl=design_mean_ci(t["ovl"], **boot), rel=design_mean_ci(t["rel"], **boot)))
    differences = []
    for i, a in enumerate(systems):
        for b in systems[i + 1:]:
            ta, tb = tables[a.clip_set_id], tables[b.clip_set_id]
            ovl_d = paired_difference_ci(ta["ovl"], tb["ovl"], **boot)
            differences.append(PairedDifference(a.name, b.name, ovl_d.n, ovl_d,
                                                paired_difference_ci(ta["rel"], tb["rel"], **boot)))

    # 3. Krippendorff's α (ordinal) over raters × real items, with a bootstrap CI over clips;
    # each kept rater's agreement with the others
    col = {it.id: j for j, it in enumerate(real_items)}
    ovl_m = np.full((len(users), len(real_items)), np.nan)
    rel_m = np.full_like(ovl_m, np.nan)
    per_item: dict[int, int] = defaultdict(int)
    for x in usable:
        ovl_m[row_of[x.user_id], col[x.item_id]] = x.ovl
        rel_m[row_of[x.user_id], col[x.item_id]] = x.rel
        per_item[x.item_id] += 1
    alpha_ovl = krippendorff_alpha(ovl_m, "ordinal") if users else None
    alpha_rel = krippendorff_alpha(rel_m, "ordinal") if users else None
    alpha_ovl_ci = krippendorff_alpha_ci(ovl_m, "ordinal", **boot) if users else None
    alpha_rel_ci = krippendorff_alpha_ci(rel_m, "ordinal", **boot) if users else None
    agree = {"ovl": loo_agreement(ovl_m), "rel": loo_agreement(rel_m)} if users else {}
    for r in raters:
        if r.user_id in row_of:
            r.agreement_ovl = agree["ovl"][row_of[r.user_id]]
            r.agreement_rel = agree["rel"][row_of[r.user_id]]

    # 4. Coverage and warnings
    covered = sum(1 for it in real_items if per_item.get(it.id, 0) >= ls.min_raters)
    warnings = []
    if covered < len(real_items):
        warnings.append(f"{len(real_items) - covered} of {len(real_items)} clips have fewer than "
                        f"{ls.min_raters} ratings from kept raters (arXiv 2404.09956 §5.3 asks for at least {ls.min_raters})")
    unscreened = [r.name for r in raters if not r.screened and r.n_rated]
    if unscreened and any(it.is_gold for it in items):
        warnings.append(f"not yet screened (no gold item rated): {', '.join(unscreened)}")
    if alpha_ovl is None or alpha_rel is None:
        warnings.append("Krippendorff's α is undefined until at least two ratings of one clip differ in value")
    return Results(
        session_id=ls.id, session_name=ls.name, seed=ls.seed, min_raters=ls.min_raters,
        gold_rel_threshold=ls.gold_rel_threshold, gold_rule=GOLD_RULE.format(threshold=ls.gold_rel_threshold),
        n_prompts=len({it.caption_id for it in real_items}), n_items=len(real_items),
        n_gold_items=len(items) - len(real_items), systems=systems, alpha_ovl=alpha_ovl, alpha_rel=alpha_rel,
        raters=raters, excluded_raters=[r.name for r in raters if r.excluded], n_items_covered=covered,
        complete=bool(real_items) and covered == len(real_items), warnings=warnings, differences=differences,
        alpha_ovl_ci=alpha_ovl_ci, alpha_rel_ci=alpha_rel_ci)


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode("utf-8")


def export_results(session: Session, ref: ListeningSession | int | str, out_dir: str | Path) -> dict[str, Path]:
    """Write results.json, systems.csv, differences.csv, raters.csv and ratings.csv into OUT_DIR (each atomically)."""
    res = session_results(session, ref)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CuratorError(f"export folder {out} is a file")
    rows = rating_rows(session, res.session_id)
    excluded = {r.user_id for r in res.raters if r.excluded}
    paths = {name: out / name for name in ("results.json", "systems.csv", "differences.csv", "raters.csv", "ratings.csv")}
    payload = res.as_dict()
    payload["ratings"] = [asdict(x) | {"rater_excluded": x.user_id in excluded} for x in rows]
    atomic_write_bytes(paths["results.json"], json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8"))
    atomic_write_bytes(paths["systems.csv"], _csv_bytes(
        ["system", "generator", "checkpoint_id", "n_clips", "n_ratings", "ovl_mean", "ovl_ci_low", "ovl_ci_high",
         "rel_mean", "rel_ci_low", "rel_ci_high", "ci_method"],
        ([s.name, s.generator, s.checkpoint_id, s.n_clips, s.n_ratings, s.ovl.mean, s.ovl.low, s.ovl.high,
          s.rel.mean, s.rel.low, s.rel.high, s.ovl.method] for s in res.systems)))
    atomic_write_bytes(paths["differences.csv"], _csv_bytes(
        ["system_a", "system_b", "n_prompts", "ovl_diff", "ovl_ci_low", "ovl_ci_high", "rel_diff", "rel_ci_low",
         "rel_ci_high"],
        ([d.system_a, d.system_b, d.n_prompts, d.ovl.mean, d.ovl.low, d.ovl.high, d.rel.mean, d.rel.low, d.rel.high]
         for d in res.differences)))
    atomic_write_bytes(paths["raters.csv"], _csv_bytes(
        ["rater", "n_assigned", "n_rated", "n_skipped", "mean_ovl", "mean_rel", "n_gold", "gold_mean_rel",
         "screened", "excluded", "agreement_ovl", "agreement_rel"],
        ([r.name, r.n_assigned, r.n_rated, r.n_skipped, r.mean_ovl, r.mean_rel, r.n_gold, r.gold_mean_rel,
          r.screened, r.excluded, r.agreement_ovl, r.agreement_rel] for r in res.raters)))
    atomic_write_bytes(paths["ratings.csv"], _csv_bytes(
        list(RatingRow.__dataclass_fields__) + ["rater_excluded"],
        ([*asdict(x).values(), x.user_id in excluded] for x in rows)))
    return paths
