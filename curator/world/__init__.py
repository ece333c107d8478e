"""The miniature world: procedural sound events, a caption grammar, and one backend of each kind.

Offline stand-ins for Tango (generator "world"), CLAP (judges "world-judge-a"/"world-judge-b")
and the LLM perturber ("world-rules"), behind the same interfaces as the real ones
(curator.backends), so nothing downstream special-cases them.
"""

from __future__ import annotations

from curator.world.grammar import CaptionError, Scene, parse_caption, random_captions
from curator.world.judge import VARIANTS, WorldJudge, detect, temporal_metrics
from curator.world.perturb import WorldPerturber
from curator.world.render import DEFECTS, WorldGenerator, render

JUDGE_NAMES = tuple(VARIANTS)


def make_generator() -> WorldGenerator:
    return WorldGenerator()


def make_judge(name: str = "world-judge-a") -> WorldJudge:
    return WorldJudge(name)


def make_perturber() -> WorldPerturber:
    return WorldPerturber()


__all__ = ["CaptionError", "DEFECTS", "JUDGE_NAMES", "Scene", "WorldGenerator", "WorldJudge", "WorldPerturber",
           "detect", "make_generator", "make_judge", "make_perturber", "parse_caption", "random_captions",
           "render", "temporal_metrics"]
