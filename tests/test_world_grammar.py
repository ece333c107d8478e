"""The world's caption grammar, the `world captions` command and the rule-based perturber."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from curator.cli import app
from db.errors import CuratorError
from curator.world import make_perturber, parse_caption, random_captions
from curator.world.grammar import EVENTS, CaptionError


def test_round_trip_and_determinism():
    caps = random_captions(400, seed=3)
    assert len(set(caps)) == 400
    assert caps == random_captions(400, seed=3)
    assert caps != random_captions(400, seed=4)
    for c in caps:
        assert parse_caption(c).text() == c
    used = {e for c in caps for e in parse_caption(c).events()}
    assert used == set(EVENTS)


@pytest.mark.parametrize("caption, order", [
    ("A dog barking then a bell ringing", [["dog"], ["bell"]]),
    ("A dog barking followed by a bell ringing", [["dog"], ["bell"]]),
    ("A dog barking before a bell ringing", [["dog"], ["bell"]]),
    ("A dog barking after a bell ringing", [["bell"], ["dog"]]),
    ("A dog barking while rain falling", [["dog", "rain"]]),
    ("A dog barks and then the bell rings", [["dog"], ["bell"]]),
    ("A dog barking after rain falling then a bell ringing", [["rain"], ["bell"], ["dog"]]),
])
def test_relations(caption, order):
    assert parse_caption(caption).ordered_events() == order


def test_counts_and_modifiers():
    s = parse_caption("A loud distant dog barking three times then soft knocking twice")
    dog, knock = s.mentions
    assert (dog.count, dog.level, dog.distant) == (3, "loud", True)
    assert (knock.count, knock.level) == (2, "soft")
    assert parse_caption("a bell ringing 7 times").mentions[0].count == 7


@pytest.mark.parametrize("caption, words", [
    ("a cat meowing", "unknown event 'cat meowing'"),
    ("a dog barking eleven times", "absurd"),
    ("a dog barking 40 times", "absurd"),
    ("a dog barking zero times", "zero-length"),
    ("rain falling twice", "cannot be counted"),
    ("a dog barking then a dog barking", "twice"),
    ("a dog barking then", "relation without an event"),
    ("", "empty"),
    ("a dog barking then a bell ringing then rain falling then footsteps then a whistle blowing", "at most 4"),
])
def test_bad_captions_are_refused_naming_the_caption(caption, words):
    with pytest.raises(CaptionError) as err:
        parse_caption(caption)
    assert words in str(err.value)
    assert isinstance(err.value, CuratorError)
    if caption:  # named by its start: error messages quote at most a short prefix of a value
        assert repr(caption)[:40] in str(err.value)


def test_world_captions_command(tmp_path):
    out = tmp_path / "caps.txt"
    res = CliRunner().invoke(app, ["world", "captions", "25", "--seed", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert lines == random_captions(25, seed=5)
    res = CliRunner().invoke(app, ["world", "captions", "0"])
    assert res.exit_code == 2 and "at least 1" in res.output


def test_perturber_strategies():
    p = make_perturber()
    assert p.model == "world-rules"
    for c in random_captions(60, seed=8):
        scene = parse_caption(c)
        for strategy in ("2", "3"):
            raw, lines = p.perturb(c, strategy)
            assert (raw, lines) == p.perturb(c, strategy)  # deterministic
            assert len(lines) == 5 and len(set(lines)) == 5 and c not in lines
            assert raw.splitlines()[0].startswith("1. ")
            for line in lines:
                new = parse_caption(line)
                if strategy == "2":  # same shape, some concepts kept unless one event only
                    assert len(new.mentions) == len(scene.mentions) and new.relations == scene.relations
                    kept = set(new.events()) & set(scene.events())
                    assert kept or len(scene.mentions) <= 2
                    assert new.events() != scene.events()
                else:  # order changed, or one event added or removed
                    assert new.ordered_events() != scene.ordered_events()
                    assert abs(len(new.mentions) - len(scene.mentions)) <= 1
    with pytest.raises(CuratorError, match="strategy"):
        p.perturb("a dog barking", "4")
    with pytest.raises(CaptionError, match="cat"):
        p.perturb("a cat meowing", "2")
