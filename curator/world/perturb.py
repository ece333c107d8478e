"""The `world` perturber: rule-based Strategy 2 and 3 perturbations from the caption grammar.

Strategy 2 (arXiv 2404.09956 §4.1): swap one or two events for related ones (the rest of the caption,
its relations and modifiers, stays), so the caption keeps some concepts but is wrong about
the audio. Strategy 3: change the order of events (swap two, or turn "before" into "after"),
or add or remove one event. Deterministic: the choices are seeded by the caption text.
The raw response is a numbered list, as an LLM would write it.
"""

from __future__ import annotations

import hashlib

import numpy as np

from db.errors import CuratorError
from curator.world.grammar import EVENTS, MAX_EVENTS, Mention, Scene, parse_caption, random_mention

N_PERTURBATIONS = 5  # arXiv 2404.09956 §4.1: five perturbed captions per caption
_FLIP = {"before": "after", "after": "before", "then": "after", "followed by": "after", "and then": "after",
         "while": "then", "and": "then"}


def _rng(caption: str, strategy: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(f"{strategy}|{caption}".encode()).digest()[:8], "little"))


def _swap_concepts(scene: Scene, rng) -> Scene:
    ms = list(scene.mentions)
    k = 1 if len(ms) == 1 or rng.random() < 0.7 else 2
    for i in rng.choice(len(ms), size=k, replace=False):
        used = {m.event for m in ms}
        options = [r for r in EVENTS[ms[i].event].related if r not in used]
        if not options or rng.random() < 0.15:  # now and then an unrelated swap, so five lines exist
            options = [e for e in EVENTS if e not in used]
        new = str(options[int(rng.integers(len(options)))])
        count = ms[i].count if not EVENTS[new].texture else None
        ms[i] = Mention(new, count, ms[i].level, ms[i].distant)
    return Scene(tuple(ms), scene.relations)


def _temporal_change(scene: Scene, rng) -> Scene:
    ms, rels = list(scene.mentions), list(scene.relations)
    moves = []
    if len(ms) >= 2:
        moves += ["swap", "flip"]
    if len(ms) < MAX_EVENTS:
        moves.append("add")
    if len(ms) >= 2:
        moves.append("remove")
    move = moves[int(rng.integers(len(moves)))]
    if move == "swap":
        i, j = sorted(int(x) for x in rng.choice(len(ms), size=2, replace=False))
        ms[i], ms[j] = ms[j], ms[i]
    elif move == "flip":
        i = int(rng.integers(len(rels)))
        rels[i] = _FLIP[rels[i]]
    elif move == "add":
        free = [e for e in EVENTS if e not in {m.event for m in ms}]
        new = random_mention(rng, str(free[int(rng.integers(len(free)))]))
        at = int(rng.integers(len(ms) + 1))
        ms.insert(at, new)
        rels.insert(max(0, at - 1), ("then", "before", "after", "followed by")[int(rng.integers(4))])
    else:
        at = int(rng.integers(len(ms)))
        del ms[at]
        del rels[max(0, at - 1)]
    return Scene(tuple(ms), tuple(rels))


class WorldPerturber:
    """`Perturber` backend "world-rules" (`curator perturb --backend world`)."""

    model = "world-rules"

    def perturb(self, caption: str, strategy: str) -> tuple[str, list[str]]:
        if strategy not in ("2", "3"):
            raise CuratorError(f"unknown perturbation strategy {strategy!r} (known: 2, 3)")
        scene = parse_caption(caption)
        rng = _rng(scene.text(), strategy)
        change = _swap_concepts if strategy == "2" else _temporal_change
        original = scene.text()
        lines: list[str] = []
        for _ in range(200):
            new = change(scene, rng)
            if any(len(g) > 2 for g in new.groups()):
                continue
            text = new.text()
            if text != original and text not in lines and new.ordered_events() != scene.ordered_events():
                lines.append(text)
            if len(lines) == N_PERTURBATIONS:
                break
        raw = "\n".join(f"{i}. {t}" for i, t in enumerate(lines, start=1))
        return raw, lines
