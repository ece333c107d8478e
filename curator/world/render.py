"""Procedural audio for the miniature world, and the `world` generator backend.

Each event has its own synthesized signature (numpy/scipy only):
bell = decaying inharmonic partials; dog = short falling-pitch harmonic bursts through a formant
band; siren = fast sinusoidal FM sweep; rain = band-passed noise with droplet clicks; car horn =
two-tone square-ish chord; footsteps = periodic low thumps; bird = fast upward FM chirps;
engine = low harmonic hum with amplitude modulation; whistle = pure high sine with vibrato;
knocking = sharp clicks exciting a damped wooden resonance.

`render(scene, seed, defect=...)` lays the scene's groups out on a timeline (seeded timing
jitter, pitch and level) and returns the audio with the ground truth (which a test may compare
against; the judge never sees it). `WorldGenerator` is the `Generator` backend: the number of
denoising steps sets the render quality (background noise) and the chance of one of the failure
modes Tango 2's strategies rely on — a missing event, a swapped order, an extra event, noise,
or a wrong count (one repeat of a counted event dropped or added).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy.signal import butter, sosfilt

from curator.paper import CLIP_SECONDS as DEFAULT_DURATION_S
from curator.paper import SAMPLE_RATE
from curator.world.grammar import EVENTS, MAX_COUNT, CaptionError, Mention, Scene, parse_caption

MIN_DURATION_S = 1.0
DEFECTS = ("missing", "swap", "extra", "noise", "count")  # new kinds go last: the index seeds the render
EVENT_RMS = 0.08  # every unit is normalised to this RMS before its level modifier
LEVEL_DB = {"loud": 4.0, None: 0.0, "soft": -7.0}
DISTANT_DB = -5.0
GROUP_GAP_S = 0.45  # silence between successive groups (before jitter)


@dataclass(frozen=True)
class RenderedEvent:
    """Ground truth for one event of a render: where it sounds."""

    event: str
    onset_s: float
    offset_s: float
    group: int  # position of its group on the timeline
    count: int | None = None  # repeats of a discrete event (None: a continuous texture)


@dataclass(frozen=True)
class Render:
    wave: np.ndarray  # float32 mono at SAMPLE_RATE
    events: tuple[RenderedEvent, ...]
    defect: str | None
    scene: Scene  # what was actually rendered (after the defect)


# ---------------------------------------------------------------------------------------------
# Event signatures: each returns (unit waveform, active length in seconds).

def _t(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


@lru_cache(maxsize=16)
def _sos(kind: str, lo: float, hi: float = 0.0, order: int = 4):
    if kind == "band":
        return butter(order, [lo, hi], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return butter(order, lo, btype=kind, fs=SAMPLE_RATE, output="sos")


def _env(n: int, attack: float, release: float) -> np.ndarray:
    e = np.ones(n)
    a, r = max(1, int(attack * SAMPLE_RATE)), max(1, int(release * SAMPLE_RATE))
    e[:a] *= np.linspace(0, 1, a)
    e[-r:] *= np.linspace(1, 0, r)
    return e


def _bell(rng, pitch):
    n = int(0.9 * SAMPLE_RATE)
    t = _t(n)
    f0 = 700.0 * pitch
    out = np.zeros(n)
    for ratio, amp, tau in ((1.0, 1.0, 0.5), (2.32, 0.7, 0.42), (4.25, 0.45, 0.36), (6.63, 0.3, 0.3)):
        out += amp * np.exp(-t / tau) * np.sin(2 * np.pi * f0 * ratio * t + rng.uniform(0, 6.28))
    out[:40] *= np.linspace(0, 1, 40)
    return out, 0.7


def _dog(rng, pitch):
    n = int(0.18 * SAMPLE_RATE)
    t = _t(n)
    f = (430.0 - 150.0 * t / t[-1]) * pitch
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k ** 0.5 for k in range(1, 8))
    noisy = rng.standard_normal(n) * 0.6
    out = sosfilt(_sos("band", 600.0, 1800.0, 2), voiced + noisy)
    env = np.exp(-t / 0.07) * (1 - np.exp(-t / 0.006))
    return out * env, 0.18


def _siren(rng, pitch, dur):
    n = int(dur * SAMPLE_RATE)
    t = _t(n)
    f = (1050.0 + 330.0 * np.sin(2 * np.pi * 2.6 * t + rng.uniform(0, 6.28))) * pitch
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    return np.sin(phase) * _env(n, 0.08, 0.12), dur


def _rain(rng, pitch, dur):
    n = int(dur * SAMPLE_RATE)
    hiss = sosfilt(_sos("band", 2200.0 * pitch, 7000.0, 4), rng.standard_normal(n))
    drops = np.zeros(n)
    idx = rng.integers(0, n, size=int(40 * dur))
    drops[idx] = rng.uniform(1.0, 4.0, size=idx.size)
    drops = sosfilt(_sos("highpass", 3000.0, order=2), drops)
    slow = 1.0 + 0.2 * np.sin(2 * np.pi * 0.4 * _t(n) + rng.uniform(0, 6.28))
    return (hiss * slow + 0.5 * drops) * _env(n, 0.15, 0.2), dur


def _horn(rng, pitch):
    n = int(0.4 * SAMPLE_RATE)
    t = _t(n)
    tone = np.tanh(3 * np.sin(2 * np.pi * 400 * pitch * t)) + np.tanh(3 * np.sin(2 * np.pi * 505 * pitch * t))
    return sosfilt(_sos("lowpass", 3500.0, order=2), tone) * _env(n, 0.015, 0.03), 0.4


def _footsteps(rng, pitch, dur):
    n = int(dur * SAMPLE_RATE)
    out = np.zeros(n)
    k = int(0.09 * SAMPLE_RATE)
    tk = _t(k)
    period = 0.5 / pitch
    at = 0.02
    while at + 0.09 < dur:
        i = int(at * SAMPLE_RATE)
        thump = sosfilt(_sos("lowpass", 200.0, order=2), rng.standard_normal(k)) * 3 + np.sin(2 * np.pi * 60 * tk)
        out[i:i + k] += thump * np.exp(-tk / 0.035)
        at += period + rng.uniform(-0.03, 0.03)
    return out, dur


def _bird(rng, pitch):
    n = int(0.33 * SAMPLE_RATE)
    out = np.zeros(n)
    k = int(0.06 * SAMPLE_RATE)
    tk = _t(k)
    f = 3000.0 * pitch * (5500.0 / 3000.0) ** (tk / tk[-1])
    chirp = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.hanning(k)
    for j in range(3):
        i = int(j * 0.09 * SAMPLE_RATE)
        out[i:i + k] += chirp
    return out, 0.33


def _engine(rng, pitch, dur):
    n = int(dur * SAMPLE_RATE)
    t = _t(n)
    f0 = 140.0 * pitch
    hum = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 11))
    am = 1.0 + 0.35 * np.sin(2 * np.pi * 7.0 * t)
    return sosfilt(_sos("lowpass", 1200.0, order=2), hum * am) * _env(n, 0.2, 0.2), dur


def _whistle(rng, pitch):
    n = int(0.6 * SAMPLE_RATE)
    t = _t(n)
    f = 2300.0 * pitch * (1 + 0.01 * np.sin(2 * np.pi * 6 * t))
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    return (np.sin(phase) + 0.05 * np.sin(2 * phase)) * _env(n, 0.03, 0.05), 0.6


def _knock(rng, pitch):
    n = int(0.08 * SAMPLE_RATE)
    t = _t(n)
    click = np.zeros(n)
    click[:16] = rng.standard_normal(16) * 4
    body = (np.sin(2 * np.pi * 350 * pitch * t) + 0.6 * np.sin(2 * np.pi * 900 * pitch * t)) * np.exp(-t / 0.02)
    return click + body, 0.06


_UNITS = {"bell": (_bell, 0.55), "dog": (_dog, 0.3), "horn": (_horn, 0.6), "bird": (_bird, 0.5),
          "whistle": (_whistle, 0.8), "knock": (_knock, 0.18)}  # unit, spacing between repeats (s)
_TEXTURES = {"siren": _siren, "rain": _rain, "footsteps": _footsteps, "engine": _engine}
TEXTURE_S = (1.8, 2.6)  # natural length range of a texture
# closest two repeats may come when a crowded clip compresses the timeline: still heard as two
# (a horn or whistle overlapping its own repeat would merge into one long tone; a bell needs to
# decay a little before it is struck again)
MIN_SPACING_S = {"bell": 0.4, "dog": 0.15, "horn": 0.5, "bird": 0.25, "whistle": 0.7, "knock": 0.09}


def repeat_spacing(event: str, stretch: float = 1.0) -> float:
    """Seconds between repeats of a discrete event at a compression `stretch` (≤ 1)."""
    return max(MIN_SPACING_S[event], _UNITS[event][1] * stretch)


def natural_length(m: Mention) -> float:
    """Seconds a mention takes before the timeline is fitted to the clip."""
    if m.spec.texture:
        return sum(TEXTURE_S) / 2
    spacing = _UNITS[m.event][1]
    active = {"bell": 0.7, "dog": 0.18, "horn": 0.4, "bird": 0.33, "whistle": 0.6, "knock": 0.06}[m.event]
    return spacing * (m.repeats - 1) + active


def _span(group: list[Mention], scale: float) -> float:
    """Seconds a group takes at a compression scale (textures ≥ 0.4 s, repeat spacing ≥ half)."""
    out = 0.0
    for m in group:
        if m.spec.texture:
            out = max(out, max(0.4, natural_length(m) * scale))
        else:
            spacing = repeat_spacing(m.event, max(0.5, scale))
            out = max(out, natural_length(m) - _UNITS[m.event][1] * (m.repeats - 1) + spacing * (m.repeats - 1))
    return out


def _rms_normalise(x: np.ndarray) -> np.ndarray:
    active = np.abs(x) > 1e-4 * (np.abs(x).max() + 1e-12)
    rms = np.sqrt(np.mean(x[active] ** 2)) if active.any() else 0.0
    return x * (EVENT_RMS / rms) if rms > 0 else x


def _distant(x: np.ndarray, rng) -> np.ndarray:
    y = sosfilt(_sos("lowpass", 4500.0, order=1), x)
    k = int(0.25 * SAMPLE_RATE)
    ir = rng.standard_normal(k) * np.exp(-_t(k) / 0.06) * 0.08
    ir[0] = 1.0
    y = np.convolve(y, ir)[: len(x) + k]
    return y


def synth_mention(m: Mention, rng: np.random.Generator, length_s: float, stretch: float = 1.0) -> tuple[np.ndarray, float]:
    """Audio for one mention and its active length; `stretch` (<1) compresses repeat spacing."""
    pitch = float(np.exp(rng.uniform(-0.04, 0.04)))
    if m.spec.texture:
        x, active = _TEXTURES[m.event](rng, pitch, length_s)
    else:
        unit_fn = _UNITS[m.event][0]
        spacing = repeat_spacing(m.event, stretch)
        parts = []
        for j in range(m.repeats):
            u, act = unit_fn(rng, pitch)
            parts.append((j * spacing + (rng.uniform(-0.02, 0.02) if j else 0.0), u, act))
        end = max(int(max(0.0, s) * SAMPLE_RATE) + len(u) for s, u, _ in parts)
        x = np.zeros(end)
        for s, u, _ in parts:
            i = int(max(0.0, s) * SAMPLE_RATE)
            x[i:i + len(u)] += u
        active = max(max(0.0, s) + a for s, _, a in parts)
    x = _rms_normalise(x)
    gain_db = LEVEL_DB[m.level] + rng.uniform(-1.5, 1.5)
    if m.distant:
        x = _distant(x, rng)
        gain_db += DISTANT_DB
    return x * 10 ** (gain_db / 20), active


# ---------------------------------------------------------------------------------------------
# Defects and the timeline

def applicable_defects(scene: Scene) -> tuple[str, ...]:
    """Defects that change this scene ("swap" needs two groups in sequence; "extra" a free event;
    "count" an event whose count the caption states)."""
    out = ["missing"]
    if len(scene.groups()) >= 2:
        out.append("swap")
    if len(scene.mentions) < len(EVENTS):
        out.append("extra")
    out.append("noise")
    if any(m.count is not None for m in scene.mentions):
        out.append("count")
    return tuple(out)


def _apply_defect(scene: Scene, groups: list[list[Mention]], defect: str, rng) -> list[list[Mention]]:
    if defect not in DEFECTS:
        raise CaptionError(f"unknown defect {defect!r} (known: {', '.join(DEFECTS)})")
    if defect not in applicable_defects(scene):
        why = "no counted event" if defect == "count" else "one group only"
        raise CaptionError(f"caption {scene.text()!r}: defect {defect!r} does not apply ({why})")
    groups = [list(g) for g in groups]
    if defect == "missing":
        flat = [(gi, mi) for gi, g in enumerate(groups) for mi in range(len(g))]
        gi, mi = flat[int(rng.integers(len(flat)))]
        del groups[gi][mi]
        groups = [g for g in groups if g]
    elif defect == "swap":
        i = int(rng.integers(len(groups) - 1))
        j = int(rng.integers(i + 1, len(groups)))
        groups[i], groups[j] = groups[j], groups[i]
    elif defect == "extra":
        free = [k for k in EVENTS if k not in scene.events()]
        key = free[int(rng.integers(len(free)))]
        groups.insert(int(rng.integers(len(groups) + 1)), [Mention(key)])
    elif defect == "count":
        # one occurrence of a counted event dropped or added ("twice" rendered once or three times)
        counted = [(gi, mi) for gi, g in enumerate(groups) for mi, m in enumerate(g) if m.count is not None]
        gi, mi = counted[int(rng.integers(len(counted)))]
        m = groups[gi][mi]
        step = 1 if m.count == 1 else -1 if m.count >= MAX_COUNT else int(rng.choice([-1, 1]))
        groups[gi][mi] = replace(m, count=m.count + step)
    return groups


def _pink_noise(n: int, rng) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size)
    spec[1:] /= np.sqrt(f[1:] / f[1])
    x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-12)


def render(scene: Scene | str, seed: int, *, defect: str | None = None, duration_s: float = DEFAULT_DURATION_S,
           noise_snr_db: float = 40.0) -> Render:
    """Render a scene (or caption) with seeded variation; `defect` forces one failure mode.

    noise_snr_db sets the background noise (40 dB: clean). The "noise" defect adds loud noise
    (SNR −3..+1 dB) on top.
    """
    if isinstance(scene, str):
        scene = parse_caption(scene)
    caption = scene.text()
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise CaptionError(f"caption {caption!r}: a duration of {duration_s} s is zero-length")
    if duration_s < MIN_DURATION_S:
        raise CaptionError(f"caption {caption!r}: {duration_s} s is too short (at least {MIN_DURATION_S} s)")
    rng = np.random.default_rng([_text_seed(caption), int(seed) & 0xFFFFFFFF, DEFECTS.index(defect) + 1 if defect in DEFECTS else 0])
    groups = [[scene.mentions[i] for i in g] for g in scene.groups()]
    if defect is not None:
        groups = _apply_defect(scene, groups, defect, rng)
    n = int(round(duration_s * SAMPLE_RATE))
    wave = np.zeros(n)
    truth: list[RenderedEvent] = []
    if groups:
        # fit: lead + groups + gaps + tail ≤ duration, compressing textures and repeat spacing
        gaps = [GROUP_GAP_S + rng.uniform(-0.08, 0.12) for _ in groups[1:]]
        lead, tail = rng.uniform(0.15, 0.45), 0.25
        room = duration_s - lead - tail - sum(gaps)
        scale = 1.0
        while sum(_span(g, scale) for g in groups) > room:
            scale -= 0.05
            if scale < 0.1:
                raise CaptionError(f"caption {caption!r} does not fit in {duration_s} s")
        spare = room - sum(_span(g, scale) for g in groups)
        # textures stretch into part of the spare time; a random share of the rest delays the start
        grow = 1.0 + min(0.5, 0.5 * spare / sum(_span(g, 1.0) for g in groups)) if scale >= 1.0 else 1.0
        spare -= sum(_span(g, scale * grow) - _span(g, scale) for g in groups)
        at = lead + rng.uniform(0.0, 0.4 * max(0.0, spare))
        for gi, g in enumerate(groups):
            span = _span(g, scale * grow)
            end = at
            for k, m in enumerate(g):
                if m.spec.texture:
                    start = at
                    length = span if len(g) > 1 else max(0.4, natural_length(m) * scale * grow) * rng.uniform(0.9, 1.0)
                    x, active = synth_mention(m, rng, length)
                else:
                    start = at + (rng.uniform(0.1, 0.3) * max(0.0, span - _span([m], scale)) if k else 0.0)
                    x, active = synth_mention(m, rng, 0.0, stretch=max(0.5, scale))
                i = int(start * SAMPLE_RATE)
                seg = x[: max(0, n - i)]
                wave[i:i + seg.size] += seg
                off = min(duration_s, start + active)
                truth.append(RenderedEvent(m.event, round(start, 4), round(off, 4), gi,
                                           None if m.spec.texture else m.repeats))
                end = max(end, off)
            at = end + (gaps[gi] if gi < len(gaps) else 0.0)
    signal_rms = np.sqrt(np.mean(wave ** 2)) if np.any(wave) else EVENT_RMS * 0.3
    snr = noise_snr_db
    if defect == "noise":
        snr = min(snr, rng.uniform(-3.0, 1.0))
    wave += _pink_noise(n, rng) * signal_rms * 10 ** (-snr / 20)
    peak = np.abs(wave).max()
    if peak > 0.95:
        wave *= 0.95 / peak
    rendered = Scene(tuple(m for g in groups for m in g), tuple(["then"] * max(0, sum(map(len, groups)) - 1))) if groups else scene
    return Render(wave.astype(np.float32), tuple(truth), defect, rendered)


def _text_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


# ---------------------------------------------------------------------------------------------
# The generator backend

def quality(steps: int, guidance: float) -> float:
    """0..1 render quality for a number of denoising steps: 5 → 0.18, 25 → 0.63, 50 → 0.86, 100 → 0.98."""
    q = 1.0 - np.exp(-steps / 25.0)
    if guidance < 1.0:  # little or no classifier-free guidance follows the text less well
        q *= 0.7 + 0.3 * max(0.0, guidance)
    return float(q)


def defect_probability(steps: int, guidance: float) -> float:
    """Chance that a render has one failure mode: 5 steps → 0.62, 50 → 0.15, 100 → 0.06."""
    return float(0.05 + 0.7 * (1.0 - quality(steps, guidance)))


class WorldGenerator:
    """`Generator` backend "world": renders captions of the world grammar.

    A caption the grammar cannot read is refused (CaptionError naming it): the world cannot
    draw what it does not know.
    """

    name = "world"
    checkpoint_id = "world-v1"
    sample_rate = SAMPLE_RATE

    def generate(self, prompts: Sequence[str], *, steps: int, guidance: float, seeds: Sequence[int],
                 duration_s: float = DEFAULT_DURATION_S) -> list[np.ndarray]:
        if len(prompts) != len(seeds):
            raise CaptionError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        if steps < 1:
            raise CaptionError(f"steps must be at least 1, got {steps}")
        return [self.render_one(p, steps=steps, guidance=guidance, seed=s, duration_s=duration_s).wave
                for p, s in zip(prompts, seeds)]

    def render_one(self, prompt: str, *, steps: int, guidance: float, seed: int,
                   duration_s: float = DEFAULT_DURATION_S) -> Render:
        scene = parse_caption(prompt)
        # one draw per (caption, seed), shared by every step count: a seed that goes wrong at 50
        # steps also goes wrong at 25 (the same starting noise, denoised less carefully)
        rng = np.random.default_rng([_text_seed(scene.text()), int(seed) & 0xFFFFFFFF, 7])
        q = quality(steps, guidance)
        defect = None
        u, pick, jitter = rng.random(), rng.random(), rng.uniform(-2.0, 2.0)
        if u < defect_probability(steps, guidance):
            options = applicable_defects(scene)
            defect = options[int(pick * len(options))]
        snr = 8.0 + 30.0 * q + jitter  # 5 steps ≈ 13 dB, 100 steps ≈ 37 dB
        try:
            return render(scene, seed, defect=defect, duration_s=duration_s, noise_snr_db=snr)
        except CaptionError:
            if defect not in ("extra", "count"):
                raise
            # an extra event or repeat that does not fit: the failure becomes a missing one instead
            return render(scene, seed, defect="missing", duration_s=duration_s, noise_snr_db=snr)
