"""CLAP scoring (arXiv 2404.09956 §4.1.2): the ClapModel scorer, laion `.pt` loading, tiny models, the runner."""

from curator.scoring.clap import DEFAULT_PROCESSOR_SOURCE, ClapScorer, load_clap
from curator.scoring.laion import load_laion_clap
from curator.scoring.run import register_models, run_scoring

__all__ = ["ClapScorer", "DEFAULT_PROCESSOR_SOURCE", "load_clap", "load_laion_clap", "register_models", "run_scoring"]
