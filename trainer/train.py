"""`trainer run`: Diffusion-DPO fine-tuning of the Tango UNet on approved pairs (arXiv 2404.09956 §4.2, §5.1).

`run_training` wires named stages, each a function of the stages before it:
1. `setup_launch`: accelerate (data parallel, mixed precision), the seed, the resume point;
2. `load_model`: the base model (the one loader) and a frozen reference copy of its UNet;
3. `prepare_data`: pairs → cached latents and text encodings, the schedule and the sampler;
4. `prepare_optimizer`: optimizer and LR schedule, the UNet handed to accelerate;
   `precompute_reference`: the reference's terms of every DPO micro-batch computed once, then the
   reference leaves memory (trainer/reference.py; off with `precompute_reference=false`);
5. `resume_from`: weights, optimizer, LR schedule and RNG restored, metrics.jsonl cut back;
6. `train_loop`: accumulate, clip, step, log; checkpoints through the writer it is given;
7. the last checkpoint and the run's record.
Checkpoints and metrics are trainer/run_folder.py's; the run's record in the store is the
`recorder`'s (trainer/runs.py), which the caller passes in, so the loop never touches a Session.

Schedule. An *epoch* is ceil(N / global batch) optimizer steps, global batch = per-device batch
× accumulation × processes. The first `sft_epochs` epochs train the plain diffusion loss on
(prompt, winner); then Diffusion-DPO (arXiv 2404.09956 §5.1). The phase is a function of the global
step only, so it is the same on every process (the official trainer flips it on the main
process alone).

Resume. A run stopped at step K and resumed from DIR/step-K sees exactly the batches and noise the
uninterrupted run saw (trainer/steps.py); the checkpoint restores UNet, optimizer, LR schedule (and
accelerate's RNG state), so the losses agree to float tolerance.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from db.errors import CuratorError
from trainer.cache import FeatureCache, build_features
from trainer.config import TrainConfig, resume_mismatch
from trainer.data import PairSet
from trainer.model import load_base, resolve_model, unet_signature
from trainer.run_folder import (
    ACCEL_DIR,
    METRICS_FILE,
    CheckpointWriter,
    MetricsLog,
    latest_checkpoint,
    read_checkpoint,
    register_state_hooks,
    tracker_for,
    truncate_metrics,
)
from trainer.runs import RunRecorder
from trainer.steps import (
    Batches,
    Features,
    Sampler,
    Schedule,
    dpo_forward,
    load_features,
    make_optimizer,
    reference_mse,
    sft_forward,
)


@dataclass
class RunResult:
    out_dir: Path
    global_step: int
    checkpoints: list[Path] = field(default_factory=list)
    last_metrics: dict[str, Any] = field(default_factory=dict)
    n_pairs: int = 0
    source_hash: str = ""
    run_id: int | None = None


# --------------------------------------------------------------------------- 1. launch


@dataclass
class Launch:
    """The accelerate side of a run: processes, device, trackers, and where it resumes from."""

    accelerator: Any
    out: Path
    resume: str | None  # DIR/step-K, or None for a fresh run
    saved_state: dict[str, Any]  # trainer_state.json of RESUME ({} for a fresh run)
    log_with: str | None  # accelerate's tracker name, None without report_to

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def device(self) -> torch.device:
        return self.accelerator.device


def setup_launch(cfg: TrainConfig, resume: str | None) -> Launch:
    """Check the required options, resolve `--resume latest`, start accelerate and seed every process."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if not cfg.out:
        raise CuratorError("--out DIR is required (checkpoints go to DIR/step-K/)")
    if not cfg.data:
        raise CuratorError("--data is required (an export folder/parquet, or 'store' with --db)")
    if resume == "latest":
        resume = str(latest_checkpoint(cfg.out))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
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
    return Launch(accelerator, out, resume, saved_state, log_with)


# --------------------------------------------------------------------------- 2. model


@dataclass
class Model:
    """The base model, the UNet being trained, its frozen reference and the noise scheduler."""

    tango: Any  # a Tango, or trainer.model's AudioLDM view: what save_model writes
    base_path: str
    unet: Any
    ref_unet: Any | None  # None once the reference terms are precomputed
    scheduler: Any


