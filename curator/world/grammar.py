"""The caption grammar of the miniature world: ten sound events, their English names, relations.

A caption names one to four events joined by relations, in the style of AudioCaps:

    "A dog barking twice then a bell ringing"
    "Rain falling while a distant car horn honking, followed by footsteps"
    "A whistle blowing after someone knocking three times"

Event phrase: ``[a|an|the|some] [loud|soft] [distant] NOUN [VERB] [COUNT]`` where COUNT is
``once``, ``twice``, ``thrice`` or ``N times`` (N a digit or a number word). Relations:
``then`` / ``and then`` / ``followed by`` / ``before`` (the next event comes later), ``after``
(the next event comes EARLIER), ``while`` / ``and`` (the two overlap).

Relations bind to the right: each one places its event relative to the event named just before
it. "A after B, then C" therefore reads A after (B, then C): the timeline is B, C, A.

`parse_caption` turns text into a `Scene`; `Scene.text()` turns it back (the round trip is exact
for captions this module writes). Everything a user can get wrong — an unknown event, a count of
zero or above `MAX_COUNT`, an event named twice, more than `MAX_EVENTS` events — raises
`CaptionError` (a CuratorError) naming the caption.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from db.errors import CuratorError

MAX_EVENTS = 4  # the issue: one to four events per caption
MAX_COUNT = 10  # "absurd counts" above this are refused
MAX_OVERLAP = 2  # at most two events sound at once ("A while B")


class CaptionError(CuratorError):
    """A caption the world grammar cannot parse or cannot render; the message names the caption."""


@dataclass(frozen=True)
class EventSpec:
    key: str
    article: str  # "a", "an" or "" (mass nouns: "rain", "footsteps", "knocking")
    noun: str
    verb: str  # -ing form written in captions ("" when the noun says it all)
    verb_forms: tuple[str, ...]  # other forms the parser accepts ("barks", "bark")
    texture: bool  # continuous texture (no counts) vs. discrete repeated units
    default_count: int  # repetitions of a discrete unit when the caption gives no count
    related: tuple[str, ...]  # concepts a Strategy-2 perturbation may swap it for


EVENTS: dict[str, EventSpec] = {
    e.key: e
    for e in (
        EventSpec("bell", "a", "bell", "ringing", ("rings", "ring"), False, 2, ("whistle", "horn", "knock")),
        EventSpec("dog", "a", "dog", "barking", ("barks", "bark"), False, 3, ("bird", "knock", "footsteps")),
        EventSpec("siren", "a", "siren", "wailing", ("wails", "wail", "blaring"), True, 1, ("horn", "whistle", "engine")),
        EventSpec("rain", "", "rain", "falling", ("falls", "pouring"), True, 1, ("engine", "footsteps", "bird")),
        EventSpec("horn", "a", "car horn", "honking", ("honks", "honk", "beeping"), False, 2, ("siren", "bell", "engine")),
        EventSpec("footsteps", "", "footsteps", "", ("walking",), True, 1, ("knock", "dog", "rain")),
        EventSpec("bird", "a", "bird", "chirping", ("chirps", "chirp", "singing", "tweeting"), False, 2, ("dog", "whistle", "bell")),
        EventSpec("engine", "an", "engine", "humming", ("hums", "hum", "running", "idling"), True, 1, ("siren", "horn", "rain")),
        EventSpec("whistle", "a", "whistle", "blowing", ("blows", "blown"), False, 1, ("bell", "bird", "siren")),
        EventSpec("knock", "", "knocking", "", ("on a door",), False, 3, ("footsteps", "bell", "dog")),
    )
}

LEVELS = ("loud", "soft")
# relation word → how the next event is placed (arXiv 2404.09956 §4.1: T2's keywords while/before/after/then/followed)
RELATIONS = {"then": "seq", "and then": "seq", "followed by": "seq", "before": "seq", "after": "rev",
             "while": "overlap", "and": "overlap"}
WRITTEN_RELATIONS = ("then", "followed by", "before", "after", "while")  # what `random_caption` writes

_NUMBER_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
                 "fourteen": 14, "fifteen": 15, "twenty": 20, "fifty": 50, "hundred": 100}
_COUNT_WORDS = {1: "once", 2: "twice"}
_SPLIT = re.compile(r"\s*,?\s*\b(and then|followed by|then|before|after|while|and)\b\s*,?\s*")
_COUNT = re.compile(r"\s+(?:(once|twice|thrice)|(\w+)\s+times?)$")


@dataclass(frozen=True)
class Mention:
    """One event named in a caption."""

    event: str
    count: int | None = None  # None: the event's default number of repetitions
    level: str | None = None  # "loud", "soft" or None
    distant: bool = False

    @property
    def spec(self) -> EventSpec:
        return EVENTS[self.event]

    @property
    def repeats(self) -> int:
        return self.count if self.count is not None else self.spec.default_count

    def text(self) -> str:
        s = self.spec
        words = [w for w in (self.level, "distant" if self.distant else None, s.noun, s.verb) if w]
        phrase = " ".join(words)
        if s.article:
            phrase = ("an " if phrase[0] in "aeiou" else "a ") + phrase
        if self.count is not None:
            phrase += " " + _COUNT_WORDS.get(self.count, f"{_number_word(self.count)} times")
        return phrase


@dataclass(frozen=True)
class Scene:
    """A parsed caption: mentions in the order the text names them, and the relations between them."""

    mentions: tuple[Mention, ...]
    relations: tuple[str, ...] = field(default=())  # len(mentions) - 1 relation words

    def __post_init__(self) -> None:
        if len(self.relations) != max(0, len(self.mentions) - 1):
            raise ValueError(f"{len(self.mentions)} mentions need {len(self.mentions) - 1} relations, got {self.relations}")

    def text(self) -> str:
        out = self.mentions[0].text()
        for rel, m in zip(self.relations, self.mentions[1:]):
            out += (", " if rel == "followed by" else " ") + f"{rel} {m.text()}"
        return out[0].upper() + out[1:]

    def groups(self) -> list[list[int]]:
        """Mention indices in temporal order; events in one group overlap ("while")."""
        groups: list[list[int]] = [[0]] if self.mentions else []
        cursor = 0
        for i, rel in enumerate(self.relations, start=1):
            kind = RELATIONS[rel]
            if kind == "seq":
                groups.insert(cursor + 1, [i])
                cursor += 1
            elif kind == "rev":
                groups.insert(cursor, [i])
            else:
                groups[cursor].append(i)
        return groups

    def ordered_events(self) -> list[list[str]]:
        return [[self.mentions[i].event for i in g] for g in self.groups()]

    def events(self) -> list[str]:
        return [m.event for m in self.mentions]

    def before_pairs(self) -> list[tuple[str, str]]:
        """(a, b) for every two events the caption puts in order, a first."""
        order = self.ordered_events()
        return [(a, b) for gi, ga in enumerate(order) for gb in order[gi + 1:] for a in ga for b in gb]

    @property
    def temporal(self) -> bool:
        return len(self.mentions) > 1


def _number_word(n: int) -> str:
    for w, v in _NUMBER_WORDS.items():
        if v == n:
            return w
    return str(n)


def _phrase_table() -> list[tuple[str, str]]:
    """(phrase, event key) for every accepted noun/verb spelling, longest first."""
    rows = []
    for s in EVENTS.values():
        rows.append((s.noun, s.key))
        for v in (s.verb, *s.verb_forms):
            if v:
                rows.append((f"{s.noun} {v}", s.key))
    extra = {"knock": ["knocks", "knocking on a door", "knocking on a wooden door", "someone knocking"],
             "footsteps": ["footsteps walking", "people walking", "someone walking", "walking footsteps"],
             "horn": ["horn honking", "horn honks", "car honking", "a car honking"]}
    for key, phrases in extra.items():
        rows.extend((p, key) for p in phrases)
    return sorted(rows, key=lambda r: -len(r[0]))


_PHRASES = _phrase_table()


def _parse_mention(chunk: str, caption: str) -> Mention:
    text = chunk.strip(" ,.;")
    count = None
    m = _COUNT.search(text)
    if m:
        word = m.group(1) or m.group(2)
        if word in ("once", "twice", "thrice"):
            count = {"once": 1, "twice": 2, "thrice": 3}[word]
        elif word.isdigit():
            count = int(word)
        elif word in _NUMBER_WORDS:
            count = _NUMBER_WORDS[word]
        else:
            raise CaptionError(f"caption {caption!r}: cannot read the count {m.group(0).strip()!r}")
        text = text[: m.start()].strip()
        if count <= 0:
            raise CaptionError(f"caption {caption!r}: a count of {count} gives a zero-length event")
        if count > MAX_COUNT:
            raise CaptionError(f"caption {caption!r}: a count of {count} is absurd (at most {MAX_COUNT} repeats)")
    words = text.split()
    if words and words[0] in ("a", "an", "the", "some"):
        words = words[1:]
    level = None
    distant = False
    while words and words[0] in (*LEVELS, "faint", "quiet", "distant"):
        w = words.pop(0)
        if w == "distant":
            distant = True
            continue
        w = "soft" if w in ("faint", "quiet") else w
        if level is not None and level != w:
            raise CaptionError(f"caption {caption!r}: {chunk.strip()!r} is both loud and soft")
        level = w
    rest = " ".join(words)
    for phrase, key in _PHRASES:
        if rest == phrase or rest == f"someone {phrase}":
            if count is not None and EVENTS[key].texture:
                raise CaptionError(f"caption {caption!r}: {EVENTS[key].noun} is continuous and cannot be counted")
            return Mention(key, count, level, distant)
    if not rest:
        raise CaptionError(f"caption {caption!r}: an empty event phrase")
    raise CaptionError(f"caption {caption!r}: unknown event {rest!r} (known: {', '.join(EVENTS)})")


def parse_caption(caption: str) -> Scene:
    """Caption text → Scene; CaptionError (naming the caption) when the grammar cannot read it."""
    if not isinstance(caption, str) or not caption.strip():
        raise CaptionError(f"caption {caption!r} is empty")
    text = re.sub(r"\s+", " ", caption.strip().lower()).rstrip(".!")
    pieces = _SPLIT.split(text)
    chunks, rels = pieces[0::2], pieces[1::2]
    if any(not c.strip(" ,") for c in chunks):
        raise CaptionError(f"caption {caption!r}: a relation without an event on both sides")
    if len(chunks) > MAX_EVENTS:
        raise CaptionError(f"caption {caption!r} names {len(chunks)} events (at most {MAX_EVENTS})")
    mentions = tuple(_parse_mention(c, caption) for c in chunks)
    seen = [m.event for m in mentions]
    for key in seen:
        if seen.count(key) > 1:
            raise CaptionError(f"caption {caption!r} names {EVENTS[key].noun} twice (use a count instead)")
    scene = Scene(mentions, tuple(rels))
    if any(len(g) > MAX_OVERLAP for g in scene.groups()):
        raise CaptionError(f"caption {caption!r}: more than {MAX_OVERLAP} events at once")
    return scene


# ---------------------------------------------------------------------------------------------
# Sampling captions

N_EVENT_WEIGHTS = (0.25, 0.4, 0.25, 0.1)  # P(1..4 events)


def random_mention(rng: np.random.Generator, key: str) -> Mention:
    spec = EVENTS[key]
    u = rng.random()
    level = "loud" if u < 0.12 else "soft" if u < 0.24 else None
    distant = bool(rng.random() < 0.12)
    count = None
    if not spec.texture and rng.random() < 0.35:
        count = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.45, 0.3, 0.1]))
    return Mention(key, count, level, distant)


def random_scene(rng: np.random.Generator, n_events: int | None = None) -> Scene:
    n = int(rng.choice([1, 2, 3, 4], p=N_EVENT_WEIGHTS)) if n_events is None else n_events
    if not 1 <= n <= MAX_EVENTS:
        raise CaptionError(f"a caption has 1 to {MAX_EVENTS} events, not {n}")
    keys = [str(k) for k in rng.choice(list(EVENTS), size=n, replace=False)]
    mentions = tuple(random_mention(rng, k) for k in keys)
    while True:
        rels = tuple(str(r) for r in rng.choice(WRITTEN_RELATIONS, size=n - 1, p=[0.3, 0.2, 0.15, 0.15, 0.2]))
        scene = Scene(mentions, rels)
        if all(len(g) <= MAX_OVERLAP for g in scene.groups()):
            return scene


def random_captions(n: int, seed: int = 0) -> list[str]:
    """N distinct captions, deterministic for a seed."""
    if n < 0:
        raise CaptionError(f"cannot write {n} captions")
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise CaptionError(f"could not find {n} distinct captions (found {len(out)})")
        text = random_scene(rng).text()
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out
