"""Step time and peak memory: this trainer vs an official-style Diffusion-DPO step.

Same tiny Tango, same batch of pairs, same optimizer, one run:

- **this trainer** (the default, `precompute_reference=true`): latents and text encodings cached
  before training (trainer/cache.py), the frozen reference's terms of every DPO micro-batch
  computed in one pre-pass (trainer/reference.py); per step one batched policy pass over
  [winners; losers]. The pre-pass is timed on its own and also reported folded into the step.
- **live reference** (`precompute_reference=false`): the same, with one batched no-grad reference
  pass per step before the policy pass.
- **official-style** (as declare-lab/tango `tango2/tango2-train.py` works): every step the STFT
  (log-mel) and the VAE encoder run on the waveforms and the frozen T5 on the prompts; then
  separate policy passes for winners and losers and separate reference passes.

Both compute the same loss (trainer/loss.py) on the same timesteps and noise. Peak memory: on
CUDA `torch.cuda.max_memory_allocated`; on CPU the peak of live bytes replayed from the torch
profiler's memory events (`profile_memory=True`: the allocations and frees torch's CPU allocator
makes during one step, per op; tracemalloc would not see tensor storage). Both include the
optimizer state, gradients and activations allocated during the step.

    python benchmarks/bench_trainer.py [--batch 4] [--seconds 2.56] [--steps 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from curator.paper import DPO_BETA
from trainer.cache import clip_samples, fit_length
from trainer.loss import diffusion_target, dpo_loss, per_sample_mse
from trainer.synthetic import PROMPTS, pair_waves


def _official_step(tango, unet, ref, waves_w, waves_l, prompts, noise, t):
    from curator.models.tango import encode_text, mel_to_latent, waveform_to_mel

    # every step: STFT + VAE on the clips, T5 on the prompts
    z_w = mel_to_latent(tango, waveform_to_mel(tango, waves_w))
    z_l = mel_to_latent(tango, waveform_to_mel(tango, waves_l))
    hidden, mask = encode_text(tango, prompts)
    sched = tango.scheduler
    out = {}
    for side, z in (("w", z_w), ("l", z_l)):  # separate policy passes
        noisy = sched.add_noise(z, noise, t)
        target = diffusion_target(sched, z, noise, t)
        out[side] = per_sample_mse(unet(noisy, t, encoder_hidden_states=hidden, encoder_attention_mask=mask).sample, target)
        with torch.no_grad():  # separate reference passes
            out["r" + side] = per_sample_mse(ref(noisy, t, encoder_hidden_states=hidden, encoder_attention_mask=mask).sample, target)
    terms = dpo_loss(torch.cat([out["w"], out["l"]]), torch.cat([out["rw"], out["rl"]]), DPO_BETA)
    return terms.loss


def _trainer_step(tango, unet, ref, z_w, z_l, hidden, mask, noise, t, ref_mse=None):
    """trainer.steps.dpo_forward on cached features: one batched policy pass, plus one batched
    reference pass unless REF_MSE (the pre-pass's terms for this batch) is given."""
    from trainer.steps import StepBatch, dpo_forward

    batch = StepBatch(z_w, z_l, hidden, mask, t, noise)
    return dpo_forward(unet, ref, tango.scheduler, batch, DPO_BETA, ref_mse)[0]


def _peak_cpu_bytes(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # allocations are attributed to the op that made them (self = minus its children's); frees
    # outside any op come as "[memory]" events. Replaying them in time order gives the live bytes
    # at op granularity (transients inside one op are netted).
    deltas = []
    for e in prof.events():
        change = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if change:
            deltas.append((e.time_range.start, change))
    live = peak = 0
    for _, change in sorted(deltas):
        live += change
        peak = max(peak, live)
    return peak


class Runner:
    """One variant: its own policy copy, reference copy and AdamW."""

    def __init__(self, make_step, tango, device, keep_reference: bool = True):
        self.unet = copy.deepcopy(tango.unet).train().requires_grad_(True)
        self.ref = copy.deepcopy(tango.unet).eval().requires_grad_(False) if keep_reference else None
        self.step = make_step(self.unet, self.ref)
        self.opt = torch.optim.AdamW(self.unet.parameters(), lr=1e-6)
        self.device = device
        self.times: list[float] = []

    def one(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.step().backward()
        self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def timed(self) -> None:
        t0 = time.perf_counter()
        self.one()
        self.times.append(time.perf_counter() - t0)

    def peak(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            self.one()
            return torch.cuda.max_memory_allocated() - base
        return _peak_cpu_bytes(self.one)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4, help="pairs per step")
    ap.add_argument("--seconds", type=float, default=2.56, help="clip length")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier timings on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from curator.models.tango import encode_text, load_tango, mel_to_latent, waveform_to_mel
    from curator.models.tiny import build_tiny_tango

    with tempfile.TemporaryDirectory() as tmp:
        tango = load_tango(build_tiny_tango(Path(tmp) / "tiny"), device=device)
    n = clip_samples(tango, args.seconds)
    pairs = [pair_waves(i, args.seconds) for i in range(args.batch)]
    waves_w = torch.from_numpy(np.stack([fit_length(w, n) for w, _ in pairs])).to(device)
    waves_l = torch.from_numpy(np.stack([fit_length(l, n) for _, l in pairs])).to(device)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.batch)]
    # cached once, as trainer/cache.py does
    z_w = mel_to_latent(tango, waveform_to_mel(tango, waves_w))
    z_l = mel_to_latent(tango, waveform_to_mel(tango, waves_l))
    hidden, mask = encode_text(tango, prompts)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(z_w.shape, generator=g).to(device)
    t = torch.randint(0, 1000, (args.batch,), generator=g).to(device)

    # the reference pre-pass (trainer/reference.py): its cost per micro-batch, timed on its own
    from trainer.steps import StepBatch, reference_mse

    ref_unet = copy.deepcopy(tango.unet).eval().requires_grad_(False)
    batch = StepBatch(z_w, z_l, hidden, mask, t, noise)
    ref_mse = reference_mse(ref_unet, tango.scheduler, batch)
    pre_times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        reference_mse(ref_unet, tango.scheduler, batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        pre_times.append(time.perf_counter() - t0)
    del ref_unet

    runners = {
        "official-style": Runner(lambda u, r: lambda: _official_step(tango, u, r, waves_w, waves_l, prompts, noise, t),
                                 tango, device),
        "live reference": Runner(lambda u, r: lambda: _trainer_step(tango, u, r, z_w, z_l, hidden, mask, noise, t),
                                 tango, device),
        "this trainer": Runner(lambda u, r: lambda: _trainer_step(tango, u, None, z_w, z_l, hidden, mask, noise, t, ref_mse),
                               tango, device, keep_reference=False),
    }
    for r in runners.values():
        r.one()  # warm-up (allocates the optimizer state)
    for _ in range(args.steps):  # interleaved, so a busy machine slows both alike
        for r in runners.values():
            r.timed()
    results = {name: (r.times, r.peak()) for name, r in runners.items()}

    print(f"device {device}, tiny Tango ({sum(p.numel() for p in tango.unet.parameters()) / 1e6:.2f} M UNet params), "
          f"batch {args.batch} pairs × {args.seconds} s clips, latents {tuple(z_w.shape[1:])}, {args.steps} timed steps "
          f"each, interleaved, {torch.get_num_threads()} CPU thread(s)")
    mem_kind = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "torch profiler memory events"
    for name, (times, peak) in results.items():
        print(f"  {name:15s} step {statistics.median(times) * 1000:8.1f} ms (median; min {min(times) * 1000:.1f})  "
              f"peak {peak / 2**20:8.1f} MiB ({mem_kind})")
    def weights(r):
        return sum(p.numel() * p.element_size() for m in (r.unet, r.ref) if m is not None for p in m.parameters())

    print("  resident UNet weights (policy + reference): " + ", ".join(
        f"{name} {weights(r) / 2**20:.1f} MiB" for name, r in runners.items()))
    pre = statistics.median(pre_times)
    print(f"  reference pre-pass {pre * 1000:8.1f} ms per micro-batch (median; done once before the loop, "
          "reused by reruns and resumes)")
    (to, po), (tl, pl), (tt, pt) = (results[k] for k in ("official-style", "live reference", "this trainer"))
    speed = statistics.median(to) / statistics.median(tt)
    print(f"  speed-up {speed:.2f}x per training step (goal >= 1.5x); peak memory ratio trainer/official "
          f"{pt / max(po, 1):.2f} (goal <= 1)")
    print(f"  counting the pre-pass in every step: {statistics.median(to) / (statistics.median(tt) + pre):.2f}x; "
          f"with a live reference pass (precompute_reference=false): {statistics.median(to) / statistics.median(tl):.2f}x, "
          f"memory {pl / max(po, 1):.2f}")

if __name__ == "__main__":
    main()