def load_model(cfg: TrainConfig, launch: Launch) -> Model:
    """The base model (the curator's one loader), checked to fit the device, with a frozen copy of
    its UNet as the Diffusion-DPO reference (arXiv 2404.09956 §4.2)."""
    from trainer.memory import check_fits

    accelerator, saved_state = launch.accelerator, launch.saved_state
    with accelerator.main_process_first():
        base_path = saved_state.get("base_model") or resolve_model(cfg.model, launch.out)
    tango = load_base(base_path)
    if saved_state and saved_state.get("unet") != unet_signature(tango.unet):
        raise CuratorError(f"--resume {launch.resume}: the checkpoint's UNet architecture differs from the base model {base_path}")
    # will it fit? one line with the estimate before any work (trainer/memory.py)
    frozen = sum(p.numel() for m in (tango.text_encoder, tango.vae, tango.vocoder) if m is not None
                 for p in m.parameters())
    on_cpu = launch.device.type == "cpu"
    check_fits(cfg, tango.unet, launch.device, frozen_params=frozen if on_cpu else 0,
               resident_bytes=4.0 * (sum(p.numel() for p in tango.unet.parameters()) + frozen) if on_cpu else 0.0)
    unet = tango.unet
    ref_unet = copy.deepcopy(unet).eval().requires_grad_(False)  # frozen reference (arXiv 2404.09956 §4.2)
    tango.text_encoder.requires_grad_(False)
    tango.vae.requires_grad_(False)
    tango.vocoder.requires_grad_(False)
    unet.requires_grad_(True).train()
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return Model(tango, base_path, unet, ref_unet, tango.scheduler)


# --------------------------------------------------------------------------- 3. data


@dataclass
class Data:
    pairs: PairSet
    cache: FeatureCache
    feats: Features
    sched: Schedule
    batches: Batches  # micro-batch m, the same in the loop and the reference pre-pass


def prepare_data(cfg: TrainConfig, launch: Launch, model: Model, pairs_loader: Callable[[], PairSet], *,
                 progress: bool) -> Data:
    """Pairs → latents and text encodings, computed once (main process first, the others read the
    cache); then the frozen parts leave the device, only the UNets train."""
    accelerator, device, tango = launch.accelerator, launch.device, model.tango
    pairs = pairs_loader().limit(cfg.max_pairs)
    if not pairs.pairs:
        raise CuratorError(f"no pairs to train on in {pairs.source}")
    saved_state = launch.saved_state
    if saved_state and saved_state.get("source_hash") != pairs.source_hash:
        raise CuratorError(f"--resume {launch.resume}: the pair set differs from the one the run started on "
                           f"(source hash {saved_state.get('source_hash', '?')[:12]} vs {pairs.source_hash[:12]})")
    cache = FeatureCache(cfg.cache_dir or launch.out / "cache", tango, duration_s=cfg.duration_s, latent=cfg.latent)
    with accelerator.main_process_first():
        tango.text_encoder.to(device)
        tango.vae.to(device)
        tango.mel_basis = tango.mel_basis.to(device)
        build_features(cache, pairs, batch_size=cfg.cache_batch_size, progress=progress and launch.main)
    tango.text_encoder.to("cpu")
    tango.vae.to("cpu")
    tango.mel_basis = tango.mel_basis.to("cpu")
    feats = load_features(cache, pairs)
    for note in pairs.notes:
        accelerator.print(note)
    sched = Schedule(len(feats), cfg.train_batch_size, cfg.gradient_accumulation_steps, accelerator.num_processes,
                     cfg.sft_epochs, cfg.dpo_epochs, cfg.max_steps)
    sampler = Sampler(len(feats), cfg.train_batch_size, accelerator.num_processes, accelerator.process_index, cfg.seed)
    batches = Batches(feats, sampler, seed=cfg.seed, rank=accelerator.process_index,
                      num_timesteps=model.scheduler.config.num_train_timesteps, uncond_prob=cfg.uncond_prob,
                      device=device)
    return Data(pairs, cache, feats, sched, batches)


# --------------------------------------------------------------------------- 4. optimizer, reference


@dataclass
class Optimization:
    unet: Any  # the UNet as accelerate prepared it
    optimizer: Any
    lr_scheduler: Any


def prepare_optimizer(cfg: TrainConfig, launch: Launch, model: Model, data: Data) -> Optimization:
    """Optimizer and LR schedule (arXiv 2404.09956 §5.1), stepped once per optimizer step; the UNet
    and optimizer handed to accelerate, the schedule registered for its checkpoints."""
    from diffusers.optimization import get_scheduler

    accelerator, device = launch.accelerator, launch.device
    model.unet.to(device)  # on the device before the optimizer is built (the fused AdamW kernel needs it there)
    optimizer = make_optimizer(cfg, [p for p in model.unet.parameters() if p.requires_grad])
    lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                                 num_training_steps=data.sched.total_steps)
    unet, optimizer = accelerator.prepare(model.unet, optimizer)
    accelerator.register_for_checkpointing(lr_scheduler)
    model.ref_unet.to(device)
    return Optimization(unet, optimizer, lr_scheduler)


