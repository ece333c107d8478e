"""`trainer compare`: several checkpoints on the same held-out prompts and seeds, scored, with
confidence intervals, paired differences and the paper's splits (arXiv 2404.09956 §5.2–5.3).

1. Every checkpoint (a Tango folder, a trainer RUN/step-K, an AudioLDM pipeline; each loaded
   once up front so a broken one fails before any work) generates every prompt with every seed
   (curator.generate.backends: the official sampler, one seeded generator per clip). Clips are
   kept under OUT/clips/NAME/ (float32 .npy), so a rerun generates only what is missing.
2. Scores: the curator's scorers (curator.scoring.specs.make_scorer: CLAP checkpoints or the
   world judges). With a world judge also `temporal_metrics` (curator.world.judge): event
   presence recall and precision, ordering error rate (prompts that order events), onset error
   (seconds, against a faithful render's ground truth) and count error rate (prompts that state
   counts).
3. FAD (arXiv 2404.09956 §5.2): the Fréchet distance (scipy.linalg.sqrtm) between embeddings of the
   generated clips and of reference audio for the same prompts and seeds. The reference is a
   faithful render of the caption (curator.world.render) wherever the world grammar reads it;
   embeddings are the world judge's features (mean and spread of its log-mel power and its
   per-event strengths) and, for each CLAP scorer, its audio embeddings (`fad_<scorer>`).
   Prompts the grammar cannot read have no reference here, so FAD is left out for them.
4. Statistics: per checkpoint and metric the mean over prompts of the per-prompt mean over seeds,
   with a Student-t 95 % interval (curator.stats.mean_ci); the paired difference to the first
   checkpoint, paired over prompts and pooled over seeds; FAD's interval and difference by a
   bootstrap over prompts (the same resamples for every checkpoint). Splits: number of events
   (arXiv 2404.09956 Figure 3) and temporal vs non-temporal prompts (arXiv 2404.09956 Table 5, the T2 keywords).
5. OUT/results.json, OUT/table.md, OUT/figure.png (matplotlib), written atomically. With a store,
   each checkpoint's first-seed clips become a clip set `compare:<out>:<NAME>` (trainer.evaluate's
   clip rows), and `listening` creates a listening session over them (annotate_ui.logic.listening.design, which the CLI passes in).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from curator.stats import mean_ci
from db.errors import CuratorError
from curator.paper import CLIP_SECONDS, EVAL_STEPS, GUIDANCE_SCALE

WORLD_METRICS = ("presence_recall", "presence_precision", "ordering_error_rate", "onset_error_s", "count_error_rate")
LOWER_IS_BETTER = {"ordering_error_rate", "onset_error_s", "count_error_rate", "fad"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class CompareSettings:
    steps: int = EVAL_STEPS
    guidance: float = GUIDANCE_SCALE
    duration_s: float = CLIP_SECONDS
    seeds: tuple[int, ...] = (0,)
    batch_size: int = 4
    limit: int = 0
    bootstrap: int = 200  # FAD resamples
    listening_prompts: int = 50  # arXiv 2404.09956 §5.3

    def __post_init__(self) -> None:
        from trainer.evaluate import EvalSettings

        # the sampler's settings are `trainer eval`'s, validated alike
        EvalSettings(steps=self.steps, guidance=self.guidance, duration_s=self.duration_s,
                     batch_size=self.batch_size, limit=self.limit)
        bad = []
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            bad.append(f"seeds={list(self.seeds)} must be distinct and at least one")
        if self.bootstrap < 10:
            bad.append(f"bootstrap={self.bootstrap} must be >= 10")
        if bad:
            raise CuratorError("compare: " + "; ".join(bad))


def parse_checkpoint_spec(spec: str) -> tuple[str, Path]:
    """'NAME=DIR' → (NAME, DIR)."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise CuratorError(f"--checkpoint {spec!r}: expected NAME=DIR")
    if not _NAME.match(name):
        raise CuratorError(f"--checkpoint {spec!r}: NAME may hold letters, digits and _.+- only")
    return name, Path(path).expanduser()


