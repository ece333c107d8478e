# Over 500 lines on purpose: one command's stages (building parts, losses, small loops, the run), used only here, read top to bottom.
"""`trainer pretrain`: a Tango-shaped text-to-audio latent diffusion model trained from nothing.

The parts are Tango's (arXiv 2404.09956 §3.1), in the classes the one Tango loader builds
(curator.models.tango.load_tango), and the result is saved in the declare-lab layout, so
`curator generate --model DIR` and `trainer run --model DIR` load it exactly like a downloaded
checkpoint:

- **text encoder**: a small T5 encoder (`T5EncoderModel`, FLAN-T5's class) over the tiny Tango's
  T5 tokenizer (curator.models.tiny), randomly initialised from the seed and **frozen**, as Tango's
  FLAN-T5 is. Its token states are fixed random features of the caption (T5's relative-position
  attention makes them depend on word order); all learning happens in the UNet's cross-attention.
  A pretrained encoder cannot be downloaded here, and the loader takes only T5 encoders.
- **VAE**: AudioLDM's `AutoencoderKL` shape (8 latent channels, time and frequency halved twice)
  trained on the clips' log-mels with Tango's STFT settings (16 kHz, hop 160, 64 mel bands;
  curator.models.tango.waveform_to_mel): L1 reconstruction + a small KL term. The latent scale
  factor is 1 / std of the latents, as Stable Diffusion's and AudioLDM's.
- **vocoder**: a HiFi-GAN generator (`SpeechT5HifiGan`, AudioLDM's upsampling 5·4·2·2·2 = hop)
  trained on the clips' (mel, waveform) segments with a multi-resolution STFT loss plus a log-mel
  L1 loss, without HiFi-GAN's discriminators. Griffin-Lim was not chosen because the loader and
  the sampler decode through a HiFi-GAN (a real checkpoint's vocoder sits in the VAE weights);
  the discriminators were left out because they cost several times the generator's CPU time and
  buy phase realism, while the judges listen to mel power.
- **UNet**: `UNet2DConditionModel` (CrossAttnDownBlock2D levels then one DownBlock2D, as Tango's,
  narrower) on the scaled latents, v-prediction with the SD-2.1 DDPM schedule Tango uses, min-SNR
  weighting (Tango's snr_gamma = 5), the caption replaced by "" with probability `uncond_prob`
  (the sampler's unconditional input), AdamW with warmup.

Stages (each resumable; a rerun with the same `--out` continues where the last one stopped):
1. data: examples (trainer.pretrain_data) → log-mels, text encodings → DIR/work/data.pt
   (computed in memory first: bad input fails before anything is written);
2. VAE → DIR/work/vae.pt (model + optimizer + step, saved every `checkpoint_every` steps);
3. vocoder → DIR/work/vocoder.pt;
4. latents → DIR/work/latents.pt (posterior means, scale factor);
5. UNet → DIR/step-K/ (a complete Tango folder + pretrain_state.pt), DIR/metrics.jsonl as
   `trainer run` writes it (trainer.run_folder's helpers);
6. the final model: the Tango layout at DIR itself (main_config.json written last), plus
   DIR/train_captions.txt (what `trainer compare` checks test prompts against) and
   DIR/pretrain_summary.json (sizes, losses, timings).
"""

from __future__ import annotations

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
import torch.nn.functional as F

from db.errors import CuratorError
from curator.fsutil import atomic_write_json
from curator.models.tango.checkpoint import atomic_torch_save
from trainer.pretrain_config import HOP, SAMPLE_RATE, PretrainConfig, pretrain_config_from_dict, resume_mismatch
from trainer.run_folder import METRICS_FILE, truncate_metrics

CONFIG_FILE = "pretrain_config.json"
STATE_FILE = "pretrain_state.pt"
SUMMARY_FILE = "pretrain_summary.json"
CAPTIONS_FILE = "train_captions.txt"
WORK = "work"
LATENT_CHANNELS = 8  # AudioLDM's / Tango's VAE
TEXT_ENCODER_NAME = "miniature-flan-t5"  # a T5 encoder (main_config's text_encoder_name must name one)