def precompute_reference(cfg: TrainConfig, launch: Launch, model: Model, data: Data, *, progress: bool):
    """The reference terms of every DPO micro-batch, once, before the loop (trainer/reference.py);
    the reference UNet then leaves memory. None when off or when the run has no DPO step."""
    from trainer.reference import ReferenceTable, reference_key

    accelerator, sched, accum = launch.accelerator, data.sched, cfg.gradient_accumulation_steps
    dpo_first = sched.sft_steps * accum
    dpo_count = max(sched.total_steps - sched.sft_steps, 0) * accum
    if not (cfg.precompute_reference and dpo_count):
        return None
    ref_unet, scheduler = model.ref_unet, model.scheduler
    key = reference_key(ref_unet, scheduler, parts={
        "source_hash": data.pairs.source_hash, "n_pairs": len(data.feats), "latents": data.cache.latent_dir.name,
        "texts": data.cache.text_dir.name, "seed": cfg.seed, "batch": cfg.train_batch_size, "accum": accum,
        "world": accelerator.num_processes, "rank": accelerator.process_index, "uncond_prob": cfg.uncond_prob,
        "mixed_precision": cfg.mixed_precision, "device": launch.device.type})
    ref_table = ReferenceTable(data.cache.root / "reference" / key, dpo_first, dpo_count)

    def ref_of(micro: int) -> torch.Tensor:
        with accelerator.autocast():
            return reference_mse(ref_unet, scheduler, data.batches(micro))

    ref_table.fill(ref_of, progress=progress and launch.main)
    model.ref_unet = None
    if launch.device.type == "cuda":
        torch.cuda.empty_cache()
    return ref_table


# --------------------------------------------------------------------------- 5. resume


def resume_from(launch: Launch, sched: Schedule) -> int:
    """The global step the loop starts at: 0, or the checkpoint's after restoring weights, optimizer,
    LR schedule and RNG (metrics.jsonl cut back to it)."""
    accelerator, resume, saved_state = launch.accelerator, launch.resume, launch.saved_state
    global_step = 0
    saved_world = int(saved_state.get("num_processes", 1)) if saved_state else accelerator.num_processes
    if saved_world != accelerator.num_processes:  # the batches (and the sampler's slices) would differ
        raise CuratorError(f"--resume {resume}: the run had {saved_world} process(es), this launch has "
                           f"{accelerator.num_processes}; resume with the same number")
    if resume:
        accelerator.load_state(str(Path(resume) / ACCEL_DIR))
        global_step = int(saved_state["global_step"])
        if launch.main:
            truncate_metrics(launch.out / METRICS_FILE, global_step)
    if global_step >= sched.total_steps:
        raise CuratorError(f"--resume {resume}: the run already reached step {global_step} of {sched.total_steps}")
    return global_step


# --------------------------------------------------------------------------- 6. the loop


@dataclass
class LoopState:
    """Where the loop is: read by the caller after it returns or raises."""

    global_step: int
    last_saved: int
    last_metrics: dict[str, Any] = field(default_factory=dict)


def train_loop(cfg: TrainConfig, launch: Launch, model: Model, data: Data, opt: Optimization, state: LoopState, *,
               ref_table, checkpoint: Callable[[int], Path], metrics: MetricsLog, stop_after: int | None,
               progress: bool) -> None:
    """Optimizer steps from state.global_step to the schedule's end (or STOP_AFTER): accumulate over
    micro-batches, clip, step; a metrics line every log_every steps, CHECKPOINT(step) every
    checkpoint_every steps."""
    from tqdm.auto import tqdm

    accelerator, device, sched = launch.accelerator, launch.device, data.sched
    unet, optimizer, lr_scheduler, scheduler = opt.unet, opt.optimizer, opt.lr_scheduler, model.scheduler
    accum = cfg.gradient_accumulation_steps
    params = [p for p in unet.parameters() if p.requires_grad]
    window: dict[str, list[torch.Tensor]] = {}
    window_samples, window_start = 0, time.perf_counter()
    bar = tqdm(total=sched.total_steps, initial=state.global_step, desc="training", unit="step",
               disable=not (progress and launch.main))
    try:
        while state.global_step < sched.total_steps:
            phase = sched.phase(state.global_step)
            step_metrics: dict[str, torch.Tensor] = {}
            for k in range(accum):
                micro = state.global_step * accum + k
                batch = data.batches(micro)
                sync = k == accum - 1
                ctx = accelerator.no_sync(unet) if not sync else contextlib.nullcontext()
                with ctx, accelerator.autocast():
                    if phase == "dpo":
                        ref_mse = ref_table[micro].to(device) if ref_table is not None else None
                        loss, values = dpo_forward(unet, model.ref_unet, scheduler, batch, cfg.beta, ref_mse)
                    else:
                        loss, values = sft_forward(unet, scheduler, batch)
                    accelerator.backward(loss / accum)
                for name, value in values.items():
                    step_metrics[name] = step_metrics.get(name, 0.0) + value.float() / accum
            grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"))
            lr = lr_scheduler.get_last_lr()[0]
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            step = state.global_step
            window_samples += sched.global_batch
            for name, value in step_metrics.items():
                window.setdefault(name, []).append(value)
            window.setdefault("grad_norm", []).append(torch.as_tensor(grad_norm, dtype=torch.float32, device=device))
            bar.update(1)

            if step % cfg.log_every == 0 or step == sched.total_steps:
                line = _reduce_window(accelerator, window)
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                line.update({"step": step, "epoch": round(step / sched.steps_per_epoch, 4),
                             "phase": phase, "lr": lr, "samples_per_s": window_samples / elapsed})
                metrics.write(line, step)
                if launch.main:
                    bar.set_postfix({k: f"{line[k]:.4g}" for k in ("loss", "rewards/accuracies") if k in line})
                state.last_metrics = line
                window, window_samples, window_start = {}, 0, time.perf_counter()

            if step % cfg.checkpoint_every == 0:
                checkpoint(step)
                state.last_saved = step
            if stop_after is not None and step >= stop_after:
                break
    finally:
        bar.close()


