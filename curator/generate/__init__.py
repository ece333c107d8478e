"""Generation: backends (Tango, AudioLDM/AudioLDM2 pipelines, the miniature world) and the
strategy runner of arXiv 2404.09956 §4.1 (`curator.generate.run.run_generation`)."""

from curator.generate.backends import (
    AudioLDM2Generator,
    AudioLDMGenerator,
    TangoGenerator,
    detect_backend,
    resolve_generator,
)

__all__ = ["AudioLDM2Generator", "AudioLDMGenerator", "TangoGenerator", "detect_backend", "resolve_generator"]
