"""Batched CLAP log-mel features in torch, as laion-clap computes them.

laion-clap (LAION-AI/CLAP, `hook.py`) embeds a clip as: `librosa.load(path, sr=48000)` (soxr
"soxr_hq" resampling: curator.audio.resample), rounding to 16-bit (`quantize_int16`), then the
log-mel front end of its HTSAT-tiny audio config: 48 kHz, 1024-point periodic Hann STFT (centred,
reflect padding), hop 480, 64 mel bands 50–14 000 Hz, power in dB re 1.0 with a floor of 1e-10,
clips padded to 10 s by "repeatpad". Unfused models use librosa's slaney mel filters
(torchlibrosa), fused ones torchaudio's htk filters — transformers' `ClapFeatureExtractor` keeps
both banks, and this takes them from it. `LAION_FEATURES` holds those settings per checkpoint kind
and `check_laion_features` refuses an extractor whose settings differ, naming each.

`ClapFeatureExtractor` computes one numpy STFT per clip (~30 ms for 10 s at 48 kHz on a CPU core);
this computes a whole batch with `torch.stft` on the scorer's device. The STFT runs in float64:
in float32 torch's FFT rounding lifts the nearly empty bands above 8 kHz of a 16 kHz clip (about
−90 dB) by up to 0.03 dB; in float64 every band equals librosa's to 1e-5 dB (tests/test_clap_scorer.py).

Clips longer than the extractor's maximum (10 s) keep their first 10 s: laion and the extractor
would take a random crop ("rand_trunc") or random fused crops ("fusion"), which makes a score
depend on chance and on what else is in the batch. Fused models get the four identical mel
channels the extractor gives a clip that is not longer than the maximum (`is_longer` False).
"""

from __future__ import annotations

import numpy as np
import torch

from db.errors import CuratorError

# laion-clap's HTSAT-tiny audio config (sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
# clip_samples = 10 s), in `ClapFeatureExtractor`'s names, and the padding/truncation modes of its
# inference path; unfused and fused checkpoints differ only in the truncation mode, which also
# selects the extractor's mel filters (rand_trunc: slaney, fusion: htk).
_LAION_COMMON = {
    "sampling_rate": 48_000,
    "fft_window_size": 1024,
    "hop_length": 480,
    "feature_size": 64,
    "frequency_min": 50,
    "frequency_max": 14_000,
    "max_length_s": 10,
    "window": "hann",
    "padding": "repeatpad",
}
LAION_FEATURES: dict[bool, dict[str, object]] = {
    False: {**_LAION_COMMON, "truncation": "rand_trunc"},  # 630k-audioset-best.pt, 630k-best.pt
    True: {**_LAION_COMMON, "truncation": "fusion"},  # 630k-audioset-fusion-best.pt, 630k-fusion-best.pt
}
# ClapFeatureExtractor always uses a Hann window (it has no setting for it); a config that names
# another one is refused rather than silently ignored.
DEFAULT_WINDOW = "hann"


def extractor_settings(extractor) -> dict[str, object]:
    """The settings of a `ClapFeatureExtractor` that change its features, under LAION_FEATURES' keys."""
    settings = {key: getattr(extractor, key, None) for key in LAION_FEATURES[False]}
    settings["window"] = getattr(extractor, "window", DEFAULT_WINDOW)
    return settings


def check_laion_features(extractor, *, fused: bool, checkpoint: str) -> None:
    """Refuse a feature extractor whose settings differ from laion-clap's for this kind of model."""
    want = LAION_FEATURES[fused]
    have = extractor_settings(extractor)
    wrong = [f"{key} {have[key]!r} (laion: {value!r})" for key, value in want.items() if not _same(have[key], value)]
    if wrong:
        kind = "fused" if fused else "unfused"
        raise CuratorError(f"CLAP feature extractor for {checkpoint} differs from laion-clap's {kind} settings: "
                           f"{', '.join(wrong)}; use the matching --tokenizer source "
                           f"(laion/clap-htsat-{kind} or a copy of its preprocessor_config.json)")


