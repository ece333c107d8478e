"""The miniature Tango 2 (arXiv 2404.09956 §5.2–5.3), end to end and offline, with the studio's own commands.

    python experiments/miniature_tango2.py --out DIR [--smoke] [--seeds N]

Stages (each one recorded in DIR/stages/NAME.json when it finishes; a rerun skips finished
stages, and the commands inside resume on their own):

1. `splits`    world captions, disjoint: curation (imported into the store), validation and test
               (files only: the test prompts are never seen before the evaluation);
2. `pretrain`  `trainer pretrain --data world --out DIR/base` (never on the held-out captions);
3. `curation`  the store DIR/store.db: `curator captions import` / `captions select` (T1), `perturb`
               (world rules, Strategies 2 and 3), `generate --model DIR/base` (Strategies 1.1,
               1.2, 2, 3: the learned model makes the candidates), `score` (both world judges),
               `pairs`, the preset, then three exports: filtered (the preset), filtered without
               Strategies 2 and 3, and unfiltered (every candidate pair);
4. `arms`      `trainer run --model DIR/base` for base (no training), sft (SFT on the winners only),
               dpo (one SFT epoch, then Diffusion-DPO), dpo_no_s23, dpo_unfiltered: the same base,
               the same number of optimizer steps, one run per training seed;
5. `compare`   `trainer compare` of every run on the test prompts with both world judges;
6. `results`   DIR/results.json: {"arms": {ARM: {METRIC: {"mean", "ci95": [lo, hi], "n"}}},
               "paired": ..., "config": ..., "timings": ...}. An arm's metric pools its training
               seeds: per test prompt the mean over every clip of the arm, then the mean and its
               Student-t 95 % interval over prompts; FAD (one number per run) is averaged over
               the arm's runs with the interval over runs.

β and the learning rate are config values here (`beta`, `learning_rate`), not yet chosen by a sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from db.errors import CuratorError  # noqa: E402
from curator.fsutil import atomic_write_bytes, atomic_write_json  # noqa: E402
from curator.paper import DPO_BETA  # noqa: E402

ARMS = ("base", "sft", "dpo", "dpo_no_s23", "dpo_unfiltered")
METRIC_NAMES = {"world-judge-a": "judge_a", "world-judge-b": "judge_b", "ordering_error_rate": "ordering_error_rate",
                "presence_recall": "presence_recall", "presence_precision": "presence_precision",
                "count_error_rate": "count_error_rate", "onset_error_s": "onset_error_s", "fad": "fad"}
PAIRED = (("dpo", "base"), ("dpo", "sft"), ("dpo", "dpo_unfiltered"), ("dpo", "dpo_no_s23"), ("sft", "base"))
STAGES = ("splits", "pretrain", "curation", "arms", "compare", "results")


@dataclass
class ExperimentConfig:
    seed: int = 0
    seeds: int = 3  # training seeds per arm
    pretrain_size: str = "default"  # trainer pretrain --size
    pretrain_set: list[str] = field(default_factory=list)  # extra --set key=value for trainer pretrain
    n_curation: int = 400  # curation captions (the store's split "train")
    clusters: int = 20  # T1: KMeans clusters × captions per cluster (arXiv 2404.09956 §4.1, scaled down)
    per_cluster: int = 10
    n_validation: int = 50
    n_test: int = 100
    min_events: int = 1
    max_events: int = 3
    thresholds: str = "paper"  # "paper", or "alpha1=…,beta1=…,delta1=lo:hi,…" (a preset recalibrated from it)
    max_steps: int = 300  # optimizer steps of every trained arm
    sft_epochs: int = 1  # the DPO arms' SFT epoch (arXiv 2404.09956 §5.1)
    beta: float = DPO_BETA  # not swept for the tiny model yet
    learning_rate: float = 1e-5
    train_batch_size: int = 4
    gradient_accumulation_steps: int = 2
    lr_warmup_steps: int = 20
    eval_steps: int = 100  # denoising steps of the comparison
    eval_seeds: int = 1  # generation seeds per test prompt

    def __post_init__(self) -> None:
        bad = []
        for name in ("seeds", "n_curation", "clusters", "per_cluster", "n_validation", "n_test", "max_steps",
                     "train_batch_size", "gradient_accumulation_steps", "eval_steps", "eval_seeds"):
            if getattr(self, name) < 1:
                bad.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.clusters * self.per_cluster > self.n_curation:
            bad.append(f"clusters × per_cluster = {self.clusters * self.per_cluster} exceeds n_curation={self.n_curation}")
        if self.pretrain_size not in ("default", "large", "smoke"):
            bad.append(f"pretrain_size={self.pretrain_size!r} is not default, large or smoke")
        if bad:
            raise CuratorError("experiment config: " + "; ".join(bad))


def smoke_config(**changes: Any) -> ExperimentConfig:
    """Seconds-sized: every stage runs, nothing is learnt. Every candidate pair is kept (an untrained
    model's clips do not pass the paper's thresholds) and the DPO arms skip the SFT epoch, so that
    their two steps reach the DPO phase."""
    values = dict(seeds=1, pretrain_size="smoke",
                  pretrain_set=["n_captions=12", "max_events=1", "vocoder_steps=40"], n_curation=8, clusters=2,
                  per_cluster=2, n_validation=2, n_test=4, max_events=2, thresholds="open", max_steps=2, sft_epochs=0,
                  train_batch_size=2, gradient_accumulation_steps=1, lr_warmup_steps=0, eval_steps=2)
    values.update(changes)
    return ExperimentConfig(**values)


OPEN = "alpha1=-1,alpha2=-1,beta1=-1,beta2=-1,delta1=-2:2,delta2=-2:2"  # every candidate pair


# --------------------------------------------------------------------------- helpers


def cli(app, args: list[str], what: str) -> None:
    """Run one of the studio's commands in this process (the same parsing and wiring as the shell)."""
    rc = app(args=[str(a) for a in args], standalone_mode=False, prog_name=what.split()[0])
    if rc not in (None, 0):
        raise CuratorError(f"{what} failed (exit {rc}); see the line above")