def _reduce_window(accelerator, window: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Mean of each metric over the steps since the last log, then across processes."""
    out: dict[str, float] = {}
    for name in sorted(window):
        value = torch.stack([v.to(accelerator.device) for v in window[name]]).mean()
        value = accelerator.reduce(value, reduction="mean") if accelerator.num_processes > 1 else value
        out[name] = float(value)
    return out


# --------------------------------------------------------------------------- the run


def run_training(cfg: TrainConfig, pairs_loader: Callable[[], PairSet], *, resume: str | None = None,
                 recorder: RunRecorder | None = None, progress: bool = True,
                 stop_after: int | None = None) -> RunResult:
    """Train per CFG on the pairs PAIRS_LOADER returns. RESUME: DIR/step-K, or "latest" (the
    highest K in cfg.out). RECORDER (optional, e.g. trainer.runs.StoreRecorder over the caller's
    Session): told on the main process when the run starts, at each checkpoint, and when it ends or
    fails. STOP_AFTER: stop (with a checkpoint) after that many optimizer steps, as an interruption
    would (tests)."""
    launch = setup_launch(cfg, resume)
    accelerator, out = launch.accelerator, launch.out
    model = load_model(cfg, launch)
    data = prepare_data(cfg, launch, model, pairs_loader, progress=progress)
    opt = prepare_optimizer(cfg, launch, model, data)
    ref_table = precompute_reference(cfg, launch, model, data, progress=progress)
    register_state_hooks(accelerator)
    global_step = resume_from(launch, data.sched)

    recorder = recorder if launch.main else None  # one record per run, from the main process
    run_id = None
    if recorder is not None:
        run_id = recorder.start(cfg, base_model=model.base_path, source=data.pairs.source,
                                source_hash=data.pairs.source_hash, n_pairs=len(data.feats),
                                resumed_from=str(launch.resume) if launch.resume else None)
    if launch.log_with:
        accelerator.init_trackers("trainer", config={k: v for k, v in cfg.to_dict().items()})
    result = RunResult(out, global_step, n_pairs=len(data.feats), source_hash=data.pairs.source_hash, run_id=run_id)

    def trainer_state(step: int) -> dict[str, Any]:
        return {"global_step": step, "phase": data.sched.phase(max(step - 1, 0)), "base_model": model.base_path,
                "num_processes": accelerator.num_processes, "source": data.pairs.source,
                "source_hash": data.pairs.source_hash, "n_pairs": len(data.feats),
                "total_steps": data.sched.total_steps}

    checkpoint = CheckpointWriter(accelerator, cfg, out, tango=model.tango, unet=opt.unet, state=trainer_state,
                                  keep=Path(launch.resume) if launch.resume else None,
                                  on_saved=recorder.checkpoint if recorder is not None else None)
    result.checkpoints = checkpoint.written
    state = LoopState(global_step, last_saved=global_step)
    try:
        train_loop(cfg, launch, model, data, opt, state, ref_table=ref_table, checkpoint=checkpoint,
                   metrics=MetricsLog(accelerator, out, trackers=bool(launch.log_with)), stop_after=stop_after,
                   progress=progress)
    except BaseException as exc:
        if recorder is not None:
            interrupted = isinstance(exc, KeyboardInterrupt)
            recorder.failed(step=state.global_step, metrics=state.last_metrics, interrupted=interrupted,
                            error=None if interrupted else str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise

    # 7. The last checkpoint (unless the loop just wrote it), the run's record
    if state.last_saved != state.global_step:
        checkpoint(state.global_step)
    result.global_step = state.global_step
    result.last_metrics = state.last_metrics
    if recorder is not None:
        done = state.global_step >= data.sched.total_steps
        recorder.finish(status="finished" if done else "interrupted", step=state.global_step,
                        metrics=result.last_metrics)
    if launch.log_with:
        accelerator.end_training()
    return result