@dataclass
class PretrainResult:
    out_dir: Path
    steps: int
    n_examples: int
    summary: dict[str, Any] = field(default_factory=dict)
    already_done: bool = False


# --------------------------------------------------------------------------- building parts


def mel_frontend():
    """What waveform_to_mel reads of a Tango: AudioLDM's STFT config and its mel filterbank."""
    from types import SimpleNamespace

    from curator.models.tango.config import StftConfig
    from curator.models.tango.parts import stft_buffers

    stft = StftConfig()
    buffers = stft_buffers(stft)
    return SimpleNamespace(stft=stft, mel_basis=buffers["mel_basis"], buffers=buffers)


def build_text_encoder(cfg: PretrainConfig):
    from transformers import T5Config, T5EncoderModel

    from curator.models.tiny import tiny_tokenizer

    torch.manual_seed(cfg.seed)
    tokenizer = tiny_tokenizer()
    t5 = T5Config(vocab_size=len(tokenizer), d_model=cfg.text_dim, d_kv=cfg.text_dim // cfg.text_heads,
                  d_ff=2 * cfg.text_dim, num_layers=cfg.text_layers, num_heads=cfg.text_heads,
                  feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                  relative_attention_max_distance=64, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                  decoder_start_token_id=0, is_encoder_decoder=False, use_cache=False)
    return tokenizer, T5EncoderModel(t5).eval().requires_grad_(False)


def build_vae(cfg: PretrainConfig):
    from curator.models.tango.config import VaeConfig
    from curator.models.tango.parts import vae_from_config

    torch.manual_seed(cfg.seed + 1)
    vc = VaeConfig(ddconfig={"double_z": True, "z_channels": LATENT_CHANNELS, "resolution": 256,
                             "downsample_time": False, "in_channels": 1, "out_ch": 1, "ch": cfg.vae_channels,
                             "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0},
                   embed_dim=LATENT_CHANNELS, scale_factor=1.0)
    return vae_from_config(vc, "pretrain VAE")


def vocoder_config(cfg: PretrainConfig) -> dict[str, Any]:
    return {"resblock": "1", "upsample_rates": [5, 4, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 8, 4, 4],
            "upsample_initial_channel": cfg.vocoder_channels, "resblock_kernel_sizes": [3, 7],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]], "num_mels": 64, "sampling_rate": SAMPLE_RATE}


def build_vocoder(cfg: PretrainConfig):
    from curator.models.tango.parts import vocoder_from_config

    torch.manual_seed(cfg.seed + 2)
    return vocoder_from_config(vocoder_config(cfg))


