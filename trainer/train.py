"""`trainer run`: Diffusion-DPO fine-tuning of the Tango UNet on approved pairs (arXiv 2404.09956 §4.2, §5.1).

Reads top to bottom: 1. setup · 2. model and frozen reference · 3. data → cached latents ·
4. optimizer and schedule · 4b. the reference pre-pass (trainer/reference.py: the reference's
terms of every DPO micro-batch computed once, then the reference leaves memory; off with
`precompute_reference=false`) · 5. resume · 6. the loop · 7. the last checkpoint.

Schedule. An *epoch* is ceil(N / global batch) optimizer steps, global batch = per-device batch
× accumulation × processes. The first `sft_epochs` epochs train the plain diffusion loss on
(prompt, winner); then Diffusion-DPO (arXiv 2404.09956 §5.1). The phase is a function of the global
step only, so it is the same on every process (the official trainer flips it on the main
process alone).

Determinism. Sample order is a seeded permutation per epoch, and each micro-batch draws its
timesteps, noise and conditioning dropout from its own generator seeded by (seed, micro-batch,
process). A run stopped at step K and resumed from DIR/step-K therefore sees exactly the batches
and noise the uninterrupted run saw; the checkpoint restores UNet, optimizer, LR schedule (and
accelerate's RNG state), so the losses agree to float tolerance.

Checkpoints. DIR/step-K/ is a complete model folder (trainer.model.save_model: a Tango folder, or
an AudioLDMPipeline folder; `curator generate --checkpoint DIR/step-K` loads it) plus `accelerate/`
(optimizer, scheduler, RNG, grad scaler; the UNet weights are not stored twice, the model files are
the weights), `trainer_config.json` and `trainer_state.json`. Written to a temporary folder and
renamed; with `checkpoints_total_limit=N` the oldest step-K/ folders beyond N are then removed
(never the one the run resumed from). `--resume latest` is the highest K in the run folder.

Trackers. `report_to` (tensorboard, wandb, trackio, mlflow) also sends every metrics line through
accelerate's trackers; metrics.jsonl stays the record the run itself reads.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from db.errors import CuratorError
from trainer.cache import FeatureCache, build_features
from trainer.config import TrainConfig, config_from_dict, resume_mismatch
from trainer.data import PairSet
from trainer.loss import diffusion_target, dpo_loss, per_sample_mse, sft_loss
from trainer.model import load_base, resolve_model, save_model, unet_inputs, unet_signature

CONFIG_FILE = "trainer_config.json"
STATE_FILE = "trainer_state.json"
ACCEL_DIR = "accelerate"
METRICS_FILE = "metrics.jsonl"

# Metric names (TRL's where they exist: rewards/*).
DPO_METRICS = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected",
               "mse/model_chosen", "mse/model_rejected", "mse/ref_chosen", "mse/ref_rejected")
SFT_METRICS = ("loss", "mse/model_chosen")


# --------------------------------------------------------------------------- pieces


@dataclass
class Features:
    """Everything the loop reads, on CPU: cached latents and text encodings per pair."""

    chosen: torch.Tensor  # (N, 8, t, 16)
    rejected: torch.Tensor  # (N, 8, t, 16)
    text_index: torch.Tensor  # (N,) row of `hidden` for each pair
    hidden: torch.Tensor  # (U, L, D)
    mask: torch.Tensor  # (U, L) bool
    null_hidden: torch.Tensor | None = None  # (L, D) the unconditional input; None = zeros (Tango)

    def __len__(self) -> int:
        return self.chosen.shape[0]


def load_features(cache: FeatureCache, pairs: PairSet) -> Features:
    texts = list(dict.fromkeys(p.prompt for p in pairs.pairs))
    row = {t: i for i, t in enumerate(texts)}
    hidden, mask = cache.texts(texts)
    null_hidden = None
    null = getattr(cache.tango, "null_prompt", None)
    if null is not None:
        h, _ = cache.texts([null])
        null_hidden = torch.zeros(hidden.shape[1:])
        n = min(h.shape[1], hidden.shape[1])
        null_hidden[:n] = h[0, :n]
    return Features(
        chosen=cache.latents([p.chosen_sha for p in pairs.pairs]),
        rejected=cache.latents([p.rejected_sha for p in pairs.pairs]),
        text_index=torch.tensor([row[p.prompt] for p in pairs.pairs], dtype=torch.long),
        hidden=hidden, mask=mask, null_hidden=null_hidden,
    )


@dataclass
class Schedule:
    n_pairs: int
    batch_size: int  # per device
    accumulation: int
    world: int
    sft_epochs: int
    dpo_epochs: int
    max_steps: int

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.accumulation * self.world

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.n_pairs / self.global_batch))

    @property
    def sft_steps(self) -> int:
        return self.sft_epochs * self.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.max_steps or (self.sft_epochs + self.dpo_epochs) * self.steps_per_epoch

    def phase(self, step: int) -> str:
        """'sft' or 'dpo' for optimizer step STEP (0-based): a function of the global step only."""
        return "sft" if step < self.sft_steps else "dpo"


class Sampler:
    """Pair indices of micro-batch m on process `rank`: a seeded permutation per epoch over an
    endless stream, cut into global micro-batches of batch × world, each process taking its slice."""

    def __init__(self, n: int, batch_size: int, world: int, rank: int, seed: int):
        self.n, self.b, self.world, self.rank, self.seed = n, batch_size, world, rank, seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, 1, epoch]).generate_state(1)[0]))
            self._perms = {epoch: torch.randperm(self.n, generator=g)}  # keep one epoch in memory
        return self._perms[epoch]

    def indices(self, micro: int) -> torch.Tensor:
        start = (micro * self.world + self.rank) * self.b
        pos = torch.arange(start, start + self.b)
        return torch.stack([self._perm(int(p) // self.n)[int(p) % self.n] for p in pos])


def micro_generator(seed: int, micro: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 2, micro, rank]).generate_state(1)[0]))


def make_optimizer(cfg: TrainConfig, params, *, fused: bool | None = None):
    """The optimizer of CFG over PARAMS. AdamW is torch's fused kernel when every parameter is on
    CUDA (FUSED=None), or as FUSED says."""
    params = list(params)
    if cfg.optimizer == "adamw":
        if fused is None:
            fused = bool(params) and all(p.is_cuda for p in params)
        return torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                 weight_decay=cfg.weight_decay, eps=cfg.adam_epsilon, fused=fused or None)
    if cfg.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise CuratorError("optimizer=adamw8bit needs bitsandbytes: pip install 'audio-alpaca-studio[lowmem]'") from None
        return bnb.optim.AdamW8bit(params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                   weight_decay=cfg.weight_decay, eps=cfg.adam_epsilon)
    from transformers.optimization import Adafactor

    # a fixed learning rate (the schedule drives it), no relative step / parameter scaling
    return Adafactor(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, scale_parameter=False,
                     relative_step=False, warmup_init=False)


def _atomic_json(obj: Any, path: Path) -> None:
    from curator.audio import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


@dataclass
class StepBatch:
    """One micro-batch on the device."""

    chosen: torch.Tensor  # (B, 8, t, 16)
    rejected: torch.Tensor  # (B, 8, t, 16)
    hidden: torch.Tensor  # (B, L, D), zeroed where conditioning is dropped
    mask: torch.Tensor  # (B, L)
    timesteps: torch.Tensor  # (B,)
    noise: torch.Tensor  # (B, 8, t, 16)


def make_batch(feats: Features, idx: torch.Tensor, gen: torch.Generator, *, num_timesteps: int,
               uncond_prob: float, device) -> StepBatch:
    chosen, rejected = feats.chosen[idx], feats.rejected[idx]
    rows = feats.text_index[idx]
    hidden, mask = feats.hidden[rows].clone(), feats.mask[rows]
    b = len(idx)
    timesteps = torch.randint(0, num_timesteps, (b,), generator=gen)
    noise = torch.randn(chosen.shape, generator=gen)
    drop = torch.rand(b, generator=gen) < uncond_prob  # one draw per pair: both halves alike
    # Tango: the official dropout, a zeroed text embedding (arXiv 2404.09956 §3.1); AudioLDM: the encoding of ""
    hidden[drop] = 0.0 if feats.null_hidden is None else feats.null_hidden
    return StepBatch(*(t.to(device) for t in (chosen, rejected, hidden, mask, timesteps, noise)))


@dataclass
class PairInputs:
    """A micro-batch of pairs as one 2B batch: [winners; losers], sharing timestep and noise."""

    noisy: torch.Tensor  # (2B, C, t, f)
    timesteps: torch.Tensor  # (2B,)
    target: torch.Tensor  # (2B, C, t, f): noise or v, per the scheduler's prediction type
    hidden: torch.Tensor
    mask: torch.Tensor


def pair_inputs(scheduler, batch: StepBatch) -> PairInputs:
    latents = torch.cat([batch.chosen, batch.rejected])
    noise = torch.cat([batch.noise, batch.noise])  # same noise for both halves of a pair
    t = torch.cat([batch.timesteps, batch.timesteps])  # same timestep
    return PairInputs(scheduler.add_noise(latents, noise, t), t, diffusion_target(scheduler, latents, noise, t),
                      torch.cat([batch.hidden, batch.hidden]), torch.cat([batch.mask, batch.mask]))


def pair_mse(unet, x: PairInputs) -> torch.Tensor:
    """Per-sample MSE (2B,) of UNET's prediction on a doubled pair batch."""
    pred = unet(x.noisy, x.timesteps, **unet_inputs(unet, x.hidden, x.mask)).sample
    return per_sample_mse(pred, x.target)