def curator_cli(args: list[str]) -> None:
    from curator.cli import app

    cli(app, args, f"curator {args[0]}")


def trainer_cli(args: list[str]) -> None:
    from trainer.cli import app

    cli(app, args, f"trainer {args[0]}")


def write_json(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj)


def write_lines(path: Path, lines: list[str]) -> None:
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def parse_thresholds(spec: str):
    from curator import filter as flt

    if spec == "paper":
        return flt.PAPER_THRESHOLDS
    changes: dict[str, float] = {}
    for item in (OPEN if spec == "open" else spec).split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        if key in ("delta1", "delta2"):
            changes[f"{key}_min"], changes[f"{key}_max"] = flt.parse_range(value, name=key)
        else:
            try:
                changes[key] = float(value)
            except ValueError:
                raise CuratorError(f"thresholds: {item!r} is not key=number") from None
    return flt.PAPER_THRESHOLDS.replace(**changes)


# --------------------------------------------------------------------------- the stages


class Run:
    def __init__(self, out: Path, cfg: ExperimentConfig, echo: Callable[[str], None] = print):
        self.out, self.cfg, self.echo = out, cfg, echo
        self.db = f"sqlite:///{out / 'store.db'}"
        self.ran: list[str] = []

    def stage(self, name: str, fn: Callable[[], dict | None]) -> dict:
        marker = self.out / "stages" / f"{name}.json"
        if marker.is_file():
            self.echo(f"== {name}: done earlier, skipped")
            return json.loads(marker.read_text(encoding="utf-8"))
        self.echo(f"== {name}")
        t0 = time.perf_counter()
        info = fn() or {}
        info["seconds"] = round(time.perf_counter() - t0, 2)
        write_json(marker, info)
        self.ran.append(name)
        return info

    # 1.
    def splits(self) -> dict:
        from trainer.pretrain_data import world_captions

        c = self.cfg
        n = c.n_curation + c.n_validation + c.n_test
        caps = world_captions(n, seed=c.seed, min_events=c.min_events, max_events=c.max_events, salt=29)
        parts = {"curation": caps[:c.n_curation], "validation": caps[c.n_curation:c.n_curation + c.n_validation],
                 "test": caps[c.n_curation + c.n_validation:]}
        folder = self.out / "captions"
        for name, lines in parts.items():
            write_lines(folder / f"{name}.txt", lines)
        write_lines(folder / "held_out.txt", caps)  # never pretrained on
        return {k: len(v) for k, v in parts.items()}

    @property
    def base(self) -> Path:
        return self.out / "base"

    def clip_s(self) -> float:
        return float(json.loads((self.base / "pretrain_config.json").read_text())["clip_s"])

    # 2.
    def pretrain(self) -> dict:
        args = ["pretrain", "--data", "world", "--out", self.base, "--size", self.cfg.pretrain_size, "--quiet",
                "--set", f"exclude_captions={self.out / 'captions' / 'held_out.txt'}", "--set", f"seed={self.cfg.seed}"]
        for item in self.cfg.pretrain_set:
            args += ["--set", item]
        trainer_cli(args)
        summary = json.loads((self.base / "pretrain_summary.json").read_text())
        return {"timings_s": summary["timings_s"], "parameters": summary["parameters"], "n_examples": summary["n_examples"]}

    # 3.
    def curation(self) -> dict:
        from curator import filter as flt
        from db.session import open_store

        c, db = self.cfg, self.db
        duration = self.clip_s()
        curator_cli(["db", "upgrade", "--db", db])
        curator_cli(["captions", "import", self.out / "captions" / "curation.txt", "--db", db, "--split", "train",
                     "--source", "miniature-curation"])
        with open_store(db)() as session:
            from db.models import SelectionRun
            from sqlalchemy import func, select

            selected = session.scalar(select(func.count()).select_from(SelectionRun))
        if not selected:
            curator_cli(["captions", "select", "--db", db, "--clusters", c.clusters, "--per-cluster", c.per_cluster,
                         "--seed", c.seed])
        for strategy in ("2", "3"):
            curator_cli(["perturb", "--strategy", strategy, "--backend", "world", "--db", db])
        for strategy in ("1.1", "1.2", "2", "3"):
            curator_cli(["generate", "--strategy", strategy, "--model", self.base, "--db", db, "--duration", duration,
                         "--device", "cpu", "--seed", c.seed])
        curator_cli(["score", "--model", "world-judge-a", "--model", "world-judge-b", "--db", db])
        curator_cli(["pairs", "--db", db])
        th = parse_thresholds(c.thresholds)
        preset = "paper"
        with open_store(db)() as session:
            if c.thresholds != "paper":
                preset = "miniature"
                flt.save_preset(session, preset, th, author="experiments/miniature_tango2.py")
            flt.save_preset(session, "unfiltered", parse_thresholds("open"), author="experiments/miniature_tango2.py")
            session.commit()
            table = flt.load_pair_table(session)
            kept = flt.strategy_counts(table, flt.keep_mask(table, th))
            pool = flt.strategy_counts(table)
        exports = self.out / "exports"
        exports.mkdir(parents=True, exist_ok=True)
        for name, p in (("filtered", preset), ("unfiltered", "unfiltered")):
            if not (exports / name / "manifest.json").is_file():
                curator_cli(["export", exports / name, "--preset", p, "--db", db, "--force"])
        n_no_s23 = write_subset(exports / "filtered", exports / "no_s23", {"1.1", "1.2"})
        return {"preset": preset, "thresholds": th.as_dict(), "kept": kept, "pool": pool,
                "n_pairs": {"filtered": sum(kept.values()), "unfiltered": sum(pool.values()), "no_s23": n_no_s23}}

    # 4.
    def arm_runs(self) -> dict[str, list[Path]]:
        steps = self.cfg.max_steps
        runs = {"base": [self.base]}
        for arm in ARMS[1:]:
            runs[arm] = [self.out / "arms" / f"{arm}-s{k}" / f"step-{steps}" for k in range(self.cfg.seeds)]
        return runs

    def arms(self) -> dict:
        c = self.cfg
        data = {"sft": "filtered", "dpo": "filtered", "dpo_no_s23": "no_s23", "dpo_unfiltered": "unfiltered"}
        done = {}
        for arm in ARMS[1:]:
            for k in range(c.seeds):
                run = self.out / "arms" / f"{arm}-s{k}"
                if (run / f"step-{c.max_steps}" / "main_config.json").is_file():
                    continue
                phase = ["--set", "sft_epochs=1000000", "--set", "dpo_epochs=0"] if arm == "sft" else \
                        ["--set", f"sft_epochs={c.sft_epochs}", "--set", "dpo_epochs=1"]
                args = ["run", "--model", self.base, "--data", self.out / "exports" / data[arm] / "data", "--out", run,
                        "--quiet", "--set", f"max_steps={c.max_steps}", "--set", f"seed={k}",
                        "--set", f"duration_s={self.clip_s()}", "--set", f"beta={c.beta}",
                        "--set", f"learning_rate={c.learning_rate}", "--set", f"train_batch_size={c.train_batch_size}",
                        "--set", f"gradient_accumulation_steps={c.gradient_accumulation_steps}",
                        "--set", f"lr_warmup_steps={c.lr_warmup_steps}", "--set", f"checkpoint_every={c.max_steps}",
                        *phase]
                trainer_cli(args)
                done[f"{arm}-s{k}"] = str(run)
        return {"trained": done}

    # 5.
    def compare(self) -> dict:
        args = ["compare", "--prompts", self.out / "captions" / "test.txt", "--scorer", "world-judge-a",
                "--scorer", "world-judge-b", "--out", self.out / "compare", "--steps", self.cfg.eval_steps,
                "--duration", self.clip_s(), "--seeds", self.cfg.eval_seeds, "--quiet"]
        for arm, paths in self.arm_runs().items():
            for k, path in enumerate(paths):
                args += ["--checkpoint", f"{arm}-s{k}={path}"]
        trainer_cli(args)
        return {"results": str(self.out / "compare" / "results.json")}

    # 6.
    def results(self) -> dict:
        compared = json.loads((self.out / "compare" / "results.json").read_text())
        arms, paired = aggregate(compared, {a: [f"{a}-s{k}" for k in range(len(p))] for a, p in self.arm_runs().items()})
        timings = {}
        for name in STAGES[:-1]:
            marker = self.out / "stages" / f"{name}.json"
            if marker.is_file():
                timings[name] = json.loads(marker.read_text())["seconds"]
        info = {name: json.loads((self.out / "stages" / f"{name}.json").read_text())
                for name in ("splits", "pretrain", "curation") if (self.out / "stages" / f"{name}.json").is_file()}
        write_json(self.out / "results.json", {
            "arms": arms, "paired": paired, "config": dataclasses.asdict(self.cfg), "timings": timings,
            "pretrain": info.get("pretrain", {}), "curation": info.get("curation", {}), "splits": info.get("splits", {}),
            "test_prompts": compared["n_prompts"], "compare": str(self.out / "compare"),
        })
        return {"arms": list(arms)}


