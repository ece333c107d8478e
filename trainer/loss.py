"""Diffusion-DPO and plain diffusion losses (arXiv 2404.09956 §4.2, Eq. 17).

Eq. 17 for one pair (τ, x_w, x_l), one timestep n and one noise ε shared by both clips:

    loss = −log σ( −β·N·ω(λ_n) · [ (‖ε_w − ε̂_θ(x_w)‖² − ‖ε_w − ε̂_ref(x_w)‖²)
                                  − (‖ε_l − ε̂_θ(x_l)‖² − ‖ε_l − ε̂_ref(x_l)‖²) ] )

As in both public implementations (official Tango 2 trainer, SalesforceAIResearch/DiffusionDPO):
‖·‖² becomes a *mean* over latent elements, the per-timestep weight ω(λ_n) is dropped and the
constant N·ω is folded into β, so β·N·ω(λ_n) → β/2 for every n:

    inside = −β/2 · ((L_w − L_l) − (L_w,ref − L_l,ref)),   loss = −log σ(inside)

(diffusers' research example writes the same thing as −log σ(β'·(ref_diff − model_diff)) with
β' = β/2.) The regression target is the noise for epsilon models and the velocity
(scheduler.get_velocity) for v-prediction models such as Tango.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def diffusion_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet regresses to, following scheduler.config.prediction_type."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"prediction_type {kind!r} is not supported (epsilon or v_prediction)")


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) × 2 → (B,): mean squared error over every latent element, in float32."""
    return (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)


@dataclass
class DPOTerms:
    loss: torch.Tensor  # () mean over pairs
    inside: torch.Tensor  # (B,) the argument of log σ
    reward_chosen: torch.Tensor  # (B,) −β/2 · (L_w − L_w,ref)
    reward_rejected: torch.Tensor  # (B,) −β/2 · (L_l − L_l,ref)

    @property
    def accuracy(self) -> torch.Tensor:
        """Implicit accuracy: the share of pairs with inside > 0."""
        return (self.inside > 0).float().mean()

    @property
    def margin(self) -> torch.Tensor:
        return (self.reward_chosen - self.reward_rejected).mean()


def dpo_loss(model_mse: torch.Tensor, ref_mse: torch.Tensor, beta: float) -> DPOTerms:
    """model_mse, ref_mse: (2B,) with the B winners first, then their B losers (same order)."""
    if model_mse.shape != ref_mse.shape or model_mse.ndim != 1 or model_mse.shape[0] % 2:
        raise ValueError(f"expected two equal (2B,) tensors, got {tuple(model_mse.shape)} and {tuple(ref_mse.shape)}")
    model_w, model_l = model_mse.chunk(2)
    ref_w, ref_l = ref_mse.chunk(2)
    reward_chosen = -0.5 * beta * (model_w - ref_w)
    reward_rejected = -0.5 * beta * (model_l - ref_l)
    inside = reward_chosen - reward_rejected  # = −β/2·((L_w − L_l) − (L_w,ref − L_l,ref))
    return DPOTerms(-F.logsigmoid(inside).mean(), inside, reward_chosen, reward_rejected)


def sft_loss(model_mse: torch.Tensor) -> torch.Tensor:
    """Plain diffusion loss on the winners (the SFT epoch of arXiv 2404.09956 §5.1)."""
    return model_mse.mean()