def unet_config(cfg: PretrainConfig) -> dict[str, Any]:
    chans = [cfg.unet_channels * min(2 ** i, 2) for i in range(cfg.unet_levels)]
    down = ["CrossAttnDownBlock2D"] * (cfg.unet_levels - 1) + ["DownBlock2D"]
    up = ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (cfg.unet_levels - 1)
    return {"sample_size": [cfg.frames // 4, 16], "in_channels": LATENT_CHANNELS, "out_channels": LATENT_CHANNELS,
            "down_block_types": down, "up_block_types": up, "block_out_channels": chans,
            "layers_per_block": cfg.unet_layers, "attention_head_dim": [max(1, c // 32) for c in chans],
            "cross_attention_dim": cfg.text_dim, "norm_num_groups": 32, "use_linear_projection": True,
            "upcast_attention": True, "flip_sin_to_cos": True, "freq_shift": 0}


def build_unet(cfg: PretrainConfig):
    from curator.models.tango.parts import unet_from_config

    torch.manual_seed(cfg.seed + 3)
    return unet_from_config(unet_config(cfg))


def assemble(cfg: PretrainConfig, tokenizer, text_encoder, unet, vae, vocoder, source: str):
    """The parts as a curator.models.tango.Tango (what save_tango writes)."""
    from diffusers import DDPMScheduler

    from curator.models.tango import Tango
    from curator.models.tango.config import SD21_SCHEDULER_CONFIG

    front = mel_frontend()
    return Tango(
        tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, vae=vae, vocoder=vocoder,
        scheduler=DDPMScheduler(**SD21_SCHEDULER_CONFIG), stft=front.stft, mel_basis=front.mel_basis,
        config={"text_encoder_name": TEXT_ENCODER_NAME, "scheduler_name": "stabilityai/stable-diffusion-2-1",
                "unet_model_name": None, "unet_model_config_path": "unet_config.json",
                "snr_gamma": cfg.snr_gamma or None, "freeze_text_encoder": True, "uncondition": cfg.uncond_prob > 0},
        source=source, stft_buffers=front.buffers,
    )


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- losses


def stft_loss(pred: torch.Tensor, target: torch.Tensor,
              resolutions=((512, 128, 512), (1024, 256, 1024), (256, 64, 256))) -> torch.Tensor:
    """Multi-resolution STFT loss (spectral convergence + log magnitude), as Parallel WaveGAN's."""
    total = pred.new_zeros(())
    for n_fft, hop, win in resolutions:
        window = torch.hann_window(win, device=pred.device)
        p = torch.stft(pred, n_fft, hop, win, window, return_complex=True).abs().clamp_min(1e-7)
        t = torch.stft(target, n_fft, hop, win, window, return_complex=True).abs().clamp_min(1e-7)
        sc = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-7)
        total = total + sc + F.l1_loss(p.log(), t.log())
    return total / len(resolutions)


def log_mel(front, wave: torch.Tensor) -> torch.Tensor:
    """(B, T) → (B, T // hop, 64), the VAE's mel without the waveform normalisation (differentiable)."""
    s = front.stft
    window = torch.hann_window(s.win_length, device=wave.device)
    spec = torch.stft(wave, s.filter_length, s.hop_length, s.win_length, window, center=True, pad_mode="reflect",
                      return_complex=True).abs()
    mel = torch.log(torch.clamp(front.mel_basis.to(wave.device) @ spec, min=1e-5))
    return mel.transpose(1, 2)[:, : wave.shape[1] // s.hop_length]


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """min(SNR, γ) / (SNR + 1): min-SNR weighting for a v-prediction target (diffusers' training
    scripts; Tango's snr_gamma)."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps)
    return torch.clamp(snr, max=gamma) / (snr + 1.0)


# --------------------------------------------------------------------------- small loops


def _gen(seed: int, *parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0]))


def _train_part(name: str, module: torch.nn.Module, step_fn: Callable[[int], tuple[torch.Tensor, dict]],
                steps: int, lr: float, path: Path, *, every: int, progress: bool, log: Path) -> dict[str, float]:
    """AdamW on MODULE for STEPS steps of STEP_FN(step) → (loss, metrics); resumable from PATH."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(module.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)) * 0.9 + 0.1)
    step, last = 0, {}
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)
        module.load_state_dict(state["model"])
        if state["step"] >= steps and state.get("done"):
            return state.get("metrics", {})
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, last = int(state["step"]), state.get("metrics", {})
        truncate_metrics(log, step)
    module.train()

    def save(done: bool) -> None:
        atomic_torch_save({"model": module.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "step": step, "done": done, "metrics": last}, path)

    bar = tqdm(total=steps, initial=step, desc=name, unit="step", disable=not progress)
    window: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    while step < steps:
        loss, metrics = step_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        for k, v in {"loss": loss.item(), **metrics}.items():
            window.setdefault(k, []).append(float(v))
        bar.update(1)
        if step % max(1, min(every, 50)) == 0 or step == steps:
            last = {k: float(np.mean(v)) for k, v in window.items()}
            line = {"step": step, "phase": name, "lr": sched.get_last_lr()[0],
                    "s_per_step": (time.perf_counter() - t0) / max(1, len(window["loss"])), **last}
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, sort_keys=True) + "\n")
            bar.set_postfix(loss=f"{last['loss']:.4g}")
            window, t0 = {}, time.perf_counter()
        if step % every == 0 and step < steps:
            save(False)
    bar.close()
    save(True)
    module.eval()
    return last


