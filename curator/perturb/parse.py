"""Prompts and answer parsing for Strategies 2 and 3 (arXiv 2404.09956 §4.1).

An answer is parsed line by line. Lines that start with a list marker — "1.", "1)", "(1)", "1:",
"-", "*", "•" or "–" — are the perturbed captions. An answer without any marker is accepted only
when it is exactly the requested number of non-blank lines (the paper's "one per line"); anything
else (a refusal, a paragraph) gives no captions, and the caller stores it with n_parsed=0.
From each caption the marker, surrounding quotes and markdown emphasis are removed. Empty lines,
repeats and lines identical to the original are dropped, comparing case-, punctuation- and
whitespace-insensitively.
"""

from __future__ import annotations

import re
import string
from importlib import resources

from curator.captions import CONTROL_RE
from db.errors import CuratorError

PERTURB_STRATEGIES = ("2", "3")
N_PERTURBATIONS = 5  # five perturbed captions per caption, arXiv 2404.09956 §4.1

_MARKER_RE = re.compile(r"^\s*(?:\(?\d{1,3}\s*[.):]\s*|[-*•–]\s+)")
_QUOTES = "\"'“”‘’«»`"
_PUNCT_RE = re.compile(f"[{re.escape(string.punctuation + _QUOTES)}]")


def check_strategy(strategy: str) -> str:
    strategy = str(strategy)
    if strategy not in PERTURB_STRATEGIES:
        raise CuratorError(f"unknown perturbation strategy {strategy!r}: expected 2 or 3 (arXiv 2404.09956 §4.1)")
    return strategy


def load_template(strategy: str) -> str:
    """The prompt template of STRATEGY, shipped as package data (placeholder `{caption}`)."""
    strategy = check_strategy(strategy)
    return resources.files("curator.perturb").joinpath("templates", f"strategy{strategy}.txt").read_text("utf-8")


def build_prompt(caption: str, strategy: str) -> str:
    return load_template(strategy).replace("{caption}", caption.strip())


def compare_key(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form used to find repeats."""
    return " ".join(_PUNCT_RE.sub(" ", text.casefold()).split())


def _clean(line: str) -> str:
    text = line.strip()
    for _ in range(3):  # e.g. **"A dog barks"** → A dog barks
        before = text
        text = text.strip()
        if len(text) >= 4 and text[:2] in ("**", "__") and text[-2:] == text[:2]:
            text = text[2:-2]
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
            text = text[1:-1]
        if text == before:
            break
    return " ".join(text.split())


def clean_perturbations(lines: list[str], original: str) -> list[str]:
    """Drop empty lines, repeats, lines identical to ORIGINAL (compare_key) and lines holding a
    control character (NUL, ESC, …: not a caption, as captions import refuses them), keeping order."""
    seen = {compare_key(original)}
    out: list[str] = []
    for line in lines:
        if CONTROL_RE.search(line):
            continue
        text = _clean(line)
        key = compare_key(text)
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(text)
    return out


def parse_perturbations(raw: str | None, original: str, *, expected: int = N_PERTURBATIONS) -> list[str]:
    """The perturbed captions in an LLM answer RAW for caption ORIGINAL (possibly empty)."""
    if not raw:
        return []
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    marked = [_MARKER_RE.sub("", ln, count=1) for ln in lines if _MARKER_RE.match(ln)]
    if not marked and len(lines) == expected:
        marked = lines
    return clean_perturbations(marked, original)