# --------------------------------------------------------------------------- inputs


def load_checkpoint(name: str, path: Path):
    """The generator of one checkpoint; one line when it does not load."""
    from curator.generate.backends import resolve_generator

    try:
        return resolve_generator(None, checkpoint=path, device="cpu")
    except CuratorError as exc:
        raise CuratorError(f"checkpoint {name}={path} does not load: {exc}") from None
    except Exception as exc:  # a damaged file deep inside a library
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CuratorError(f"checkpoint {name}={path} does not load: {first}") from None


def training_captions(path: Path, _seen: set | None = None) -> tuple[set[str], list[str]]:
    """Captions a checkpoint was trained on, as far as its folder says: `train_captions.txt` of a
    pretraining run (in the folder or its parent, for DIR/step-K), and for a trainer checkpoint
    the prompts of its export and those of its base model. (captions, files read)."""
    seen = _seen if _seen is not None else set()
    path = Path(path).resolve()
    if path in seen:
        return set(), []
    seen.add(path)
    out: set[str] = set()
    files: list[str] = []
    for folder in (path, path.parent):
        f = folder / "train_captions.txt"
        if f.is_file():
            out |= {ln.strip().lower() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()}
            files.append(str(f))
            break
    state = path / "trainer_state.json"
    if state.is_file():
        try:
            info = json.loads(state.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            info = {}
        src = str(info.get("source", ""))
        if src.startswith("export:") and Path(src[7:]).exists():
            import pyarrow.parquet as pq

            from trainer.data import parquet_files

            for file in parquet_files(src[7:]):
                out |= {str(p).strip().lower() for p in pq.read_table(file, columns=["prompt"]).column(0).to_pylist()}
                files.append(str(file))
        if info.get("base_model") and Path(info["base_model"]).is_dir():
            more, more_files = training_captions(Path(info["base_model"]), seen)
            out |= more
            files += more_files
    return out, files


def overlap_warnings(checkpoints: Sequence[tuple[str, Path]], prompts: Sequence[str]) -> list[str]:
    lowered = [p.strip().lower() for p in prompts]
    lines = []
    for name, path in checkpoints:
        train, files = training_captions(path)
        hit = sum(p in train for p in lowered)
        if hit:
            lines.append(f"warning: {hit} of {len(prompts)} prompts are training captions of {name} "
                         f"({', '.join(files[:2])}); the comparison is not held out")
    return lines


# --------------------------------------------------------------------------- world features


def world_reference(prompt: str, seed: int, duration_s: float):
    """A faithful render of PROMPT (the reference clip), or None where the grammar cannot read
    it or it does not fit the clip."""
    from curator.world.grammar import CaptionError
    from curator.world.render import MIN_DURATION_S, render

    if duration_s < MIN_DURATION_S:
        return None
    try:
        return render(prompt, seed, duration_s=duration_s)
    except CaptionError:
        return None


def world_features(wave: np.ndarray) -> np.ndarray:
    """The world judge's view of a clip as one 74-vector: mean and std over frames of its log-mel
    power (dB re the clip's peak; the 64 bands pooled in adjacent pairs) and the 10 per-event
    strengths."""
    from curator.world.judge import EVENT_KEYS, detect_cached, mel_power

    wave = np.asarray(wave, dtype=np.float32)
    S = mel_power(wave)
    db = 10 * np.log10(S / (S.max() + 1e-20) + 1e-9)
    db = db.reshape(db.shape[0] // 2, 2, -1).mean(axis=1)  # (32, frames)
    det = detect_cached(wave)
    return np.concatenate([db.mean(axis=1), db.std(axis=1), [det.strength[e] for e in EVENT_KEYS]])


def temporal_row(prompt: str, wave: np.ndarray, reference) -> dict[str, float | None]:
    """The world judge's temporal metrics of one clip; None where a metric does not apply."""
    from curator.world.grammar import CaptionError, parse_caption
    from curator.world.judge import detect_cached, temporal_metrics

    try:
        scene = parse_caption(prompt)
    except CaptionError:
        return {m: None for m in WORLD_METRICS}
    det = detect_cached(np.asarray(wave, dtype=np.float32))
    tm = temporal_metrics(scene, det)
    onset = temporal_metrics(list(reference.events), det).onset_error_s if reference is not None and reference.events else None
    return {"presence_recall": tm.presence_recall, "presence_precision": tm.presence_precision,
            "ordering_error_rate": tm.ordering_error_rate if scene.before_pairs() else None,
            "onset_error_s": onset, "count_error_rate": tm.count_error_rate if tm.n_counted else None}


def frechet_distance(a: np.ndarray, b: np.ndarray, *, fast: bool = False) -> float:
    """Fréchet distance between Gaussians fitted to the rows of A and of B (FAD's formula):
    |μa − μb|² + tr(Ca + Cb − 2 (Ca Cb)^½), the matrix root by scipy.linalg.sqrtm. FAST (the
    bootstrap's hundreds of resamples): tr (Ca Cb)^½ as the sum of the square roots of Ca Cb's
    eigenvalues, the same number (they are real and ≥ 0 for two covariances) at a tenth of the cost."""
    from scipy.linalg import sqrtm

    if len(a) < 2 or len(b) < 2:
        raise CuratorError("FAD needs at least two clips on each side")
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    eye = np.eye(a.shape[1]) * 1e-6
    c1, c2 = np.cov(a, rowvar=False) + eye, np.cov(b, rowvar=False) + eye
    if fast:
        trace_root = float(np.sum(np.sqrt(np.clip(np.linalg.eigvals(c1 @ c2).real, 0.0, None))))
    else:
        import warnings

        with warnings.catch_warnings():  # fewer clips than dimensions: singular, the ε·I keeps it finite
            warnings.simplefilter("ignore")
            root = sqrtm(c1 @ c2)
        trace_root = float(np.trace(root.real if np.iscomplexobj(root) else root))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2) - 2.0 * trace_root)


