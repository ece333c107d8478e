"""The paper's numbers (Majumder et al., arXiv 2404.09956), in one place.

Every default that comes from the paper is defined here once and imported where it is used, so a
reader finds the figure, its section and its meaning together. docs/paper.md explains them.
"""

from __future__ import annotations

# --- audio and model (arXiv 2404.09956 §3.1) ---
SAMPLE_RATE = 16_000  # Tango's audio rate (Hz)
CLIP_SECONDS = 10.24  # Tango's clip length: 1024 mel frames at hop 160 → 256 latent frames
HOP_LENGTH = 160  # AudioLDM's STFT hop (samples)
N_MELS = 64  # AudioLDM's mel bands
GUIDANCE_SCALE = 3.0  # classifier-free guidance scale at sampling (§3.1, §4.1)
UNCOND_PROB = 0.1  # conditioning dropout in training (§3.1)

# --- candidate generation (arXiv 2404.09956 §4.1) ---
STEPS_1_1 = (5, 25, 50, 100)  # Strategy 1.1: denoising steps of the four clips of one caption
STEPS = 50  # Strategies 1.2, 2 and 3: denoising steps of every clip
SLOTS_1_2 = 4  # Strategy 1.2: clips per caption (different seeds)

# --- pair filter thresholds (arXiv 2404.09956 §4.1.2, Figure 4) ---
ALPHA = (0.45, 0.60)  # winner score under CLAP model 1, model 2
BETA_LOSER = (0.40, 0.0)  # loser score under model 1, model 2
DELTA1 = (0.05, 0.35)  # winner − loser range under model 1
DELTA2 = (0.08, 0.70)  # winner − loser range under model 2

# --- Diffusion-DPO recipe (arXiv 2404.09956 §4.2, §5.1) ---
DPO_BETA = 2000.0  # β of the Diffusion-DPO objective
LEARNING_RATE = 9.6e-7  # peak AdamW learning rate
LR_WARMUP_STEPS = 200
SFT_EPOCHS = 1  # one epoch of plain diffusion loss on the winners first
DPO_EPOCHS = 4  # then Diffusion-DPO epochs
TRAIN_BATCH_SIZE = 4  # pairs per device per micro-batch
GRADIENT_ACCUMULATION_STEPS = 4  # 4 × 4 × 2 GPUs = an effective batch of 32

# --- evaluation (arXiv 2404.09956 §5.1) ---
EVAL_STEPS = 200  # denoising steps when scoring a model on the test prompts
