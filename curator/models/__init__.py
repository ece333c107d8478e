"""Model loaders shared by the curator and the trainer.

- `curator.models.tango`: the one Tango loader/saver (declare-lab checkpoint layout ↔ diffusers and
  transformers classes), text encoding, mel/latent/waveform conversions and the official sampler.
- `curator.models.tiny`: a tiny Tango of the same classes, saved in the real layout, for tests.
- `curator.models.audioldm`: diffusers AudioLDM / AudioLDM2 pipelines by hub id or path.
"""