@torch.no_grad()
def reference_mse(ref_unet, scheduler, batch: StepBatch) -> torch.Tensor:
    """The frozen reference's per-sample MSE (2B,) on BATCH: what the DPO loss compares against."""
    return pair_mse(ref_unet, pair_inputs(scheduler, batch))


def dpo_forward(unet, ref_unet, scheduler, batch: StepBatch, beta: float,
                ref_mse: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Winner and loser in ONE policy pass (and ONE reference pass unless REF_MSE, the reference
    terms precomputed for this very batch, is given), sharing timestep and noise."""
    x = pair_inputs(scheduler, batch)
    if ref_mse is None:  # the reference first: its activations are gone before the policy's are kept
        with torch.no_grad():
            ref_mse = pair_mse(ref_unet, x)
    model_mse = pair_mse(unet, x)  # (2B,)
    terms = dpo_loss(model_mse, ref_mse, beta)
    mw, ml = model_mse.detach().chunk(2)
    rw, rl = ref_mse.chunk(2)
    metrics = {"loss": terms.loss.detach(), "rewards/accuracies": terms.accuracy, "rewards/margins": terms.margin.detach(),
               "rewards/chosen": terms.reward_chosen.detach().mean(), "rewards/rejected": terms.reward_rejected.detach().mean(),
               "mse/model_chosen": mw.mean(), "mse/model_rejected": ml.mean(),
               "mse/ref_chosen": rw.mean(), "mse/ref_rejected": rl.mean()}
    return terms.loss, metrics


def sft_forward(unet, scheduler, batch: StepBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Plain diffusion loss on the winners only (the SFT epoch)."""
    latents, noise, t = batch.chosen, batch.noise, batch.timesteps
    noisy = scheduler.add_noise(latents, noise, t)
    target = diffusion_target(scheduler, latents, noise, t)
    pred = unet(noisy, t, **unet_inputs(unet, batch.hidden, batch.mask)).sample
    mse = per_sample_mse(pred, target)
    loss = sft_loss(mse)
    return loss, {"loss": loss.detach(), "mse/model_chosen": mse.detach().mean()}


# --------------------------------------------------------------------------- the run


@dataclass
class RunResult:
    out_dir: Path
    global_step: int
    checkpoints: list[Path] = field(default_factory=list)
    last_metrics: dict[str, Any] = field(default_factory=dict)
    n_pairs: int = 0
    source_hash: str = ""
    run_id: int | None = None


def read_checkpoint(path: str | Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The config and trainer state saved in DIR/step-K (one clear line when it is not one)."""
    path = Path(path)
    cfg_file, state_file = path / CONFIG_FILE, path / STATE_FILE
    if not cfg_file.is_file() or not state_file.is_file() or not (path / ACCEL_DIR).is_dir():
        raise CuratorError(f"--resume {path}: not a trainer checkpoint (expected {CONFIG_FILE}, {STATE_FILE} "
                           f"and {ACCEL_DIR}/ from `trainer run`)")
    try:
        saved = json.loads(cfg_file.read_text(encoding="utf-8"))
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CuratorError(f"--resume {path}: damaged checkpoint ({exc})") from None
    return config_from_dict(saved, where=str(cfg_file)), state


# report_to → (the module accelerate needs for it, the extra that installs it)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
            "trackio": ("trackio", "trackio"), "mlflow": ("mlflow", "mlflow")}


def tracker_for(report_to: str) -> str | None:
    """accelerate's `log_with` name for REPORT_TO (None for "none"); one line naming the extra when
    the tracker's package is not installed."""
    if report_to == "none":
        return None
    import importlib.util

    module, extra = TRACKERS[report_to]
    if importlib.util.find_spec(module) is None:
        raise CuratorError(f"report_to={report_to} needs the {module} package: "
                           f"pip install 'audio-alpaca-studio[{extra}]'")
    return report_to


def checkpoint_steps(out: str | Path) -> list[tuple[int, Path]]:
    """(K, DIR/step-K) of every complete checkpoint in the run folder OUT, oldest first."""
    found = []
    for p in Path(out).glob("step-*"):
        k = p.name[len("step-"):]
        if k.isdigit() and p.is_dir() and (p / STATE_FILE).is_file():
            found.append((int(k), p))
    return sorted(found)


def latest_checkpoint(out: str | Path) -> Path:
    """DIR/step-K with the highest K (`--resume latest`); one line when the run has none."""
    if not Path(out).is_dir():
        raise CuratorError(f"--resume latest: the run folder {out} does not exist")
    steps = checkpoint_steps(out)
    if not steps:
        raise CuratorError(f"--resume latest: no checkpoint in {out} (no step-K/ folder with {STATE_FILE}); "
                           "start the run without --resume")
    return steps[-1][1]


def prune_checkpoints(out: str | Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Remove the oldest DIR/step-K folders so at most LIMIT remain (0 = keep all); KEEP (the
    checkpoint being resumed from) is never removed. Returns the removed folders."""
    if limit <= 0:
        return []
    keep_resolved = Path(keep).resolve() if keep is not None else None
    steps = [p for _, p in checkpoint_steps(out)]
    excess = len(steps) - limit
    removed = []
    for p in steps:
        if excess <= 0:
            break
        if keep_resolved is not None and p.resolve() == keep_resolved:
            continue
        shutil.rmtree(p)
        removed.append(p)
        excess -= 1
    return removed


def run_training(cfg: TrainConfig, pairs_loader: Callable[[], PairSet], *, resume: str | None = None,
                 session=None, progress: bool = True, stop_after: int | None = None) -> RunResult:
    """Train per CFG on the pairs PAIRS_LOADER returns. RESUME: DIR/step-K, or "latest" (the
    highest K in cfg.out). SESSION (optional, owned by the caller):
    the run is recorded as a TrainingRun, committed at start, at each checkpoint and at the end
    (a resumable loop commits per checkpoint). STOP_AFTER: stop (with a checkpoint) after that
    many optimizer steps, as an interruption would (tests)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    if not cfg.out:
        raise CuratorError("--out DIR is required (checkpoints go to DIR/step-K/)")
    if not cfg.data:
        raise CuratorError("--data is required (an export folder/parquet, or 'store' with --db)")
    if resume == "latest":
        resume = str(latest_checkpoint(cfg.out))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Setup: accelerate (data parallel, mixed precision), seed, the resume point
    saved_state: dict[str, Any] = {}
    if resume:
        saved_cfg, saved_state = read_checkpoint(resume)
        bad = resume_mismatch(saved_cfg, cfg)
        if bad:
            raise CuratorError(f"--resume {resume}: incompatible with this run: {'; '.join(bad)}")
    log_with = tracker_for(cfg.report_to)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    # several processes without CUDA (torchrun / accelerate launch on CPUs): data parallel over gloo;
    # accelerate only does that when told the run is on CPU
    on_cpus = world > 1 and not torch.cuda.is_available()
    try:
        accelerator = Accelerator(mixed_precision=cfg.mixed_precision, log_with=log_with, project_dir=str(out),
                                  cpu=on_cpus)
    except (ValueError, RuntimeError) as exc:
        raise CuratorError(f"mixed_precision={cfg.mixed_precision}: {str(exc).splitlines()[0]}") from None
    if accelerator.num_processes != world:  # each process would train alone and all write the same DIR
        raise CuratorError(f"launched as {world} processes (WORLD_SIZE) but accelerate runs {accelerator.num_processes}; "
                           "start with `accelerate launch` (accelerate config: multi-GPU or --cpu)")
    set_seed(cfg.seed)
    main = accelerator.is_main_process
    device = accelerator.device

    # 2. Model: the base Tango (the one loader), a frozen reference copy of its UNet
    with accelerator.main_process_first():
        base_path = saved_state.get("base_model") or resolve_model(cfg.model, out)
    tango = load_base(base_path)
    if saved_state and saved_state.get("unet") != unet_signature(tango.unet):
        raise CuratorError(f"--resume {resume}: the checkpoint's UNet architecture differs from the base model {base_path}")
    # will it fit? one line with the estimate before any work (trainer/memory.py)
    from trainer.memory import check_fits

    frozen = sum(p.numel() for m in (tango.text_encoder, tango.vae, tango.vocoder) if m is not None
                 for p in m.parameters())
    on_cpu = device.type == "cpu"
    check_fits(cfg, tango.unet, device, frozen_params=frozen if on_cpu else 0,
               resident_bytes=4.0 * (sum(p.numel() for p in tango.unet.parameters()) + frozen) if on_cpu else 0.0)
    scheduler = tango.scheduler
    unet = tango.unet
    ref_unet = copy.deepcopy(unet).eval().requires_grad_(False)  # frozen reference (arXiv 2404.09956 §4.2)
    tango.text_encoder.requires_grad_(False)
    tango.vae.requires_grad_(False)
    tango.vocoder.requires_grad_(False)
    unet.requires_grad_(True).train()
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()

    # 3. Data: pairs → latents and text encodings, computed once (main process first, others read)
    pairs = pairs_loader().limit(cfg.max_pairs)
    if not pairs.pairs:
        raise CuratorError(f"no pairs to train on in {pairs.source}")
    if saved_state and saved_state.get("source_hash") != pairs.source_hash:
        raise CuratorError(f"--resume {resume}: the pair set differs from the one the run started on "
                           f"(source hash {saved_state.get('source_hash', '?')[:12]} vs {pairs.source_hash[:12]})")
    cache = FeatureCache(cfg.cache_dir or out / "cache", tango, duration_s=cfg.duration_s, latent=cfg.latent)
    with accelerator.main_process_first():
        tango.text_encoder.to(device)
        tango.vae.to(device)
        tango.mel_basis = tango.mel_basis.to(device)
        build_features(cache, pairs, batch_size=cfg.cache_batch_size, progress=progress and main)
    tango.text_encoder.to("cpu")  # frozen parts leave the device: only the UNets train
    tango.vae.to("cpu")
    tango.mel_basis = tango.mel_basis.to("cpu")
    feats = load_features(cache, pairs)
    for note in pairs.notes:
        accelerator.print(note)

    sched = Schedule(len(feats), cfg.train_batch_size, cfg.gradient_accumulation_steps, accelerator.num_processes,
                     cfg.sft_epochs, cfg.dpo_epochs, cfg.max_steps)
    sampler = Sampler(len(feats), cfg.train_batch_size, accelerator.num_processes, accelerator.process_index, cfg.seed)

    # 4. Optimizer and LR schedule (arXiv 2404.09956 §5.1); the schedule is stepped once per optimizer step
    unet.to(device)  # on the device before the optimizer is built (the fused AdamW kernel needs it there)
    optimizer = make_optimizer(cfg, [p for p in unet.parameters() if p.requires_grad])
    lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                                 num_training_steps=sched.total_steps)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    accelerator.register_for_checkpointing(lr_scheduler)
    ref_unet.to(device)
    num_timesteps = scheduler.config.num_train_timesteps
    accum = cfg.gradient_accumulation_steps

    def batch_of(micro: int) -> StepBatch:
        return make_batch(feats, sampler.indices(micro), micro_generator(cfg.seed, micro, accelerator.process_index),
                          num_timesteps=num_timesteps, uncond_prob=cfg.uncond_prob, device=device)

    # 4b. The reference terms of every DPO micro-batch, once, before the loop (trainer/reference.py);
    # the reference UNet then leaves memory
    ref_table = None
    dpo_first = sched.sft_steps * accum
    dpo_count = max(sched.total_steps - sched.sft_steps, 0) * accum
    if cfg.precompute_reference and dpo_count:
        from trainer.reference import ReferenceTable, reference_key

        key = reference_key(ref_unet, scheduler, parts={
            "source_hash": pairs.source_hash, "n_pairs": len(feats), "latents": cache.latent_dir.name,
            "texts": cache.text_dir.name, "seed": cfg.seed, "batch": cfg.train_batch_size, "accum": accum,
            "world": accelerator.num_processes, "rank": accelerator.process_index, "uncond_prob": cfg.uncond_prob,
            "mixed_precision": cfg.mixed_precision, "device": device.type})
        ref_table = ReferenceTable(cache.root / "reference" / key, dpo_first, dpo_count)

        def ref_of(micro: int) -> torch.Tensor:
            with accelerator.autocast():
                return reference_mse(ref_unet, scheduler, batch_of(micro))

        ref_table.fill(ref_of, progress=progress and main)
        ref_unet = None
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def save_hook(models, weights, output_dir):  # UNet weights live in the Tango files, not twice
        while weights:
            weights.pop()

    def load_hook(models, input_dir):
        model = models.pop()
        step_tango = load_base(str(Path(input_dir).parent))
        if unet_signature(step_tango.unet) != unet_signature(accelerator.unwrap_model(model)):
            raise CuratorError(f"--resume {Path(input_dir).parent}: a checkpoint of another UNet architecture")
        accelerator.unwrap_model(model).load_state_dict(step_tango.unet.state_dict())

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)

    # 5. Resume: weights, optimizer, LR schedule, RNG; metrics.jsonl cut back to the checkpoint
    global_step = 0
    saved_world = int(saved_state.get("num_processes", 1)) if saved_state else accelerator.num_processes
    if saved_world != accelerator.num_processes:  # the batches (and the sampler's slices) would differ
        raise CuratorError(f"--resume {resume}: the run had {saved_world} process(es), this launch has "
                           f"{accelerator.num_processes}; resume with the same number")
    if resume:
        accelerator.load_state(str(Path(resume) / ACCEL_DIR))
        global_step = int(saved_state["global_step"])
        if main:
            _truncate_metrics(out / METRICS_FILE, global_step)
    if global_step >= sched.total_steps:
        raise CuratorError(f"--resume {resume}: the run already reached step {global_step} of {sched.total_steps}")

    run_row = None
    if session is not None and main:
        from trainer.runs import start_run

        run_row = start_run(session, cfg, base_model=base_path, source=pairs.source, source_hash=pairs.source_hash,
                            n_pairs=len(feats), resumed_from=str(resume) if resume else None)
    if log_with:
        accelerator.init_trackers("trainer", config={k: v for k, v in cfg.to_dict().items()})

    result = RunResult(out, global_step, n_pairs=len(feats), source_hash=pairs.source_hash,
                       run_id=run_row.id if run_row is not None else None)

    def save_checkpoint(step: int) -> Path:
        final = out / f"step-{step}"
        tmp = out / f".step-{step}.tmp"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            policy = accelerator.unwrap_model(unet)
            saved_unet, tango.unet = tango.unet, policy
            try:
                save_model(tango, tmp)
            finally:
                tango.unet = saved_unet
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp / ACCEL_DIR))
        accelerator.wait_for_everyone()
        if main:
            (tmp / CONFIG_FILE).write_text(cfg.to_json() + "\n", encoding="utf-8")
            _atomic_json({"global_step": step, "phase": sched.phase(max(step - 1, 0)), "base_model": base_path,
                          "num_processes": accelerator.num_processes,
                          "source": pairs.source, "source_hash": pairs.source_hash, "n_pairs": len(feats),
                          "unet": unet_signature(policy), "total_steps": sched.total_steps}, tmp / STATE_FILE)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            prune_checkpoints(out, cfg.checkpoints_total_limit, keep=Path(resume) if resume else None)
            if run_row is not None:
                from trainer.runs import record_checkpoint

                record_checkpoint(session, run_row, step, final)
                session.commit()
        accelerator.wait_for_everyone()
        result.checkpoints.append(final)
        return final

    # 6. The loop: accumulate over micro-batches, clip, step; log every log_every steps
    params = [p for p in unet.parameters() if p.requires_grad]
    window: dict[str, list[torch.Tensor]] = {}
    window_samples, window_start = 0, time.perf_counter()
    last_saved = global_step
    bar = tqdm(total=sched.total_steps, initial=global_step, desc="training", unit="step",
               disable=not (progress and main))
    try:
        while global_step < sched.total_steps:
            phase = sched.phase(global_step)
            step_metrics: dict[str, torch.Tensor] = {}
            for k in range(accum):
                micro = global_step * accum + k
                batch = batch_of(micro)
                sync = k == accum - 1
                ctx = accelerator.no_sync(unet) if not sync else contextlib.nullcontext()
                with ctx, accelerator.autocast():
                    if phase == "dpo":
                        ref_mse = ref_table[micro].to(device) if ref_table is not None else None
                        loss, metrics = dpo_forward(unet, ref_unet, scheduler, batch, cfg.beta, ref_mse)
                    else:
                        loss, metrics = sft_forward(unet, scheduler, batch)
                    accelerator.backward(loss / accum)
                for name, value in metrics.items():
                    step_metrics[name] = step_metrics.get(name, 0.0) + value.float() / accum
            grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"))
            lr = lr_scheduler.get_last_lr()[0]
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            window_samples += sched.global_batch
            for name, value in step_metrics.items():
                window.setdefault(name, []).append(value)
            window.setdefault("grad_norm", []).append(torch.as_tensor(grad_norm, dtype=torch.float32, device=device))
            bar.update(1)

            if global_step % cfg.log_every == 0 or global_step == sched.total_steps:
                line = _reduce_window(accelerator, window)
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                line.update({"step": global_step, "epoch": round(global_step / sched.steps_per_epoch, 4),
                             "phase": phase, "lr": lr, "samples_per_s": window_samples / elapsed})
                if main:
                    with open(out / METRICS_FILE, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(line, sort_keys=True) + "\n")
                    bar.set_postfix({k: f"{line[k]:.4g}" for k in ("loss", "rewards/accuracies") if k in line})
                if log_with:
                    accelerator.log({k: v for k, v in line.items() if isinstance(v, (int, float))}, step=global_step)
                result.last_metrics = line
                window, window_samples, window_start = {}, 0, time.perf_counter()

            if global_step % cfg.checkpoint_every == 0:
                save_checkpoint(global_step)
                last_saved = global_step
            if stop_after is not None and global_step >= stop_after:
                break
    except BaseException as exc:
        bar.close()
        if run_row is not None:
            from trainer.runs import finish_run

            session.rollback()
            interrupted = isinstance(exc, KeyboardInterrupt)
            finish_run(session, run_row, status="interrupted" if interrupted else "failed", step=global_step,
                       metrics=result.last_metrics, error=None if interrupted else str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            session.commit()
        raise
    bar.close()

    # 7. The last checkpoint (unless the loop just wrote it), the run's record
    if last_saved != global_step:
        save_checkpoint(global_step)
    result.global_step = global_step
    if run_row is not None:
        from trainer.runs import finish_run

        done = global_step >= sched.total_steps
        finish_run(session, run_row, status="finished" if done else "interrupted", step=global_step,
                   metrics=result.last_metrics)
        session.commit()
    if log_with:
        accelerator.end_training()
    return result


def _reduce_window(accelerator, window: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Mean of each metric over the steps since the last log, then across processes."""
    out: dict[str, float] = {}
    for name in sorted(window):
        value = torch.stack([v.to(accelerator.device) for v in window[name]]).mean()
        value = accelerator.reduce(value, reduction="mean") if accelerator.num_processes > 1 else value
        out[name] = float(value)
    return out


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics lines past STEP (a resumed run rewrites them)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    from curator.audio import atomic_write_bytes

    atomic_write_bytes(path, ("\n".join(keep) + ("\n" if keep else "")).encode("utf-8"))


@torch.no_grad()
def pair_terms(unet, ref_unet, scheduler, feats: Features, *, beta: float, seed: int = 0, batch_size: int = 8):
    """DPO terms of every pair at one fixed (seeded) timestep and noise per pair, no dropout:
    the implicit accuracy and loss of a trained UNet against its reference."""
    device = next(unet.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    inside, losses = [], []
    for start in range(0, len(feats), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(feats)))
        batch = make_batch(feats, idx, gen, num_timesteps=scheduler.config.num_train_timesteps, uncond_prob=0.0,
                           device=device)
        x = pair_inputs(scheduler, batch)
        mm, rm = pair_mse(unet, x), pair_mse(ref_unet, x)
        terms = dpo_loss(mm, rm, beta)
        inside.append(terms.inside)
        losses.append(-torch.nn.functional.logsigmoid(terms.inside))
    inside_all = torch.cat(inside)
    return {"accuracy": float((inside_all > 0).float().mean()), "loss": float(torch.cat(losses).mean()),
            "inside": inside_all}