# --------------------------------------------------------------------------- the run


class _Timings:
    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def add(self, stage: str, seconds: float) -> None:
        self.values[stage] = round(self.values.get(stage, 0.0) + seconds, 3)
        atomic_write_json(self.path, self.values)


def latest_step(out: Path) -> int:
    steps = [int(p.name.split("-", 1)[1]) for p in out.glob("step-*")
             if p.is_dir() and p.name.split("-", 1)[1].isdigit() and (p / STATE_FILE).is_file()]
    return max(steps, default=0)


def _check_out(cfg: PretrainConfig) -> tuple[Path, PretrainConfig | None]:
    if not cfg.out:
        raise CuratorError("--out DIR is required (the model is written to DIR)")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise CuratorError(f"--out {out} is a file")
    saved = None
    if (out / CONFIG_FILE).is_file():
        try:
            saved = pretrain_config_from_dict(json.loads((out / CONFIG_FILE).read_text(encoding="utf-8")),
                                              where=str(out / CONFIG_FILE))
        except json.JSONDecodeError as exc:
            raise CuratorError(f"{out / CONFIG_FILE} is damaged ({exc})") from None
        bad = resume_mismatch(saved, cfg)
        if bad:
            raise CuratorError(f"--out {out} holds a pretraining run with another config: {'; '.join(bad)} "
                               "(pick a new --out, or the same settings to resume)")
    elif out.is_dir() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise CuratorError(f"--out {out} exists and is not a pretraining run folder (no {CONFIG_FILE}); pick a new one")
    return out, saved


def _prepare_data(cfg: PretrainConfig, tokenizer, text_encoder, front, *, progress: bool) -> dict[str, Any]:
    """Examples → log-mels, text encodings, a few waveforms for the vocoder, all in memory."""
    from tqdm.auto import tqdm

    from curator.models.tango import waveform_to_mel
    from trainer.pretrain_data import examples_hash, load_examples

    ex = load_examples(cfg)
    mels = []
    for start in tqdm(range(0, len(ex), 64), desc="mels", disable=not progress):
        waves = torch.from_numpy(np.stack(ex.waves[start:start + 64]))
        mels.append(waveform_to_mel(front, waves).to(torch.float16))  # (b, 1, frames, 64)
    mel = torch.cat(mels)
    rng = np.random.default_rng([cfg.seed, 5])
    keep = np.sort(rng.choice(len(ex), size=min(cfg.vocoder_clips, len(ex)), replace=False))
    voc_waves = []
    for i in keep:  # the waveform waveform_to_mel saw: mean removed, peak at 0.5
        x = ex.waves[i] - ex.waves[i].mean()
        voc_waves.append(torch.from_numpy(0.5 * x / max(float(np.abs(x).max()), 1e-8)))
    texts = list(dict.fromkeys(ex.captions))
    row = {t: i for i, t in enumerate(texts)}
    batch = tokenizer(texts + [""], max_length=tokenizer.model_max_length, padding=True, truncation=True,
                      return_tensors="pt")
    hidden = []
    with torch.no_grad():
        for start in range(0, len(texts) + 1, 256):
            sl = slice(start, start + 256)
            hidden.append(text_encoder(input_ids=batch.input_ids[sl], attention_mask=batch.attention_mask[sl])[0])
    hidden = torch.cat(hidden)
    mask = batch.attention_mask == 1
    return {"source": ex.source, "hash": examples_hash(ex), "notes": ex.notes, "captions": ex.captions,
            "texts": texts, "text_index": torch.tensor([row[c] for c in ex.captions]), "mel": mel,
            "hidden": hidden[:-1].contiguous(), "mask": mask[:-1].contiguous(), "null_hidden": hidden[-1].contiguous(),
            "null_mask": mask[-1].contiguous(), "voc_index": torch.from_numpy(keep), "voc_waves": torch.stack(voc_waves)}