# --------------------------------------------------------------------------- statistics


def _ci(values: Sequence[float]) -> dict[str, Any]:
    r = mean_ci([float(v) for v in values])
    lo = r.low if r.low is not None else r.mean
    hi = r.high if r.high is not None else r.mean
    return {"mean": r.mean, "ci95": [lo, hi], "n": r.n}


def per_prompt(rows: list[dict], metric: str, n_prompts: int) -> list[float | None]:
    """Per prompt: the mean over seeds of METRIC (None where no seed has it)."""
    acc: list[list[float]] = [[] for _ in range(n_prompts)]
    for r in rows:
        v = r["values"].get(metric)
        if v is not None:
            acc[r["prompt_index"]].append(float(v))
    return [float(np.mean(a)) if a else None for a in acc]


def summarise(rows_by: dict[str, list[dict]], metrics: Sequence[str], prompt_idx: Sequence[int], n_prompts: int,
              first: str) -> tuple[dict, dict]:
    """(per checkpoint {metric: mean/ci95/n}, paired {checkpoint: {metric: mean/ci95/n}}) over PROMPT_IDX."""
    table: dict[str, dict] = {}
    paired: dict[str, dict] = {}
    base = {m: per_prompt(rows_by[first], m, n_prompts) for m in metrics}
    for name, rows in rows_by.items():
        table[name] = {}
        if name != first:
            paired[name] = {}
        for m in metrics:
            vals = per_prompt(rows, m, n_prompts)
            xs = [vals[i] for i in prompt_idx if vals[i] is not None]
            if xs:
                table[name][m] = _ci(xs)
            if name != first:
                ds = [vals[i] - base[m][i] for i in prompt_idx if vals[i] is not None and base[m][i] is not None]
                if ds:
                    paired[name][m] = _ci(ds)
    return table, paired


