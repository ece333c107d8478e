"""The Diffusion-DPO loss against values computed by hand (arXiv 2404.09956 §4.2), epsilon and v."""

import math

import pytest
import torch
from diffusers import DDPMScheduler

from trainer.loss import diffusion_target, dpo_loss, per_sample_mse, sft_loss


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_dpo_loss_by_hand():
    # two pairs: winners first, then losers
    model = torch.tensor([0.10, 0.50, 0.30, 0.20])  # L_w = (.1, .5), L_l = (.3, .2)
    ref = torch.tensor([0.20, 0.40, 0.20, 0.30])  # L_w,ref = (.2, .4), L_l,ref = (.2, .3)
    beta = 2.0
    # pair 0: inside = −1·((.1 − .3) − (.2 − .2)) = 0.2 ; pair 1: −1·((.5 − .2) − (.4 − .3)) = −0.2
    terms = dpo_loss(model, ref, beta)
    assert terms.inside.tolist() == pytest.approx([0.2, -0.2], abs=1e-6)
    want = (-math.log(_sigmoid(0.2)) - math.log(_sigmoid(-0.2))) / 2
    assert terms.loss.item() == pytest.approx(want, rel=1e-6)
    assert terms.accuracy.item() == 0.5
    # rewards: −β/2 (L − L_ref)
    assert terms.reward_chosen.tolist() == pytest.approx([0.1, -0.1], abs=1e-6)
    assert terms.reward_rejected.tolist() == pytest.approx([-0.1, 0.1], abs=1e-6)
    assert terms.margin.item() == pytest.approx(0.0, abs=1e-6)


def test_dpo_loss_equal_to_reference_is_log2():
    mse = torch.tensor([0.3, 0.7, 0.4, 0.1])
    assert dpo_loss(mse, mse.clone(), 2000.0).loss.item() == pytest.approx(math.log(2), rel=1e-6)


def test_dpo_loss_rejects_odd_shapes():
    with pytest.raises(ValueError):
        dpo_loss(torch.zeros(3), torch.zeros(3), 1.0)
    with pytest.raises(ValueError):
        dpo_loss(torch.zeros(4), torch.zeros(2), 1.0)


def test_per_sample_mse_is_a_mean_over_elements():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])  # (2, 1, 2, 2)
    target = torch.zeros_like(pred)
    assert per_sample_mse(pred, target).tolist() == pytest.approx([(1 + 4 + 9 + 16) / 4, 0.0])
    assert sft_loss(per_sample_mse(pred, target)).item() == pytest.approx(7.5 / 2)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_full_chain_by_hand(prediction_type):
    """noise → target → MSE → inside → loss, each step written out with the schedule's ᾱ_t."""
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                          beta_schedule="scaled_linear", prediction_type=prediction_type)
    x_w = torch.tensor([[[[0.5, -1.0]]]])  # (1, 1, 1, 2)
    x_l = torch.tensor([[[[2.0, 0.0]]]])
    eps = torch.tensor([[[[0.3, 0.7]]]])
    t = torch.tensor([500, 500])
    latents, noise = torch.cat([x_w, x_l]), torch.cat([eps, eps])  # shared noise and timestep
    target = diffusion_target(sched, latents, noise, t)
    a = float(sched.alphas_cumprod[500])
    if prediction_type == "epsilon":
        want = [[0.3, 0.7], [0.3, 0.7]]
    else:  # v = sqrt(ᾱ) ε − sqrt(1 − ᾱ) x0
        want = [[math.sqrt(a) * e - math.sqrt(1 - a) * x for e, x in zip((0.3, 0.7), row)]
                for row in ((0.5, -1.0), (2.0, 0.0))]
    assert target.flatten().tolist() == pytest.approx(want[0] + want[1], rel=1e-5)

    pred_model = torch.tensor([[[[0.0, 1.0]]], [[[1.0, 1.0]]]])
    pred_ref = torch.tensor([[[[0.5, 0.5]]], [[[0.5, 0.5]]]])
    tw, tl = want
    mse = lambda p, q: ((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2) / 2  # noqa: E731
    lw, ll = mse((0.0, 1.0), tw), mse((1.0, 1.0), tl)
    rw, rl = mse((0.5, 0.5), tw), mse((0.5, 0.5), tl)
    beta = 50.0
    inside = -beta / 2 * ((lw - ll) - (rw - rl))
    terms = dpo_loss(per_sample_mse(pred_model, target), per_sample_mse(pred_ref, target), beta)
    assert terms.inside.item() == pytest.approx(inside, rel=1e-5)
    assert terms.loss.item() == pytest.approx(-math.log(_sigmoid(inside)), rel=1e-5)


def test_unknown_prediction_type_is_refused():
    sched = DDPMScheduler(prediction_type="sample")
    with pytest.raises(ValueError, match="prediction_type"):
        diffusion_target(sched, torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), torch.tensor([1]))
