"""The pieces of one training step (arXiv 2404.09956 §4.2, §5.1): the cached features a run reads,
the step schedule (SFT epochs, then DPO), the seeded sampler of pair indices, one micro-batch's
noise and conditioning dropout, the optimizer, and the SFT and Diffusion-DPO forward passes
(winner and loser as one doubled batch sharing timestep and noise).

Determinism. Sample order is a seeded permutation per epoch, and each micro-batch draws its
timesteps, noise and conditioning dropout from its own generator seeded by (seed, micro-batch,
process), so a micro-batch is the same whether the run was resumed or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from db.errors import CuratorError
from trainer.cache import FeatureCache
from trainer.config import TrainConfig
from trainer.data import PairSet
from trainer.loss import diffusion_target, dpo_loss, per_sample_mse, sft_loss
from trainer.model import unet_inputs

# Metric names (TRL's where they exist: rewards/*).
DPO_METRICS = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected",
               "mse/model_chosen", "mse/model_rejected", "mse/ref_chosen", "mse/ref_rejected")
SFT_METRICS = ("loss", "mse/model_chosen")


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


class Batches:
    """Micro-batch m of a run, on its device: the sampler's pairs, with the timesteps, noise and
    dropout of m's own generator (the same batch for the loop and the reference pre-pass)."""

    def __init__(self, feats: Features, sampler: "Sampler", *, seed: int, rank: int, num_timesteps: int,
                 uncond_prob: float, device):
        self.feats, self.sampler, self.seed, self.rank = feats, sampler, seed, rank
        self.num_timesteps, self.uncond_prob, self.device = num_timesteps, uncond_prob, device

    def __call__(self, micro: int) -> StepBatch:
        return make_batch(self.feats, self.sampler.indices(micro), micro_generator(self.seed, micro, self.rank),
                          num_timesteps=self.num_timesteps, uncond_prob=self.uncond_prob, device=self.device)


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
