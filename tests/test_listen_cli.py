"""`curator listen ...`: clip sets, sessions, open/close and results from the
command line, on SQLite and PostgreSQL (`store_url`); a clip set written by `trainer eval` is
listed and usable; every user error is one line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from annotate_ui.logic.listening import clipsets, design, queue, results
from curator.stats import design_mean_ci, krippendorff_alpha, krippendorff_alpha_ci, paired_difference_ci
from curator.audio import AudioStore
from curator.cli import app
from db.errors import CuratorError
from db.annotation import User
from db.listening import ListeningSession
from db.models import AudioClip, Caption, text_hash
from db.session import open_store
from builders.ui import play_item

runner = CliRunner()


def listen(*args: str, db: str):
    return runner.invoke(app, ["listen", *args, "--db", db])


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(result, match: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], result.output
    return lines[0]


def add_world(url: str, audio_root, n_captions: int = 6) -> dict[str, list[int]]:
    """N test captions, one clip each of sysA and sysB (strategy eval); returns clip ids per generator."""
    from curator.audio import AudioStore

    store = AudioStore(audio_root)
    rng = np.random.default_rng(0)
    ids: dict[str, list[int]] = {"sysA": [], "sysB": []}
    with open_store(url)() as s:
        caps = [Caption(text=f"a bell rings {i} times", text_sha=text_hash(f"a bell rings {i} times"), split="test")
                for i in range(n_captions)]
        s.add_all(caps)
        s.flush()
        for gen in ids:
            for cap in caps:
                sha, rel = store.put_wave(rng.standard_normal(800).astype(np.float32) * 0.1, 16000)
                clip = AudioClip(sha256=sha, path=rel, sample_rate=16000, num_samples=800, duration_s=0.05,
                                 generator=gen, checkpoint_id=f"{gen}-ckpt", prompt=cap.text, caption_id=cap.id,
                                 strategy="eval", slot=0)
                s.add(clip)
                s.flush()
                ids[gen].append(clip.id)
        s.add_all([User(name=f"rater{i}", role="rater", password_hash="$argon2id$unused") for i in range(3)])
        s.commit()
    return ids


def test_clip_sets_sessions_and_results(store_url, tmp_path):
    ids = add_world(store_url, tmp_path / "audio")
    assert "no clip sets" in ok(listen("clip-sets", db=store_url))

    # 1. Clip sets: from a generator's stored clips, and from explicit clip ids
    out = ok(listen("clip-set", "create", "set-a", "--generator", "sysA", db=store_url))
    assert "created clip set set-a" in out and "6 clips of sysA @ sysA-ckpt" in out
    clips = [x for c in ids["sysB"] for x in ("--clip", str(c))]
    assert "6 clips of sysB" in ok(listen("clip-set", "create", "set-b", *clips, "--note", "by hand", db=store_url))
    lines = ok(listen("clip-sets", db=store_url)).strip().splitlines()
    assert [ln.split("\t")[1:] for ln in lines] == [["set-a", "sysA", "sysA-ckpt", "6 clips"],
                                                    ["set-b", "sysB", "sysB-ckpt", "6 clips"]]

    # 2. Sessions: the defaults are arXiv 2404.09956 §5.3's (50 prompts: more than this store has; ≥ 4 raters)
    one_line_error(listen("create", "too-big", "--clip-set", "set-a", "--clip-set", "set-b", db=store_url),
                   "asked for 50 prompts but the chosen clip sets have only 6 in common")
    out = ok(listen("create", "defaults", "--clip-set", "set-a", "--clip-set", "set-b", "--prompts", "3",
                    db=store_url))
    assert "3 prompts × 2 systems = 6 clips + 2 gold items; 4 raters per clip; seed 0; open" in out
    out = ok(listen("create", "s1", "--clip-set", "set-a", "--clip-set", "set-b", "--prompts", "4",
                    "--raters-per-clip", "2", "--gold", "3", "--seed", "7", "--split", "test", db=store_url))
    assert "4 prompts × 2 systems = 8 clips + 3 gold items; 2 raters per clip; seed 7" in out
    with open_store(store_url)() as s:
        ls = s.scalar(select(ListeningSession).where(ListeningSession.name == "s1"))
        assert (ls.seed, ls.min_raters, ls.is_open, len(ls.items), sum(i.is_gold for i in ls.items)) == (7, 2, True, 11, 3)
        assert [x.clip_set.name for x in ls.systems] == ["set-a", "set-b"]
        # the same draw as the function itself with the same seed
        same = design.create_listening_session(s, "check", ["set-a", "set-b"], n_prompts=4, seed=7, n_gold=3)
        assert sorted({i.caption_id for i in same.items}) == sorted({i.caption_id for i in ls.items})
        s.rollback()
    listed = ok(listen("list", db=store_url)).strip().splitlines()
    assert [ln.split("\t")[1:] for ln in listed] == [["defaults", "open", "8 items", "4 raters per clip"],
                                                     ["s1", "open", "11 items", "2 raters per clip"]]

    # 3. Three raters rate everything; rater2 gives the gold items (mismatched prompts) high REL
    with open_store(store_url)() as s:
        ls = s.scalar(select(ListeningSession).where(ListeningSession.name == "s1"))
        users = list(s.scalars(select(User).order_by(User.name)))
        rng = np.random.default_rng(1)
        for u in users:
            while (q := queue.next_item(s, ls.id, u.id)) is not None:
                gold = next(i for i in ls.items if i.id == q.item_id).is_gold
                rel = (5 if u.name == "rater2" else 1) if gold else int(rng.integers(2, 6))
                play_item(s, AudioStore(tmp_path / "audio"), u.id, ls.id, q.item_id)
                queue.submit_rating(s, ls.id, u.id, q.item_id, int(rng.integers(1, 6)), rel)
        s.commit()
        expect = results.session_results(s, "s1")
    assert expect.excluded_raters == ["rater2"]

    # 4. Results: mean ± 95 % CI per system, α, excluded raters; --out writes the export
    out = ok(listen("results", "s1", "--out", str(tmp_path / "res"), db=store_url))
    assert "s1: 4 prompts × 2 systems = 8 clips, 3 gold items; 8 of 8 clips have ≥ 2 ratings" in out
    with open_store(store_url)() as s:
        rows = [r for r in results.rating_rows(s, expect.session_id) if not r.is_gold and r.rater != "rater2"]
    # per-clip means with the cluster bootstrap over prompts and raters, recomputed from the raw rows
    prompts = sorted({r.caption_id for r in rows})
    tables = {}
    for system in ("set-a", "set-b"):
        t = {k: np.full((2, len(prompts)), np.nan) for k in ("ovl", "rel")}
        for r in rows:
            if r.system == system:
                for k in t:
                    t[k][int(r.rater[-1]), prompts.index(r.caption_id)] = getattr(r, k)
        tables[system] = t
        ovl, rel = (design_mean_ci(t[k], seed=expect.seed) for k in ("ovl", "rel"))
        line = next(ln for ln in out.splitlines() if ln.startswith(system + "\t"))
        assert line.split("\t")[3:] == [
            "4", "8", f"{ovl.mean:.2f} [{ovl.low:.2f}, {ovl.high:.2f}]", f"{rel.mean:.2f} [{rel.low:.2f}, {rel.high:.2f}]"]
    diff = paired_difference_ci(tables["set-a"]["ovl"], tables["set-b"]["ovl"], seed=expect.seed)
    assert (f"paired difference set-a − set-b over 4 prompts: OVL {diff.mean:.2f} [{diff.low:.2f}, {diff.high:.2f}]"
            in out)
    items = sorted({r.item_id for r in rows})
    m = np.full((2, len(items)), np.nan)
    for r in rows:
        m[int(r.rater[-1]), items.index(r.item_id)] = r.ovl
    a = krippendorff_alpha_ci(m, "ordinal", seed=expect.seed)
    assert f"OVL {krippendorff_alpha(m, 'ordinal'):.3f} [95% CI {a.low:.3f}, {a.high:.3f}]" in out
    assert "excluded raters: rater2 (A rater who rated at least one gold item" in out
    for name in ("results.json", "systems.csv", "differences.csv", "raters.csv", "ratings.csv"):
        assert f"wrote {tmp_path / 'res' / name}" in out
    data = json.loads((tmp_path / "res" / "results.json").read_text())
    assert data["excluded_raters"] == ["rater2"] and len(data["ratings"]) == 3 * 11
    with open(tmp_path / "res" / "systems.csv", newline="") as f:
        systems = list(csv.DictReader(f))
    assert [r["system"] for r in systems] == ["set-a", "set-b"]
    assert float(systems[0]["ovl_mean"]) == pytest.approx(expect.systems[0].ovl.mean)
    assert float(systems[0]["ovl_ci_low"]) == pytest.approx(expect.systems[0].ovl.low)
    assert systems[0]["ci_method"] == "cluster bootstrap"
    with open(tmp_path / "res" / "differences.csv", newline="") as f:
        diffs = list(csv.DictReader(f))
    assert [(d["system_a"], d["system_b"]) for d in diffs] == [("set-a", "set-b")]
    assert float(diffs[0]["ovl_ci_high"]) == pytest.approx(diff.high)
    assert data["differences"][0]["ovl"]["low"] == pytest.approx(diff.low)
    assert data["alpha_ovl_ci"]["high"] == pytest.approx(a.high)

    # 5. Close stops ratings (they stay); open lets raters in again
    assert "s1 is now closed" in ok(listen("close", "s1", db=store_url))
    assert [ln.split("\t")[1] for ln in ok(listen("list", "--open-only", db=store_url)).strip().splitlines()] == ["defaults"]
    with open_store(store_url)() as s:
        ls = s.scalar(select(ListeningSession).where(ListeningSession.name == "s1"))
        with pytest.raises(CuratorError, match="closed"):
            queue.undo_last(s, ls.id, users[0].id)
    assert "8 of 8 clips" in ok(listen("results", "s1", db=store_url))
    doc = json.loads(ok(listen("results", "s1", "--json", db=store_url)))
    assert doc["excluded_raters"] == ["rater2"] and [x["name"] for x in doc["systems"]] == ["set-a", "set-b"]
    assert doc["systems"][0]["ovl"]["mean"] == pytest.approx(expect.systems[0].ovl.mean)
    assert "s1 is now open" in ok(listen("open", "s1", db=store_url))
    assert "s1\topen" in ok(listen("list", "--open-only", db=store_url))


def test_user_errors_are_one_line(store_url, tmp_path):
    ids = add_world(store_url, tmp_path / "audio", n_captions=3)
    ok(listen("clip-set", "create", "set-a", "--generator", "sysA", db=store_url))
    ok(listen("create", "s1", "--clip-set", "set-a", "--prompts", "2", "--gold", "0", db=store_url))
    cases = [
        (("clip-set", "create", "x", "--generator", "nobody"), "no audio clips of generator 'nobody'"),
        (("clip-set", "create", "x"), "give either --generator G or --clip ID"),
        (("clip-set", "create", "x", "--generator", "sysA", "--clip", str(ids["sysA"][0])), "not both"),
        (("clip-set", "create", "x", "--clip", str(ids["sysB"][0]), "--checkpoint", "c"), "go with --generator"),
        (("clip-set", "create", "x", "--clip", "999999"), "audio clip(s) 999999 do not exist"),
        (("clip-set", "create", "x", "--clip", str(ids["sysA"][0]), "--clip", str(ids["sysB"][0])), "mixes clips"),
        (("clip-set", "create", "set-a", "--generator", "sysA"), "clip set 'set-a' already exists"),
        (("clip-set", "create", "bad<name>", "--generator", "sysB"), "may only use letters"),
        (("create", "s2"), "give at least one --clip-set"),
        (("create", "s2", "--clip-set", "nope"), "clip set 'nope' does not exist"),
        (("create", "s2", "--clip-set", "set-a", "--clip-set", "set-a"), "listed twice"),
        (("create", "s1", "--clip-set", "set-a", "--prompts", "2"), "'s1' already exists"),
        (("create", "s2", "--clip-set", "set-a", "--prompts", "0"), "--prompts must be a whole number ≥ 1, got 0"),
        (("create", "s2", "--clip-set", "set-a", "--prompts", "2", "--seed", "-1"), "--seed must be a whole number ≥ 0, got -1"),
        (("create", "s2", "--clip-set", "set-a", "--prompts", "2", "--raters-per-clip", "0"), "--raters-per-clip must be"),
        (("create", "s2", "--clip-set", "set-a", "--prompts", "2", "--gold-threshold", "6"), "--gold-threshold must be between 1 and 5, got 6"),
        (("create", "s2", "--clip-set", "set-a", "--prompts", "2", "--gold", "9"), "more than the 2 real items"),
        (("create", "s2", "--clip-set", "set-a", "--prompts", "2", "--gold", "-1"), "--gold must be"),
        (("create", "s2", "--clip-set", "set-a", "--prompts", "2", "--split", "train"), "only 0 in common"),
        (("create", "s2", "--clip-set", "set-a", "--caption", "999999"), "are not covered by every clip set"),
        (("open", "nope"), "listening session 'nope' does not exist"),
        (("close", "nope"), "listening session 'nope' does not exist"),
        (("results", "nope"), "listening session 'nope' does not exist"),
    ]
    for args, match in cases:
        one_line_error(listen(*args, db=store_url), match)
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(listen("results", "s1", "--out", str(afile), db=store_url), "is a file")
    with open_store(store_url)() as s:  # nothing was written by the refused commands
        assert [r["name"] for r in clipsets.list_clip_sets(s)] == ["set-a"]
        assert [r["name"] for r in design.list_sessions(s)] == ["s1"]

    unmigrated = f"sqlite:///{tmp_path / 'unmigrated.db'}"
    for args in (("clip-sets",), ("clip-set", "create", "x", "--generator", "g"), ("create", "x", "--clip-set", "a"),
                 ("list",), ("open", "x"), ("close", "x"), ("results", "x")):
        one_line_error(listen(*args, db=unmigrated), "is not migrated: run `curator db upgrade")


def test_every_command_has_help():
    for args in (("listen",), ("listen", "clip-sets"), ("listen", "clip-set"), ("listen", "clip-set", "create"),
                 ("listen", "create"), ("listen", "list"), ("listen", "open"), ("listen", "close"),
                 ("listen", "results")):
        r = runner.invoke(app, [*args, "--help"])
        assert r.exit_code == 0 and "Usage: curator " + " ".join(args) in r.output, r.output


def test_trainer_eval_clip_set_is_listed_and_usable(store_url, tmp_path, monkeypatch):
    """`trainer eval --db` stores a clip set; `curator listen` lists it and builds a session on it.
    The Tango checkpoint is swapped for the miniature world's generator (same Generator interface)."""
    import curator.generate.backends as backends
    from curator.world import random_captions
    from trainer.cli import app as trainer_app

    monkeypatch.setattr(backends, "resolve_generator", lambda model, checkpoint=None, **kw: backends._world_generator())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(random_captions(3, seed=0)) + "\n")
    res = runner.invoke(trainer_app, ["eval", "--checkpoint", str(tmp_path), "--prompts", str(prompts), "--scorer",
                                      "world-judge-a", "--steps", "2", "--db", store_url,
                                      "--audio-root", str(tmp_path / "audio")])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in ok(listen("clip-sets", db=store_url)).splitlines() if "\teval:world-v1\t" in ln)
    assert line.split("\t")[2:] == ["world", "world-v1", "3 clips"]
    out = ok(listen("create", "after-eval", "--clip-set", "eval:world-v1", "--prompts", "3", db=store_url))
    assert "3 prompts × 1 systems = 3 clips + 2 gold items" in out
