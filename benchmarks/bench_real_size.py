"""Tango at its true size (866 M-parameter UNet, FLAN-T5-Large-shaped encoder, AudioLDM VAE and
HiFi-GAN; random weights, curator/models/real_size.py): one Diffusion-DPO training step and one
Strategy 1.1 generation batch, this trainer vs the official-style step, and what each scale
option costs.

The model is built once, saved in the declare-lab layout and loaded by every measurement through
`load_tango` (the one loader). Each variant runs in its own subprocess (its memory is its own,
and one variant cannot leave state for the next); variants run one after the other.

Training step (same pairs, timesteps and noise in every variant; the loss is trainer/loss.py):

- **this trainer**: cached latents and text encodings, the reference's terms precomputed
  (`precompute_reference`, the default): one batched policy pass over [winners; losers].
- **official-style** (declare-lab/tango `tango2/tango2-train.py`, see docs/paper.md §4.2): every step the
  STFT and the VAE encoder on the waveforms and the frozen T5 on the prompts, separate policy
  passes for winners and losers, separate fp32 reference passes.
- options on top of this trainer: a live batched reference pass (fp32 or bf16), bf16 autocast
  with fp32 master weights, gradient checkpointing, eager attention instead of PyTorch SDPA (the
  diffusers default), channels-last, optionally torch.compile.

The step variants update the weights with plain SGD (no optimizer state), so every variant fits
in the memory of a shared CPU box and the variants differ only where the options act (forward
and backward); the optimizers (torch AdamW foreach and fused, bitsandbytes 8-bit AdamW) are
measured apart on a slice of the UNet's parameters, scaled to the whole UNet, and the full step
with fused AdamW is the sum (stated as such).

Reported per variant: median step time, peak resident memory during the timed steps (RSS
sampled every 10 ms by a thread; on CUDA torch.cuda.max_memory_allocated), parameters, and the
FLOPs of one step counted with torch.utils.flop_counter.FlopCounterMode on the meta device (at
the measured shape, and at the paper's: 4 pairs × 10.24 s). MFU (achieved FLOP/s ÷ the device's
peak for the dtype) is printed only on a GPU.

Generation (Strategy 1.1: one caption, 4 clips with 5, 25, 50 and 100 steps, guidance 3, 10.24 s):
the official sampler (curator.models.tango.generate) run with 1 and with 3 steps at full length;
the per-step and fixed costs they give are scaled to the 180 steps of the batch (stated).

    nice -n 10 python benchmarks/bench_real_size.py [--pairs 1] [--seconds 2.56] [--steps 2]
        [--variants ...] [--budget-gb 14] [--folder /tmp/real-size-tango]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from curator.paper import CLIP_SECONDS, DPO_BETA, GUIDANCE_SCALE, HOP_LENGTH, SAMPLE_RATE, STEPS_1_1  # noqa: E402

STEP_VARIANTS = ("official-style", "this trainer", "live reference", "live reference bf16", "bf16 autocast",
                 "gradient checkpointing", "eager attention", "channels-last")
OPTIONAL_VARIANTS = ("torch.compile",)
OPTIMIZERS = ("adamw foreach", "adamw fused", "adamw8bit")
STRATEGY_11_STEPS = STEPS_1_1
PEAK_FLOPS = {"bf16": {"H100": 989e12, "H200": 989e12, "A100": 312e12}}  # dense tensor-core peak


# --------------------------------------------------------------------------- measuring


class RssPeak:
    """The peak resident set size while the block runs (sampled by a thread every 10 ms)."""

    def __init__(self):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _inputs(tango, pairs: int, seconds: float, device):
    """Waveforms, prompts, cached latents/encodings, noise and timesteps of one micro-batch."""
    import numpy as np

    from curator.models.tango import encode_text, mel_to_latent, waveform_to_mel
    from trainer.cache import clip_samples, fit_length
    from trainer.synthetic import PROMPTS, pair_waves

    n = clip_samples(tango, seconds)
    waves = [pair_waves(i, seconds) for i in range(pairs)]
    w = torch.from_numpy(np.stack([fit_length(a, n) for a, _ in waves])).to(device)
    lo = torch.from_numpy(np.stack([fit_length(b, n) for _, b in waves])).to(device)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(pairs)]
    with torch.no_grad():
        z_w = mel_to_latent(tango, waveform_to_mel(tango, w))
        z_l = mel_to_latent(tango, waveform_to_mel(tango, lo))
        hidden, mask = encode_text(tango, prompts)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(z_w.shape, generator=g).to(device)
    t = torch.randint(0, 1000, (pairs,), generator=g).to(device)
    return dict(waves_w=w, waves_l=lo, prompts=prompts, z_w=z_w, z_l=z_l, hidden=hidden, mask=mask, noise=noise, t=t)


def _official_loss(tango, unet, ref, x):
    from benchmarks.bench_trainer import _official_step

    return _official_step(tango, unet, ref, x["waves_w"], x["waves_l"], x["prompts"], x["noise"], x["t"])


def _trainer_loss(tango, unet, ref, x, ref_mse=None, ref_autocast=None):
    from trainer.steps import StepBatch, dpo_forward, reference_mse

    batch = StepBatch(x["z_w"], x["z_l"], x["hidden"], x["mask"], x["t"], x["noise"])
    if ref_mse is None and ref_autocast is not None:  # a half-precision reference pass
        with torch.autocast(x["z_w"].device.type, dtype=ref_autocast):
            ref_mse = reference_mse(ref, tango.scheduler, batch).float()
    return dpo_forward(unet, ref, tango.scheduler, batch, DPO_BETA, ref_mse)[0]


def _release() -> None:
    """Return freed memory to the OS (so the resident size measures what is live)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def child_step(variant: str, folder: str, pairs: int, seconds: float, steps: int, warmup: int = 1) -> dict:
    """One training-step variant, in this (sub)process."""
    from curator.models.tango import load_tango
    from trainer.steps import StepBatch, reference_mse

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tango = load_tango(folder, device=device)
    x = _inputs(tango, pairs, seconds, device)
    official = variant == "official-style"
    if not official:  # only the UNets stay (trainer.train moves the frozen parts off the device)
        tango.text_encoder = tango.vae = tango.vocoder = None
    unet = tango.unet.train().requires_grad_(True)
    ref, ref_mse, ref_autocast, autocast, prepass = None, None, None, None, None
    # the load gauge: one no-grad pass of the plain UNet on this batch, the same work in every
    # variant (on a shared machine, the step times are compared after scaling by it)
    batch = StepBatch(x["z_w"], x["z_l"], x["hidden"], x["mask"], x["t"], x["noise"])
    t0 = time.perf_counter()
    gauge_mse = reference_mse(unet, tango.scheduler, batch)
    gauge = time.perf_counter() - t0
    if variant in ("official-style", "live reference"):
        ref = copy.deepcopy(unet).eval().requires_grad_(False)
    elif variant == "live reference bf16":
        ref = copy.deepcopy(unet).eval().requires_grad_(False).to(torch.bfloat16)
        ref_autocast = torch.bfloat16
    else:  # the pre-pass: at step 0 the policy is the reference, so the gauge pass gave its terms
        ref_mse, prepass = gauge_mse, gauge
    if variant == "bf16 autocast":
        autocast = torch.bfloat16
    if variant == "gradient checkpointing":
        unet.enable_gradient_checkpointing()
    if variant == "eager attention":
        from diffusers.models.attention_processor import AttnProcessor

        unet.set_attn_processor(AttnProcessor())
    model = unet
    if variant == "channels-last":
        unet.to(memory_format=torch.channels_last)
        x = {k: (v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4 else v)
             for k, v in x.items()}
    if variant == "torch.compile":
        model = torch.compile(unet)
    _release()
    opt = torch.optim.SGD(unet.parameters(), lr=1e-6)

    def one():
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast(device.type, dtype=autocast) if autocast else torch.autocast(device.type, enabled=False)
        with ctx:
            loss = (_official_loss(tango, model, ref, x) if official
                    else _trainer_loss(tango, model, ref, x, ref_mse, ref_autocast))
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return float(loss)

    t0 = time.perf_counter()
    for _ in range(warmup):  # allocates the optimizer state (and compiles, for torch.compile)
        one()
    warmup_s = time.perf_counter() - t0
    before = rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with RssPeak() as peak:
        for _ in range(steps):
            t0 = time.perf_counter()
            loss = one()
            times.append(time.perf_counter() - t0)
    out = {"variant": variant, "step_s": statistics.median(times), "times": times, "warmup_s": warmup_s, "warmup_steps": warmup,
           "peak_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else peak.peak,
           "resident_before_bytes": before, "loss": loss, "prepass_s": prepass, "gauge_s": gauge, "device": device.type,
           "unet_params": sum(p.numel() for p in unet.parameters()),
           "latent": list(x["z_w"].shape[1:]), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    return out


def child_optim(kind: str, folder: str, slice_params: int, steps: int) -> dict:
    """One AdamW step over the first SLICE_PARAMS parameters of the real UNet (their shapes, random
    values): time and state bytes."""
    from curator.models.real_size import real_size_configs
    from curator.models.tango.parts import unet_from_config

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with torch.device("meta"):
        shapes = [p.shape for p in unet_from_config(real_size_configs()["unet"]).parameters()]
    params, n = [], 0
    for shape in shapes:
        if n >= slice_params:
            break
        params.append(torch.nn.Parameter(torch.randn(shape, device=device) * 0.02))
        n += shapes[len(params) - 1].numel()
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    if kind == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            return {"optimizer": kind, "error": "bitsandbytes is not installed (the lowmem extra)"}
        opt = bnb.optim.AdamW8bit(params, lr=1e-6)
    else:
        opt = torch.optim.AdamW(params, lr=1e-6, foreach=kind == "adamw foreach" or None,
                                fused=True if kind == "adamw fused" else None)
    try:
        opt.step()
    except Exception as exc:  # noqa: BLE001 - report what this build cannot run
        return {"optimizer": kind, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
    return {"optimizer": kind, "params": n, "step_s": statistics.median(times), "state_bytes": state}


def child_generate(folder: str, seconds: float, runs: tuple[int, int] = (1, 3)) -> dict:
    """The official sampler on one caption (guidance 3) with RUNS[0] and RUNS[1] steps."""
    from curator.models.tango import generate, load_tango

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tango = load_tango(folder, device=device)
    out = {}
    with RssPeak() as peak:
        for steps in runs:
            t0 = time.perf_counter()
            generate(tango, ["a dog barks while a car passes"], steps=steps, guidance=GUIDANCE_SCALE, seeds=[0], duration_s=seconds)
            out[steps] = time.perf_counter() - t0
    a, b = runs
    per_step = (out[b] - out[a]) / (b - a)
    return {"per_step_s": per_step, "fixed_s": out[a] - a * per_step, "runs": {str(k): v for k, v in out.items()},
            "peak_bytes": peak.peak, "seconds": seconds}


# --------------------------------------------------------------------------- FLOPs (meta device)


def count_flops(seconds: float, pairs: int) -> dict:
    """FLOPs of one step of each side, and of one guided generation step for a 4-clip batch,
    counted on the meta device at PAIRS × SECONDS (no memory, no compute)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import T5Config, T5EncoderModel

    from curator.models.real_size import real_size_configs
    from curator.models.tango.config import VaeConfig
    from curator.models.tango.parts import unet_from_config, vae_from_config

    cfgs = real_size_configs()
    frames = int(round(seconds * SAMPLE_RATE / HOP_LENGTH)) // 4 * 4  # mel frames, a multiple of the VAE's 4
    with torch.device("meta"):
        unet = unet_from_config(cfgs["unet"])
        t5 = T5EncoderModel(T5Config(**cfgs["text_encoder"]))
        vae = vae_from_config(VaeConfig(**cfgs["vae"]), "vae")
        z = torch.randn(2 * pairs, 8, frames // 4, 16)
        t = torch.zeros(2 * pairs, dtype=torch.long)
        h = torch.randn(2 * pairs, 32, 1024)
        ids = torch.zeros(pairs, 32, dtype=torch.long)
        mel = torch.randn(pairs, 1, frames, 64)

    def flops(fn) -> int:
        with FlopCounterMode(display=False) as fc:
            fn()
        return fc.get_total_flops()

    def policy():  # forward + backward of one batched policy pass
        unet(z, t, encoder_hidden_states=h).sample.float().pow(2).mean().backward()

    def ref_pass():
        with torch.no_grad():
            unet(z, t, encoder_hidden_states=h)

    def per_step_encoders():  # the official step: VAE encoder on both clips, T5 on the prompts
        with torch.no_grad():
            vae.encode(mel)
            vae.encode(mel)
            t5(input_ids=ids)

    f_policy, f_ref, f_enc = flops(policy), flops(ref_pass), flops(per_step_encoders)
    with torch.device("meta"):
        zg, tg, hg = torch.randn(8, 8, frames // 4, 16), torch.zeros(8, dtype=torch.long), torch.randn(8, 32, 1024)
    f_gen = flops(lambda: unet(zg, tg, encoder_hidden_states=hg))  # 4 clips × [uncond; cond]
    return {"trainer": f_policy, "official": f_policy + f_ref + f_enc, "reference_pass": f_ref,
            "generation_step_4_clips": f_gen}


# --------------------------------------------------------------------------- the parent


def _run_child(args_list: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, *args_list]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {res.returncode}: {tail[:200]}"}
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=0, help="pairs per micro-batch (default: 4 on a GPU, 1 on CPU)")
    ap.add_argument("--seconds", type=float, default=0.0, help="clip length (default: 10.24 on a GPU, 2.56 on CPU)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    ap.add_argument("--gen-seconds", type=float, default=CLIP_SECONDS, help="clip length of the generation measurement")
    ap.add_argument("--gen-steps", default="1,3", help="the two step counts the generation cost is fitted from")
    ap.add_argument("--variants", default=",".join(STEP_VARIANTS + OPTIMIZERS + ("generation",)),
                    help=f"comma-separated; also {', '.join(OPTIONAL_VARIANTS)}")
    ap.add_argument("--folder", default="/tmp/real-size-tango", help="where the real-size model is built (reused)")
    ap.add_argument("--budget-gb", type=float, default=14.0, help="skip a variant whose estimate exceeds this")
    ap.add_argument("--optim-slice", type=int, default=150_000_000, help="parameters in the optimizer measurement")
    ap.add_argument("--timeout", type=float, default=1500.0, help="seconds per variant")
    ap.add_argument("--report-from", nargs="+", metavar="LOG",
                    help="print the table from the result lines of earlier runs' output (later lines win)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    gpu = torch.cuda.is_available()
    pairs = args.pairs or (4 if gpu else 1)
    seconds = args.seconds or (CLIP_SECONDS if gpu else 2.56)

    if args.child:  # one measurement, printed as one JSON line
        kind, _, name = args.child.partition(":")
        if kind == "step":
            print(json.dumps(child_step(name, args.folder, pairs, seconds, args.steps, args.warmup)))
        elif kind == "optim":
            print(json.dumps(child_optim(name, args.folder, args.optim_slice, max(args.steps, 3))))
        else:
            a, b = (int(s) for s in args.gen_steps.split(","))
            print(json.dumps(child_generate(args.folder, args.gen_seconds, (a, b))))
        return

    from curator.models.real_size import build_real_size_tango, parameter_counts

    counts = parameter_counts()
    if args.report_from:  # the lines "  VARIANT: {json}" this script printed
        results = {}
        for log in args.report_from:
            for line in Path(log).read_text(encoding="utf-8").splitlines():
                name, sep, rest = line.strip().partition(": {")
                if sep and name in STEP_VARIANTS + OPTIONAL_VARIANTS + OPTIMIZERS + ("generation",):
                    results[name] = json.loads("{" + rest)
        report(results, counts, count_flops(seconds, pairs), count_flops(CLIP_SECONDS, 4), pairs, seconds, gpu)
        return
    folder = Path(args.folder)
    if not (folder / "main_config.json").is_file():
        print(f"building the real-size Tango in {folder} (random weights, declare-lab layout) ...", flush=True)
        t0 = time.perf_counter()
        build_real_size_tango(folder)
        print(f"  built and saved in {time.perf_counter() - t0:.0f} s", flush=True)
    print("parameters: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in counts.items()))

    from trainer.memory import estimate_train_memory

    variants = [v for v in args.variants.split(",") if v]
    flops_cpu, flops_paper = count_flops(seconds, pairs), count_flops(CLIP_SECONDS, 4)
    results: dict[str, dict] = {}
    for v in variants:
        if v in STEP_VARIANTS + OPTIONAL_VARIANTS:
            est = estimate_train_memory(counts["unet"], _variant_cfg(v), pairs=pairs, seconds=seconds,
                                        frozen_params=counts["text_encoder"] + counts["vae"] + counts["vocoder"])
            if est.total > args.budget_gb * 2**30:
                results[v] = {"error": f"skipped: estimated {est.line()} > budget {args.budget_gb:g} GiB"}
            else:
                results[v] = _run_child(["--child", f"step:{v}", "--folder", str(folder), "--pairs", str(pairs),
                                         "--seconds", str(seconds), "--steps", str(args.steps),
                                         "--warmup", str(args.warmup)], args.timeout)
                results[v]["estimate_bytes"] = est.total
        elif v in OPTIMIZERS:
            results[v] = _run_child(["--child", f"optim:{v}", "--folder", str(folder), "--optim-slice",
                                     str(args.optim_slice), "--steps", str(args.steps)], args.timeout)
        elif v == "generation":
            results[v] = _run_child(["--child", "gen", "--folder", str(folder), "--gen-seconds",
                                     str(args.gen_seconds), "--gen-steps", args.gen_steps], args.timeout)
        else:
            raise SystemExit(f"unknown variant {v!r}")
        print(f"  {v}: {json.dumps(results[v])}", flush=True)
    report(results, counts, flops_cpu, flops_paper, pairs, seconds, gpu)


def _variant_cfg(variant: str):
    from trainer.config import TrainConfig

    return TrainConfig(optimizer="adafactor", precompute_reference=variant not in ("official-style", "live reference",
                                                                                   "live reference bf16"),
                       mixed_precision="bf16" if variant == "bf16 autocast" else "no",
                       gradient_checkpointing=variant == "gradient checkpointing")


def report(results, counts, flops_cpu, flops_paper, pairs, seconds, gpu) -> None:
    first = next((r for r in results.values() if "device" in r), {})
    where = first.get("gpu") or f"CPU ({first.get('threads', torch.get_num_threads())} threads)"
    print(f"\nreal-size Tango: UNet {counts['unet'] / 1e6:.1f} M, T5 encoder {counts['text_encoder'] / 1e6:.1f} M, "
          f"VAE {counts['vae'] / 1e6:.1f} M, HiFi-GAN {counts['vocoder'] / 1e6:.1f} M; {where}; "
          f"micro-batch {pairs} pair(s) × {seconds} s (latent {first.get('latent')}); weights updated by SGD "
          "(the optimizers are measured apart, below)")
    print(f"FLOPs per step (counted): this trainer {flops_cpu['trainer'] / 1e12:.2f} T, official-style "
          f"{flops_cpu['official'] / 1e12:.2f} T at this shape; at the paper's 4 pairs × 10.24 s: "
          f"{flops_paper['trainer'] / 1e12:.1f} T vs {flops_paper['official'] / 1e12:.1f} T")
    base = results.get("this trainer", {})
    off = results.get("official-style", {})
    # the load gauge (the same no-grad UNet pass in every variant): times scaled to the least-loaded run
    gauges = {n: r.get("gauge_s") or r.get("prepass_s") for n, r in results.items() if "step_s" in r and "variant" in r}
    g0 = min((g for g in gauges.values() if g), default=None)

    def norm(name):
        r, g = results[name], gauges.get(name)
        return r["step_s"] * g0 / g if g and g0 else float("nan")

    fused = results.get("adamw fused", {})
    adamw_s = fused["step_s"] * counts["unet"] / fused["params"] if "step_s" in fused else None
    print(f"{'variant':26s}{'step':>10s}{'load-scaled':>12s}{'vs official':>13s}{'peak mem':>12s}{'estimate':>11s}  note")
    for name, r in results.items():
        if "step_s" not in r or "variant" not in r:
            continue
        both = gauges.get(name) and gauges.get("official-style")
        ratio = (norm("official-style") / norm(name) if both else off["step_s"] / r["step_s"]) if "step_s" in off \
            else float("nan")
        note = "" if both or "step_s" not in off else "ratio of raw times (no load gauge on one side); "
        if r.get("prepass_s"):
            note += f"reference pre-pass {r['prepass_s']:.1f} s per micro-batch, once"
        if name == "torch.compile":
            note = f"first step (compile) {r['warmup_s']:.0f} s"
        fl = flops_cpu["official" if name == "official-style" else "trainer"]
        if name == "gradient checkpointing":
            fl += flops_cpu["reference_pass"] // 2  # one more policy forward
        if gpu and "gpu" in r:
            peak = next((v for k, v in PEAK_FLOPS["bf16"].items() if k in r["gpu"]), None)
            if peak:
                note += f" MFU {fl / r['step_s'] / peak:.1%} (bf16 peak)"
        else:
            note += f"; {fl / r['step_s'] / 1e9:.0f} GFLOP/s"
        if adamw_s is not None:
            note += f"; with fused AdamW ≈ {r['step_s'] + adamw_s:.1f} s"
        print(f"{name:26s}{r['step_s']:>9.1f}s{norm(name):>11.1f}s{ratio:>12.2f}x{r['peak_bytes'] / 2**30:>10.2f}Gi"
              f"{r.get('estimate_bytes', 0) / 2**30:>9.2f}Gi  {note.strip()}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:26s}  not measured: {r['error']}")
    for name in OPTIMIZERS:
        r = results.get(name)
        if r and "step_s" in r:
            scale = counts["unet"] / r["params"]
            print(f"{name:26s}{r['step_s'] * scale:>9.2f}s  optimizer step for the whole UNet (measured on "
                  f"{r['params'] / 1e6:.0f} M params, scaled), state {r['state_bytes'] / r['params']:.1f} B/param = "
                  f"{r['state_bytes'] * scale / 2**30:.2f} GiB")
    g = results.get("generation")
    if g and "per_step_s" in g:
        total_steps = sum(STRATEGY_11_STEPS)
        est = total_steps * g["per_step_s"] + len(STRATEGY_11_STEPS) * g["fixed_s"]
        print(f"generation, 1 caption × {g['seconds']:g} s, guidance 3: {g['per_step_s']:.1f} s per denoising step, "
              f"{g['fixed_s']:.1f} s T5 + VAE decode + HiFi-GAN; Strategy 1.1's batch (4 clips, "
              f"{'/'.join(map(str, STRATEGY_11_STEPS))} steps = {total_steps} steps) ≈ {est / 60:.1f} min "
              f"(scaled from runs of {' and '.join(g['runs'])} steps at {g['seconds']:g} s; linear in steps, not in length); peak {g['peak_bytes'] / 2**30:.2f} GiB; "
              f"{flops_paper['generation_step_4_clips'] / 4 / 1e12:.2f} TFLOP per guided step per clip")
    if "step_s" in base and "step_s" in off:
        print(f"load gauge (one no-grad UNet pass, the same in every variant): "
              + ", ".join(f"{n} {g:.1f} s" for n, g in gauges.items() if g))
        scaled = norm("official-style") / norm("this trainer")
        print(f"this trainer vs official-style: {off['step_s'] / base['step_s']:.2f}x faster per step (raw)"
              + (f", {scaled:.2f}x load-scaled" if scaled == scaled else "") + ", "
              f"peak memory {base['peak_bytes'] / off['peak_bytes']:.2f}x")
    if not gpu:
        print("MFU: not measured (no GPU here); the GPU goals (>= 2x the official step, MFU >= 40 % in bf16, "
              "4 pairs in <= 40 GB) need a GPU run of this script")


if __name__ == "__main__":
    main()