def fad_stats(gen: dict[str, np.ndarray], ref: np.ndarray, prompt_of: np.ndarray, prompts: Sequence[int],
              first: str, n_boot: int, seed: int = 0) -> tuple[dict, dict]:
    """FAD per checkpoint (all clips of PROMPTS) with bootstrap-over-prompts intervals, and its
    paired difference to FIRST on the same resamples. GEN[name] and REF are row-aligned with
    PROMPT_OF (the prompt index of each row)."""
    prompts = np.asarray(sorted(prompts))
    rows_of = {p: np.flatnonzero(prompt_of == p) for p in prompts}

    def fad(name: str, picked: np.ndarray, fast: bool = True) -> float:
        idx = np.concatenate([rows_of[p] for p in picked])
        return frechet_distance(gen[name][idx], ref[idx], fast=fast)

    table, paired = {}, {}
    if len(np.concatenate([rows_of[p] for p in prompts])) < 2:
        return table, paired
    rng = np.random.default_rng(seed)
    boots = [rng.choice(prompts, size=len(prompts), replace=True) for _ in range(n_boot)]
    point = {name: fad(name, prompts, fast=False) for name in gen}
    samples = {name: np.array([fad(name, b) for b in boots]) for name in gen}
    n_clips = int(sum(len(rows_of[p]) for p in prompts))
    for name in gen:
        lo, hi = np.percentile(samples[name], [2.5, 97.5])
        table[name] = {"mean": point[name], "ci95": [float(lo), float(hi)], "n": n_clips}
        if name != first:
            d = samples[name] - samples[first]
            lo, hi = np.percentile(d, [2.5, 97.5])
            paired[name] = {"mean": point[name] - point[first], "ci95": [float(lo), float(hi)], "n": n_clips}
    return table, paired


def prompt_splits(prompts: Sequence[str]) -> dict[str, list[int]]:
    """Prompt indices by number of events (the world grammar's reading) and temporal or not."""
    from curator.captions import is_temporal
    from curator.world.grammar import CaptionError, parse_caption

    out: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        try:
            k = str(len(parse_caption(p).mentions))
        except CaptionError:
            k = "?"
        out.setdefault(f"events={k}", []).append(i)
        out.setdefault("temporal" if is_temporal(p) else "non-temporal", []).append(i)
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- the run


@dataclass
class CompareResult:
    out_dir: Path
    results: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    clip_sets: dict[str, str] = field(default_factory=dict)
    listening: str | None = None


def _save_npy(path: Path, wave: np.ndarray) -> None:
    from curator.audio import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, np.asarray(wave, dtype=np.float32))
    atomic_write_bytes(path, buf.getvalue())


def _generate(name: str, generator, prompts: Sequence[str], settings: CompareSettings, folder: Path,
              progress: bool) -> dict[tuple[int, int], np.ndarray]:
    """(prompt index, seed) → clip, generating only what OUT/clips/NAME lacks."""
    import shutil

    from tqdm.auto import tqdm

    from curator.audio import atomic_write_bytes

    meta = {"checkpoint": generator.checkpoint_id, "steps": settings.steps, "guidance": settings.guidance,
            "duration_s": settings.duration_s, "prompts": list(prompts)}
    meta_file = folder / "meta.json"
    if folder.is_dir() and (not meta_file.is_file() or json.loads(meta_file.read_text()) != meta):
        shutil.rmtree(folder)  # clips of another checkpoint, prompt list or sampler setting
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(meta_file, json.dumps(meta).encode("utf-8"))
    waves: dict[tuple[int, int], np.ndarray] = {}
    todo = []
    for s in settings.seeds:
        for i in range(len(prompts)):
            f = folder / f"seed{s}-{i}.npy"
            if f.is_file():
                waves[(i, s)] = np.load(f)
            else:
                todo.append((i, s))
    bar = tqdm(total=len(todo), desc=f"generating {name}", unit="clip", disable=not progress or not todo)
    for start in range(0, len(todo), settings.batch_size):
        chunk = todo[start:start + settings.batch_size]
        # the clip of prompt i with seed s gets the seed s·100003 + i: the same for every checkpoint
        made = generator.generate([prompts[i] for i, _ in chunk], steps=settings.steps, guidance=settings.guidance,
                                  seeds=[s * 100003 + i for i, s in chunk], duration_s=settings.duration_s)
        for key, wave in zip(chunk, made):
            waves[key] = np.asarray(wave, dtype=np.float32)
            _save_npy(folder / f"seed{key[1]}-{key[0]}.npy", wave)
        bar.update(len(chunk))
    bar.close()
    return waves


