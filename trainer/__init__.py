"""Diffusion-DPO fine-tuning of Tango on curated preference pairs (arXiv 2404.09956 §4.2, §5.1).

config (TrainConfig) · data (export / store sources, audit policies) · cache (latents, text
encodings) · loss (Diffusion-DPO) · train (the loop, checkpoints, resume) · evaluate (`trainer eval`)
· runs (the store's TrainingRun records) · cli (`trainer run`, `trainer eval`).
"""