def run_pretrain(cfg: PretrainConfig, *, progress: bool = True, echo: Callable[[str], None] = print,
                 stop_after: int | None = None) -> PretrainResult:
    """Pretrain per CFG into CFG.out (resumable). STOP_AFTER: stop the UNet after that many
    steps with a checkpoint, as an interruption would (tests)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    from curator.models.tango import load_tango
    from trainer.loss import diffusion_target, per_sample_mse

    out, saved = _check_out(cfg)
    if saved is not None and (out / SUMMARY_FILE).is_file() and (out / "main_config.json").is_file():
        summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
        if summary.get("steps") == cfg.steps:
            return PretrainResult(out, cfg.steps, summary.get("n_examples", 0), summary, already_done=True)
    set_seed(cfg.seed)
    front = mel_frontend()
    tokenizer, text_encoder = build_text_encoder(cfg)
    work = out / WORK
    data_file = work / "data.pt"

    # 1. data (in memory first: bad input fails before DIR is written)
    t0 = time.perf_counter()
    if data_file.is_file():
        data = torch.load(data_file, map_location="cpu", weights_only=False)
    else:
        echo(f"1/5 data: {cfg.data}")
        data = _prepare_data(cfg, tokenizer, text_encoder, front, progress=progress)
        work.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(cfg.to_json() + "\n", encoding="utf-8")
        atomic_torch_save(data, data_file)
        from curator.audio import atomic_write_bytes

        atomic_write_bytes(out / CAPTIONS_FILE, ("\n".join(data["texts"]) + "\n").encode("utf-8"))
    if saved is None or saved != cfg:  # a resume may change steps, device, … (RESUME_MUTABLE): the folder says what ran
        (out / CONFIG_FILE).write_text(cfg.to_json() + "\n", encoding="utf-8")
    timings = _Timings(work / "timings.json")
    if "data" not in timings.values:
        timings.add("data", time.perf_counter() - t0)
    for note in data["notes"]:
        echo(f"   {note}")
    n = len(data["captions"])
    mel = data["mel"]
    echo(f"   {n} clips of {cfg.clip_s:g} s, {len(data['texts'])} captions ({data['source']})")

    accelerator = Accelerator(cpu=cfg.device == "cpu")
    if cfg.device == "cuda" and accelerator.device.type != "cuda":
        raise CuratorError("device=cuda but no GPU is visible")
    device = accelerator.device

    # 2. VAE on the log-mels
    vae = build_vae(cfg).to(device)
    t0 = time.perf_counter()

    def vae_step(step: int):
        g = _gen(cfg.seed, 11, step)
        idx = torch.randint(0, n, (cfg.vae_batch_size,), generator=g)
        offs = torch.randint(0, (cfg.frames - cfg.vae_crop_frames) // 4 + 1, (cfg.vae_batch_size,), generator=g) * 4
        x = torch.stack([mel[i, :, o:o + cfg.vae_crop_frames] for i, o in zip(idx.tolist(), offs.tolist())])
        x = x.float().to(device)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g).to(device)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        kl = posterior.kl().mean() / z[0].numel()
        return l1 + cfg.vae_kl_weight * kl, {"l1": l1.item(), "kl": kl.item()}

    echo(f"2/5 VAE ({n_params(vae) / 1e6:.2f} M parameters, {cfg.vae_steps} steps)")
    vae_metrics = _train_part("vae", vae, vae_step, cfg.vae_steps, cfg.vae_learning_rate, work / "vae.pt",
                              every=cfg.checkpoint_every, progress=progress, log=work / "vae_metrics.jsonl")
    timings.add("vae", time.perf_counter() - t0)
    vae.requires_grad_(False)

    # 3. vocoder on (mel, waveform) segments
    vocoder = build_vocoder(cfg).to(device)
    voc_mel = mel[data["voc_index"]]
    voc_waves = data["voc_waves"]
    seg = cfg.vocoder_segment_frames
    t0 = time.perf_counter()

    def vocoder_step(step: int):
        g = _gen(cfg.seed, 12, step)
        idx = torch.randint(0, len(voc_mel), (cfg.vocoder_batch_size,), generator=g)
        offs = torch.randint(0, cfg.frames - seg + 1, (cfg.vocoder_batch_size,), generator=g)
        m = torch.stack([voc_mel[i, 0, o:o + seg] for i, o in zip(idx.tolist(), offs.tolist())]).float().to(device)
        w = torch.stack([voc_waves[i, o * HOP:(o + seg) * HOP] for i, o in zip(idx.tolist(), offs.tolist())]).float().to(device)
        pred = vocoder(m)  # (B, seg · hop)
        sl = stft_loss(pred, w)
        ml = F.l1_loss(log_mel(front, pred), log_mel(front, w))
        return sl + ml, {"stft": sl.item(), "mel_l1": ml.item()}

    echo(f"3/5 vocoder ({n_params(vocoder) / 1e6:.2f} M parameters, {cfg.vocoder_steps} steps)")
    voc_metrics = _train_part("vocoder", vocoder, vocoder_step, cfg.vocoder_steps, cfg.vocoder_learning_rate,
                              work / "vocoder.pt", every=cfg.checkpoint_every, progress=progress,
                              log=work / "vocoder_metrics.jsonl")
    timings.add("vocoder", time.perf_counter() - t0)
    vocoder.requires_grad_(False)

    # 4. latents: posterior means, scaled to unit variance
    latent_file = work / "latents.pt"
    t0 = time.perf_counter()
    if latent_file.is_file():
        lat = torch.load(latent_file, map_location="cpu", weights_only=True)
        latents, scale = lat["latents"], float(lat["scale"])
    else:
        echo("4/5 latents")
        chunks = []
        with torch.no_grad():
            for start in range(0, n, 64):
                chunks.append(vae.encode(mel[start:start + 64].float().to(device)).latent_dist.mode().cpu())
        raw = torch.cat(chunks)
        scale = float(1.0 / raw.std().clamp_min(1e-6))
        latents = (raw * scale).contiguous()
        atomic_torch_save({"latents": latents, "scale": scale}, latent_file)
        timings.add("latents", time.perf_counter() - t0)
    vae.register_to_config(scaling_factor=scale)

    # 5. UNet: v-prediction diffusion on the latents, conditioned on the frozen T5 states
    unet = build_unet(cfg)
    tango = assemble(cfg, tokenizer, text_encoder, unet, vae.cpu(), vocoder.cpu(), source=str(out))
    scheduler = tango.scheduler
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.lr_warmup_steps)
    step = latest_step(out)
    if step > cfg.steps:
        raise CuratorError(f"--out {out} is already at UNet step {step}; steps={cfg.steps} would go back (raise steps, "
                           "or pick a new --out)")
    if step:
        resumed = load_tango(out / f"step-{step}")  # the one loader: a checkpoint is a Tango folder
        unet.load_state_dict(resumed.unet.state_dict())
        state = torch.load(out / f"step-{step}" / STATE_FILE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        truncate_metrics(out / METRICS_FILE, step)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    unet.train()
    hidden, mask = data["hidden"], data["mask"]
    null_hidden, null_mask = data["null_hidden"], data["null_mask"]
    text_index = data["text_index"]
    echo(f"5/5 UNet ({n_params(unet) / 1e6:.2f} M parameters, steps {step}→{cfg.steps}, batch {cfg.batch_size})")

    def save_step(k: int) -> Path:
        final, tmp = out / f"step-{k}", out / f".step-{k}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tango.unet = accelerator.unwrap_model(unet)
        from curator.models.tango import save_tango

        save_tango(tango, tmp)
        atomic_torch_save({"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(), "step": k},
                          tmp / STATE_FILE)
        (tmp / CONFIG_FILE).write_text(cfg.to_json() + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final

    t0 = time.perf_counter()
    window: dict[str, list[float]] = {}
    win_start = time.perf_counter()
    last: dict[str, float] = {}
    bar = tqdm(total=cfg.steps, initial=step, desc="unet", unit="step", disable=not progress)
    num_t = scheduler.config.num_train_timesteps
    while step < cfg.steps:
        g = _gen(cfg.seed, 13, step)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=g)
        x0 = latents[idx]
        rows = text_index[idx]
        h, m = hidden[rows].clone(), mask[rows].clone()
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.uncond_prob
        h[drop], m[drop] = null_hidden, null_mask
        t = torch.randint(0, num_t, (cfg.batch_size,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        x0, h, m, t, noise = (v.to(device) for v in (x0, h, m, t, noise))
        noisy = scheduler.add_noise(x0, noise, t)
        target = diffusion_target(scheduler, x0, noise, t)
        with accelerator.autocast():
            pred = unet(noisy, t, encoder_hidden_states=h, encoder_attention_mask=m).sample
        mse = per_sample_mse(pred, target)
        weights = min_snr_weights(scheduler, t, cfg.snr_gamma) if cfg.snr_gamma > 0 else torch.ones_like(mse)
        loss = (mse * weights).mean()
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(unet.parameters(), cfg.max_grad_norm or float("inf"))
        lr = lr_scheduler.get_last_lr()[0]
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        for k, v in (("loss", loss.detach()), ("mse", mse.detach().mean()), ("grad_norm", grad_norm)):
            window.setdefault(k, []).append(float(v))
        if step % cfg.log_every == 0 or step == cfg.steps:
            last = {k: float(np.mean(v)) for k, v in window.items()}
            elapsed = max(time.perf_counter() - win_start, 1e-9)
            line = {"step": step, "epoch": round(step * cfg.batch_size / n, 4), "phase": "pretrain", "lr": lr,
                    "samples_per_s": len(window["loss"]) * cfg.batch_size / elapsed, **last}
            with open(out / METRICS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, sort_keys=True) + "\n")
            bar.set_postfix(loss=f"{last['loss']:.4g}")
            window, win_start = {}, time.perf_counter()
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_step(step)
        if stop_after is not None and step >= stop_after and step < cfg.steps:
            if step % cfg.checkpoint_every:
                save_step(step)
            bar.close()
            timings.add("unet", time.perf_counter() - t0)
            return PretrainResult(out, step, n)
    bar.close()
    timings.add("unet", time.perf_counter() - t0)

    # 6. the final model at DIR (each file replaced atomically, main_config.json last)
    tango.unet = accelerator.unwrap_model(unet).eval()
    _write_final(tango, out)
    summary = {"steps": cfg.steps, "n_examples": n, "n_captions": len(data["texts"]), "source": data["source"],
               "data_hash": data["hash"], "clip_s": cfg.clip_s, "latent_scale": scale,
               "parameters": {"text_encoder": n_params(text_encoder), "vae": n_params(vae), "vocoder": n_params(vocoder),
                              "unet": n_params(tango.unet)},
               "final": {"vae": vae_metrics, "vocoder": voc_metrics, "unet": last}, "timings_s": timings.values,
               "torch_threads": torch.get_num_threads(), "device": str(device)}
    atomic_write_json(out / SUMMARY_FILE, summary)
    return PretrainResult(out, cfg.steps, n, summary)


def _write_final(tango, out: Path) -> None:
    from curator.models.tango import save_tango
    from curator.models.tango.config import MAIN_CONFIG

    tmp = out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_tango(tango, tmp)
    (out / MAIN_CONFIG).unlink(missing_ok=True)  # the folder is not a model until every part is in place
    for item in sorted(tmp.iterdir(), key=lambda p: p.name == MAIN_CONFIG):
        target = out / item.name
        if item.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(item, target)
    tmp.rmdir()