def compare(checkpoints: Sequence[tuple[str, Path]], scorer_specs: Sequence[str], settings: CompareSettings, *,
            prompts: Sequence[str] | None = None, out_dir: str | Path, session=None, audio_store=None,
            split: str = "test", listening: str | None = None, create_listening: Callable[..., Any] | None = None,
            progress: bool = True, warn: Callable[[str], None] = print) -> CompareResult:
    """LISTENING names a listening session to create over the clip sets with CREATE_LISTENING
    (annotate_ui.logic.listening.design.create_listening_session: the caller, a CLI, passes it in,
    since the rater app's logic sits above the trainer)."""
    from curator.audio import resample
    from curator.scoring.specs import make_scorer

    # 1. Inputs: names, scorers, prompts, checkpoints (each loaded once: a broken one fails here)
    if not checkpoints:
        raise CuratorError("give at least one --checkpoint NAME=DIR")
    names = [n for n, _ in checkpoints]
    if len(set(names)) != len(names):
        raise CuratorError(f"two checkpoints share a name ({', '.join(names)})")
    if not scorer_specs:
        raise CuratorError("give at least one --scorer (world-judge-a, world-judge-b or a CLAP checkpoint)")
    if listening and session is None:
        raise CuratorError("--listening needs --db (the listening session lives in the store)")
    if listening and create_listening is None:
        raise ValueError("compare(listening=...) needs create_listening, the function that creates the session")
    scorers = []
    for spec in scorer_specs:
        try:
            scorers.append(make_scorer(spec))
        except CuratorError as exc:
            raise CuratorError(f"scorer {spec!r} cannot be built: {exc}") from None
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CuratorError(f"scorer {spec!r} cannot be built: {first}") from None
    scorer_names = [n for n, _ in scorers]
    if len(set(scorer_names)) != len(scorer_names):
        raise CuratorError(f"two scorers share a name ({', '.join(scorer_names)}); name them NAME=SPEC")
    captions = None
    if prompts is None:
        if session is None:
            raise CuratorError("give --prompts FILE, or --db URL for the store's held-out captions")
        from trainer.evaluate import _captions

        captions = _captions(session, None, split)
        prompts = [c.text for c in captions]
    if captions is not None:
        captions = captions[:settings.limit] if settings.limit else captions
        prompts = [c.text for c in captions]
    else:
        prompts = list(dict.fromkeys(p.strip() for p in prompts if p.strip()))
        prompts = prompts[:settings.limit] if settings.limit else prompts
    if not prompts:
        raise CuratorError("no prompts to compare on")
    for name, path in checkpoints:
        load_checkpoint(name, path)  # fails in one line before anything is generated
    warnings = overlap_warnings(checkpoints, prompts)
    for line in warnings:
        warn(line)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = any(getattr(s, "backend", None) == "world" for _, s in scorers)

    # 2. Reference renders (FAD, onsets), one per prompt and seed
    refs = {(i, s): world_reference(p, s * 100003 + i, settings.duration_s)
            for i, p in enumerate(prompts) for s in settings.seeds}

    # 3. Generate, score, temporal metrics, embeddings
    rows_by: dict[str, list[dict]] = {}
    emb: dict[str, dict[str, list[np.ndarray]]] = {}
    keys = [(i, s) for s in settings.seeds for i in range(len(prompts))]
    fad_keys = [k for k in keys if refs[k] is not None]
    clip_sets: dict[str, str] = {}
    if captions is None and session is not None:
        from trainer.evaluate import _captions

        captions = _captions(session, prompts, split)
    for name, path in checkpoints:
        generator = load_checkpoint(name, path)
        waves = _generate(name, generator, prompts, settings, out / "clips" / name, progress)
        rows = []
        for start in range(0, len(keys), 16):
            chunk = keys[start:start + 16]
            texts = [prompts[i] for i, _ in chunk]
            clips = [waves[k] for k in chunk]
            scores = {n: s.score(texts, [resample(w, generator.sample_rate, s.sample_rate) for w in clips])
                      for n, s in scorers}
            for j, (i, s) in enumerate(chunk):
                values: dict[str, float | None] = {n: float(scores[n][j]) for n in scorer_names}
                if world:
                    values.update(temporal_row(prompts[i], clips[j], refs[(i, s)]))
                rows.append({"checkpoint": name, "prompt_index": i, "prompt": prompts[i], "seed": s, "values": values})
        rows_by[name] = rows
        emb[name] = {}
        if fad_keys:
            gen_waves = [waves[k] for k in fad_keys]
            if world:
                emb[name]["fad"] = [world_features(w) for w in gen_waves]
            for n, s in scorers:
                if hasattr(s, "audio_embeddings") and getattr(s, "backend", None) != "world":
                    emb[name][f"fad_{n}"] = [np.asarray(e) for e in s.audio_embeddings(
                        [resample(w, generator.sample_rate, s.sample_rate) for w in gen_waves]).cpu().numpy()]
        if session is not None:
            clip_sets[name] = _store_clip_set(session, audio_store, generator, captions, waves, settings,
                                              f"compare:{out.name}:{name}")
            session.commit()
        del generator

    ref_emb: dict[str, np.ndarray] = {}
    if fad_keys:
        ref_waves = [refs[k].wave for k in fad_keys]
        if world:
            ref_emb["fad"] = np.stack([world_features(w) for w in ref_waves])
        for n, s in scorers:
            if hasattr(s, "audio_embeddings") and getattr(s, "backend", None) != "world":
                from curator.world.render import SAMPLE_RATE

                ref_emb[f"fad_{n}"] = s.audio_embeddings([resample(w, SAMPLE_RATE, s.sample_rate)
                                                          for w in ref_waves]).cpu().numpy()

    # 4. Statistics: all prompts, then each split
    metrics = scorer_names + ([m for m in WORLD_METRICS] if world else [])
    first = names[0]
    everything = list(range(len(prompts)))
    splits = prompt_splits(prompts)
    fad_prompt_of = np.array([i for i, _ in fad_keys])

    def block(idx: list[int]) -> dict[str, Any]:
        table, paired = summarise(rows_by, metrics, idx, len(prompts), first)
        for key in ref_emb:
            gen = {n: np.stack(emb[n][key]) for n in names}
            have = [i for i in idx if i in set(fad_prompt_of.tolist())]
            if len(have) >= 2:
                ft, fp = fad_stats(gen, ref_emb[key], fad_prompt_of, have, first, settings.bootstrap)
                for n in names:
                    if n in ft:
                        table[n][key] = ft[n]
                    if n in fp:
                        paired[n][key] = fp[n]
        return {"n_prompts": len(idx), "metrics": table, "paired": paired}

    results = {
        "checkpoints": {n: str(p) for n, p in checkpoints}, "baseline": first, "scorers": scorer_names,
        "metrics": metrics + list(ref_emb), "lower_is_better": sorted(LOWER_IS_BETTER & set(metrics + list(ref_emb))),
        "settings": {**asdict(settings), "seeds": list(settings.seeds)}, "n_prompts": len(prompts),
        "prompts": prompts, "warnings": warnings, "all": block(everything),
        "splits": {k: block(v) for k, v in splits.items()}, "clip_sets": clip_sets,
        "rows": [r for n in names for r in rows_by[n]],
    }
    ls_name = None
    if listening:
        ls = create_listening(session, listening, [clip_sets[n] for n in names],
                              n_prompts=min(settings.listening_prompts, len(prompts)), seed=0)
        session.commit()
        ls_name = ls.name
        results["listening"] = ls_name
    write_outputs(out, results)
    return CompareResult(out, results, warnings, clip_sets, ls_name)