def _same(have: object, want: object) -> bool:
    if isinstance(want, str):
        return isinstance(have, str) and have == want
    try:
        return float(have) == float(want)
    except (TypeError, ValueError):
        return False


def quantize_int16(wave: np.ndarray) -> np.ndarray:
    """laion-clap's `int16_to_float32(float32_to_int16(x))`: clip to [-1, 1], scale by 32767,
    truncate to int16 and scale back; applied to every waveform before its features."""
    wave = np.asarray(wave, dtype=np.float32)
    ints = (np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16)
    return (ints / 32767.0).astype(np.float32)


class ClapFeaturizer:
    """Waveforms at the extractor's rate → `input_features` (B, 1 or 4, frames, mels)."""

    def __init__(self, extractor, *, fused: bool, device: torch.device | str = "cpu"):
        self.extractor = extractor
        self.fused = fused
        self.device = torch.device(device)
        # float64 STFT (see the module docstring); MPS has no float64, so it runs on the CPU there
        self.stft_device = torch.device("cpu") if self.device.type == "mps" else self.device
        self.sample_rate = int(extractor.sampling_rate)
        self.max_samples = int(extractor.nb_max_samples)
        self.n_fft = int(extractor.fft_window_size)
        self.hop = int(extractor.hop_length)
        self.padding = extractor.padding
        if self.padding not in ("repeatpad", "repeat", "pad"):
            raise CuratorError(f"CLAP feature extractor padding {self.padding!r} is not repeatpad, repeat or pad")
        # fused models use the htk filters, unfused the slaney ones (as the extractor does)
        filters = extractor.mel_filters if fused else extractor.mel_filters_slaney  # (n_fft/2+1, mels)
        self.filters = torch.as_tensor(np.asarray(filters), dtype=torch.float64, device=self.stft_device)
        self.window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64, device=self.stft_device)

    def fit_length(self, wave: np.ndarray) -> np.ndarray:
        """Cut to the maximum length (first samples) or fill it as the extractor's padding mode does."""
        wave = np.asarray(wave, dtype=np.float32)
        n = self.max_samples
        if wave.shape[0] >= n:
            return wave[:n]
        if self.padding == "repeat":
            return np.tile(wave, n // wave.shape[0] + 1)[:n]
        if self.padding == "repeatpad":
            wave = np.tile(wave, n // wave.shape[0])
        return np.pad(wave, (0, n - wave.shape[0]))

    def _log_mel(self, waves: list[np.ndarray]) -> torch.Tensor:
        batch = np.stack([self.fit_length(w) for w in waves]).astype(np.float64)
        batch = torch.from_numpy(batch).to(self.stft_device)  # (b, T)
        spec = torch.stft(batch, self.n_fft, hop_length=self.hop, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)  # (b, n_fft/2+1, frames)
        power = spec.real.square() + spec.imag.square()
        mel = torch.einsum("bft,fm->btm", power, self.filters)  # (b, frames, mels)
        log_mel = 10.0 * torch.log10(mel.clamp_min(1e-10))  # dB re 1.0, floor 1e-10 (laion's amin)
        return log_mel.to(device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        # On a CPU the (b, 513, 1001) spectrogram of a large batch leaves the caches and costs more
        # per clip than one clip at a time (measured: 2.4 vs 5.8 ms/clip at b=16), so CPUs
        # featurize clip by clip and accelerators the whole batch in one call.
        step = 1 if self.stft_device.type == "cpu" else len(waves)
        log_mel = torch.cat([self._log_mel(waves[i:i + step]) for i in range(0, len(waves), step)])
        features = log_mel.unsqueeze(1)  # (B, 1, frames, mels)
        if self.fused:
            features = features.expand(-1, 4, -1, -1).contiguous()  # (B, 4, frames, mels)
        is_longer = torch.zeros(len(waves), 1, dtype=torch.bool, device=self.device)
        return features, is_longer