def write_subset(src: Path, dst: Path, strategies: set[str]) -> int:
    """The export at SRC restricted to STRATEGIES, as DST/data/train.parquet (same schema)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from curator.export import TABLE_PATH

    target = dst / "data" / "train.parquet"
    table = pq.read_table(src / TABLE_PATH)
    sub = table.filter(pc.is_in(table["strategy"], value_set=__import__("pyarrow").array(sorted(strategies))))
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        pq.write_table(sub, tmp)
        tmp.replace(target)
    return sub.num_rows


def aggregate(compared: dict, arms: dict[str, list[str]]) -> tuple[dict, dict]:
    """Per arm and metric {mean, ci95, n}, pooling the arm's runs (see the module docstring), and
    the paired differences of PAIRED over test prompts."""
    from curator.stats import mean_ci

    n_prompts = compared["n_prompts"]

    def cell(xs: list[float]) -> dict:
        r = mean_ci(xs)
        lo = r.low if r.low is not None else r.mean
        hi = r.high if r.high is not None else r.mean
        return {"mean": r.mean, "ci95": [lo, hi], "n": r.n}

    def per_prompt(arm: str, metric: str) -> list[float | None]:
        acc: list[list[float]] = [[] for _ in range(n_prompts)]
        names = set(arms[arm])
        for row in compared["rows"]:
            v = row["values"].get(metric)
            if row["checkpoint"] in names and v is not None:
                acc[row["prompt_index"]].append(float(v))
        return [sum(a) / len(a) if a else None for a in acc]

    out: dict[str, dict] = {}
    for arm in arms:
        out[arm] = {}
        for metric, key in METRIC_NAMES.items():
            if metric == "fad":
                vals = [compared["all"]["metrics"][n]["fad"]["mean"] for n in arms[arm]
                        if "fad" in compared["all"]["metrics"].get(n, {})]
            else:
                vals = [v for v in per_prompt(arm, metric) if v is not None]
            # every metric is reported; one no test prompt measures (no counts stated, say) has n = 0
            out[arm][key] = cell(vals) if vals else {"mean": None, "ci95": [None, None], "n": 0}
    paired: dict[str, dict] = {}
    for a, b in PAIRED:
        if a not in arms or b not in arms:
            continue
        key = f"{a}-{b}"
        paired[key] = {}
        for metric, name in METRIC_NAMES.items():
            if metric == "fad":
                continue
            pa, pb = per_prompt(a, metric), per_prompt(b, metric)
            ds = [x - y for x, y in zip(pa, pb) if x is not None and y is not None]
            if ds:
                paired[key][name] = cell(ds)
    return out, paired


def run_experiment(out: str | Path, cfg: ExperimentConfig, *, echo: Callable[[str], None] = print) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "experiment_config.json"
    if saved.is_file():
        before = json.loads(saved.read_text(encoding="utf-8"))
        if before != dataclasses.asdict(cfg):
            changed = sorted(k for k in before if before[k] != dataclasses.asdict(cfg).get(k))
            raise CuratorError(f"{out} holds an experiment with another config ({', '.join(changed)}); "
                               "pick a new --out or the same options")
    else:
        write_json(saved, dataclasses.asdict(cfg))
    run = Run(out, cfg, echo)
    for name in STAGES:
        run.stage(name, getattr(run, name))
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="Experiment folder (rerun the same command to resume).")
    parser.add_argument("--smoke", action="store_true", help="Seconds-sized models and data: every stage, no result.")
    parser.add_argument("--seeds", type=int, default=None, help="Training seeds per arm (default 3; smoke 1).")
    args = parser.parse_args(argv)
    try:
        changes = {"seeds": args.seeds} if args.seeds is not None else {}
        cfg = smoke_config(**changes) if args.smoke else ExperimentConfig(**changes)
        results = run_experiment(args.out, cfg)
    except CuratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for arm, metrics in results["arms"].items():
        print(f"{arm:15s} " + "  ".join(f"{k} {v['mean']:.4f}" for k, v in metrics.items() if v["n"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
