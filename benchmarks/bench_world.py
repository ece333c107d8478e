"""Clips rendered and judged per second by the miniature world on this machine.

Usage: python benchmarks/bench_world.py [--clips N] [--duration S]
"""

from __future__ import annotations

import argparse
import time

from curator.paper import CLIP_SECONDS, GUIDANCE_SCALE, STEPS
from curator.world import make_generator, make_judge, random_captions
from curator.world.judge import detect, templates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--duration", type=float, default=CLIP_SECONDS)
    args = ap.parse_args()
    caps = random_captions(args.clips, seed=0)
    t0 = time.perf_counter()
    templates()
    t_templates = time.perf_counter() - t0
    gen = make_generator()
    t0 = time.perf_counter()
    waves = [gen.generate([c], steps=STEPS, guidance=GUIDANCE_SCALE, seeds=[i], duration_s=args.duration)[0] for i, c in enumerate(caps)]
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    for w in waves:
        detect(w)
    t_detect = time.perf_counter() - t0
    judges = [make_judge("world-judge-a"), make_judge("world-judge-b")]
    t0 = time.perf_counter()
    for j in judges:
        j.score(caps, waves)  # the second judge reuses the cached detection
    t_score = time.perf_counter() - t0
    n = len(caps)
    print(f"clips: {n} × {args.duration:g} s at 16 kHz")
    print(f"templates learned once: {t_templates:.2f} s")
    print(f"rendered: {n / t_render:.1f} clips/s ({1000 * t_render / n:.1f} ms/clip)")
    print(f"detected (judge analysis, uncached): {n / t_detect:.1f} clips/s ({1000 * t_detect / n:.1f} ms/clip)")
    print(f"scored by both judges (one shared analysis per clip): {2 * n / t_score:.0f} scores/s")
    print(f"render + judge end to end: {n / (t_render + t_detect):.1f} clips/s")


if __name__ == "__main__":
    main()