def _store_clip_set(session, audio_store, generator, captions, waves, settings: CompareSettings, name: str) -> str:
    """The checkpoint's first-seed clips as AudioClips (strategy "eval") and one clip set."""
    from trainer.evaluate import _add_item, _clip_set, _existing_clips, _store_clip

    seed = settings.seeds[0]
    clip_set = _clip_set(session, generator, name)
    existing = _existing_clips(session, generator, [c.id for c in captions])
    for i, cap in enumerate(captions):
        clip = existing.get(cap.id) or _store_clip(session, audio_store, generator, cap, waves[(i, seed)], settings,
                                                   seed=seed * 100003 + i)
        _add_item(session, clip_set, cap, clip)
    session.flush()
    return clip_set.name


# --------------------------------------------------------------------------- outputs


def _fmt(cell: dict | None) -> str:
    if not cell or cell.get("mean") is None:
        return "–"
    lo, hi = cell["ci95"]
    return f"{cell['mean']:.4f} ± {(hi - lo) / 2:.4f}"


def render_table(results: dict[str, Any]) -> str:
    names = list(results["checkpoints"])
    metrics = results["metrics"]
    lines = [f"# trainer compare: {len(names)} checkpoints × {results['n_prompts']} prompts × "
             f"{len(results['settings']['seeds'])} seeds", "",
             "Mean ± half-width of the 95 % interval; Δ rows: paired difference to "
             f"`{results['baseline']}` (over prompts, pooled over seeds). Lower is better for: "
             + (", ".join(results["lower_is_better"]) or "none") + ".", ""]

    def section(title: str, blk: dict[str, Any]) -> None:
        lines.append(f"## {title} ({blk['n_prompts']} prompts)")
        lines.append("")
        lines.append("| checkpoint | " + " | ".join(metrics) + " |")
        lines.append("|---" * (len(metrics) + 1) + "|")
        for n in names:
            lines.append(f"| {n} | " + " | ".join(_fmt(blk["metrics"].get(n, {}).get(m)) for m in metrics) + " |")
        for n in names[1:]:
            lines.append(f"| Δ {n} − {results['baseline']} | "
                         + " | ".join(_fmt(blk["paired"].get(n, {}).get(m)) for m in metrics) + " |")
        lines.append("")

    section("All prompts", results["all"])
    for key, blk in results["splits"].items():
        section(key, blk)
    for w in results["warnings"]:
        lines.append(f"> {w}")
    return "\n".join(lines).rstrip() + "\n"


def render_figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from curator.audio import atomic_write_bytes

    names = list(results["checkpoints"])
    metrics = results["metrics"]
    cols = min(4, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        cells = [results["all"]["metrics"].get(n, {}).get(m) for n in names]
        means = [c["mean"] if c else np.nan for c in cells]
        err = np.array([[c["mean"] - c["ci95"][0], c["ci95"][1] - c["mean"]] if c else [0, 0] for c in cells]).T
        ax.bar(range(len(names)), means, yerr=err, capsize=3, color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(m + (" ↓" if m in results["lower_is_better"] else ""), fontsize=9)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_outputs(out: Path, results: dict[str, Any]) -> None:
    from curator.audio import atomic_write_bytes

    atomic_write_bytes(out / "results.json", (json.dumps(results, indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(out / "table.md", render_table(results).encode("utf-8"))
    render_figure(results, out / "figure.png")
