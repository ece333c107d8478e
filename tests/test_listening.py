"""Listening sessions (arXiv 2404.09956 §5.3): clip sets, sessions, blind per-rater
order, ratings with their bad input, gold screening, results and exports — on SQLite and
PostgreSQL (`session` fixture)."""

from __future__ import annotations

import csv
import json
import threading
from dataclasses import asdict

import krippendorff
import numpy as np
import pytest
from sqlalchemy import func, select

from annotate_ui.logic.listening import clipsets, design, queue, results
from curator.stats import design_mean_ci, mean_ci
from db.errors import CuratorError
from db.annotation import User
from db.listening import ListeningItem, ListeningRating
from db.models import AudioClip, Caption, text_hash
from builders.ui import play_item

SYSTEMS = (("tango", "declare-lab/tango"), ("tango2", "run/step-10"), ("audioldm", "cvssp/audioldm"))


def add_users(session, n, role="rater"):
    users = [User(name=f"{role}{i}", role=role, password_hash="$argon2id$not-used-in-these-tests") for i in range(n)]
    session.add_all(users)
    session.flush()
    return users


def add_world(session, audio_store, n_captions=6, systems=SYSTEMS, strategy="eval"):
    """n captions (test split) × systems, one clip each in the audio store."""
    caps = [Caption(text=f"a dog barks {i} times", text_sha=text_hash(f"a dog barks {i} times"), split="test")
            for i in range(n_captions)]
    session.add_all(caps)
    session.flush()
    rng = np.random.default_rng(0)
    for gen, ckpt in systems:
        for cap in caps:
            sha, rel = audio_store.put_wave(rng.standard_normal(1600).astype(np.float32) * 0.1, 16000)
            session.add(AudioClip(sha256=sha, path=rel, sample_rate=16000, num_samples=1600, duration_s=0.1,
                                  generator=gen, checkpoint_id=ckpt, prompt=cap.text, caption_id=cap.id,
                                  strategy=strategy, slot=0))
    session.flush()
    return caps


def clip_sets(session):
    return [clipsets.clip_set_from_generator(session, f"set-{g}", generator=g) for g, _ in SYSTEMS]


# ---------------------------------------------------------------------------------------------
# clip sets


def test_clip_sets_from_clips_and_from_generator(session, audio_store):
    caps = add_world(session, audio_store, n_captions=4)
    clips = list(session.scalars(select(AudioClip).where(AudioClip.generator == "tango").order_by(AudioClip.id)))
    cs = clipsets.create_clip_set(session, "tango-base", clips[:3], note="baseline")
    assert (cs.generator, cs.checkpoint_id) == SYSTEMS[0]
    assert sorted(i.caption_id for i in cs.items) == sorted(c.caption_id for c in clips[:3])
    # same name, same clips, exist_ok → the same set (rerun of `trainer eval`); else refused
    assert clipsets.create_clip_set(session, "tango-base", [c.id for c in clips[:3]], exist_ok=True).id == cs.id
    with pytest.raises(CuratorError, match="already exists"):
        clipsets.create_clip_set(session, "tango-base", clips[:3])
    with pytest.raises(CuratorError, match="with other clips"):
        clipsets.create_clip_set(session, "tango-base", clips[:2], exist_ok=True)

    gen2 = clipsets.clip_set_from_generator(session, "t2", generator="tango2")
    assert len(gen2.items) == len(caps) and gen2.checkpoint_id == "run/step-10"
    assert {r["name"]: r["n_clips"] for r in clipsets.list_clip_sets(session)} == {"tango-base": 3, "t2": 4}


def test_clip_set_bad_input(session, audio_store):
    add_world(session, audio_store, n_captions=2)
    mixed = list(session.scalars(select(AudioClip).order_by(AudioClip.id)))
    with pytest.raises(CuratorError, match="mixes clips of 3 generators"):
        clipsets.create_clip_set(session, "mixed", mixed)
    with pytest.raises(CuratorError, match="no clips given"):
        clipsets.create_clip_set(session, "empty", [])
    with pytest.raises(CuratorError, match="do not exist"):
        clipsets.create_clip_set(session, "ghost", [987654])
    with pytest.raises(CuratorError, match="may only use"):
        clipsets.create_clip_set(session, "<script>", mixed[:1])
    with pytest.raises(CuratorError, match="no audio clips of generator 'nobody'"):
        clipsets.clip_set_from_generator(session, "x", generator="nobody")
    # a second checkpoint of the same generator makes the choice ambiguous
    c = mixed[0]
    session.add(AudioClip(sha256=c.sha256, path=c.path, sample_rate=16000, num_samples=1600, duration_s=0.1,
                          generator=c.generator, checkpoint_id="other", prompt=c.prompt, caption_id=c.caption_id,
                          strategy="eval", slot=0))
    session.flush()
    with pytest.raises(CuratorError, match="2 checkpoints"):
        clipsets.clip_set_from_generator(session, "x", generator=c.generator)
    assert len(clipsets.clip_set_from_generator(session, "x", generator=c.generator, checkpoint_id="other").items) == 1
    # two clips of one caption
    dup = AudioClip(sha256=c.sha256, path=c.path, sample_rate=16000, num_samples=1600, duration_s=0.1,
                    generator=c.generator, checkpoint_id=c.checkpoint_id, prompt=c.prompt, caption_id=c.caption_id,
                    strategy="eval", slot=1)
    session.add(dup)
    session.flush()
    with pytest.raises(CuratorError, match="has two clips"):
        clipsets.create_clip_set(session, "dup", [c, dup])


# ---------------------------------------------------------------------------------------------
# sessions


def test_session_prompts_systems_and_gold(session, audio_store):
    caps = add_world(session, audio_store, n_captions=8)
    sets = clip_sets(session)
    (admin,) = add_users(session, 1, role="admin")
    ls = design.create_listening_session(session, "eval-1", sets, n_prompts=5, seed=3, created_by=admin.id)
    real = [it for it in ls.items if not it.is_gold]
    gold = [it for it in ls.items if it.is_gold]
    assert len(real) == 15 and len({it.caption_id for it in real}) == 5
    assert len(gold) == 2  # default: 10 % of 15 real items, at least 2
    assert ls.min_raters == 4 and ls.gold_rel_threshold == 3.0  # arXiv 2404.09956 §5.3 default
    clip_caption = {c.id: c.caption_id for c in session.scalars(select(AudioClip))}
    prompts = {it.caption_id for it in real}
    for g in gold:
        assert g.gold_kind == "mismatch"
        assert clip_caption[g.clip_id] != g.caption_id  # a clip of another prompt
        assert g.caption_id in prompts and g.prompt == session.get(Caption, g.caption_id).text
    # seeded: same seed → same prompts; another seed → (here) other prompts
    again = design.create_listening_session(session, "eval-2", sets, n_prompts=5, seed=3)
    assert {it.caption_id for it in again.items if not it.is_gold} == prompts
    other = design.create_listening_session(session, "eval-3", sets, n_prompts=5, seed=4)
    assert {it.caption_id for it in other.items if not it.is_gold} != prompts
    # explicit prompts, no gold
    chosen = design.create_listening_session(session, "eval-4", sets[:2], caption_ids=[caps[0].id, caps[1].id], n_gold=0)
    assert len(chosen.items) == 4 and not any(it.is_gold for it in chosen.items)
    assert [s["name"] for s in design.list_sessions(session)] == ["eval-1", "eval-2", "eval-3", "eval-4"]


def test_session_bad_input(session, audio_store):
    add_world(session, audio_store, n_captions=3)
    sets = clip_sets(session)
    with pytest.raises(CuratorError, match="asked for 50 prompts but the chosen clip sets have only 3"):
        design.create_listening_session(session, "s", sets)  # the paper's 50 prompts (arXiv 2404.09956 §5.3)
    with pytest.raises(CuratorError, match="at least one clip set"):
        design.create_listening_session(session, "s", [], n_prompts=2)
    with pytest.raises(CuratorError, match="listed twice"):
        design.create_listening_session(session, "s", [sets[0], sets[0].name], n_prompts=2)
    with pytest.raises(CuratorError, match="does not exist"):
        design.create_listening_session(session, "s", ["no-such-set"], n_prompts=2)
    with pytest.raises(CuratorError, match="not covered by every clip set"):
        design.create_listening_session(session, "s", sets, caption_ids=[424242])
    with pytest.raises(CuratorError, match="caption ids must be whole numbers, got '1'"):
        design.create_listening_session(session, "s", sets, caption_ids=["1"])
    with pytest.raises(CuratorError, match="min_raters"):
        design.create_listening_session(session, "s", sets, n_prompts=2, min_raters=0)
    with pytest.raises(CuratorError, match="gold_rel_threshold"):
        design.create_listening_session(session, "s", sets, n_prompts=2, gold_rel_threshold=7)
    with pytest.raises(CuratorError, match="at least 2 prompts"):
        design.create_listening_session(session, "s", sets, n_prompts=1, n_gold=1)
    with pytest.raises(CuratorError, match="more than the 6 real items"):
        design.create_listening_session(session, "s", sets, n_prompts=2, n_gold=7)
    design.create_listening_session(session, "s", sets, n_prompts=2)
    with pytest.raises(CuratorError, match="already exists"):
        design.create_listening_session(session, "s", sets, n_prompts=2)


def test_per_rater_order_is_seeded_recorded_and_blind(session, audio_store):
    add_world(session, audio_store, n_captions=6)
    ls = design.create_listening_session(session, "order", clip_sets(session), n_prompts=6, seed=11)
    a, b = add_users(session, 2)
    first = queue.next_item(session, ls.id, a.id, audio_store)
    assert queue.ensure_assignments(session, ls.id, a.id) == 0  # idempotent
    rows = list(session.scalars(select(ListeningRating).where(ListeningRating.user_id == a.id)
                                .order_by(ListeningRating.position)))
    n = len(ls.items)
    assert [r.position for r in rows] == list(range(n))
    order_a = [r.item_id for r in rows]
    assert sorted(order_a) == sorted(it.id for it in ls.items)
    assert order_a == queue.rater_order(ls, a.id, [it.id for it in ls.items])  # reproducible from the seed
    assert first.item_id == order_a[0] and first.position == 0 and (first.done, first.total) == (0, n)
    queue.ensure_assignments(session, ls.id, b.id)
    order_b = [r.item_id for r in session.scalars(select(ListeningRating).where(ListeningRating.user_id == b.id)
                                                  .order_by(ListeningRating.position))]
    assert order_b != order_a and sorted(order_b) == sorted(order_a)
    # the rater sees a prompt and audio, never the system, generator, checkpoint or file name
    shown = asdict(first)
    assert set(shown) == {"session_id", "item_id", "position", "prompt", "audio_path", "audio_error", "done", "total"}
    text = json.dumps(shown, default=str)
    for gen, ckpt in SYSTEMS:
        assert f"set-{gen}" not in text and ckpt not in text
    assert first.audio_path is not None and first.audio_path.is_file() and first.audio_error is None


def test_ratings_bad_input_replay_and_undo(session, audio_store):
    add_world(session, audio_store, n_captions=3)
    sets = clip_sets(session)
    ls = design.create_listening_session(session, "bad", sets, n_prompts=3)
    ls2 = design.create_listening_session(session, "other", sets, n_prompts=3, seed=1)
    (u, v) = add_users(session, 2)
    item = queue.next_item(session, ls.id, u.id)
    for bad in (0, 6, -1, 3.5, "3", None, True):
        with pytest.raises(CuratorError, match="OVL must be a whole number from 1 to 5"):
            queue.submit_rating(session, ls.id, u.id, item.item_id, bad, 3)
        with pytest.raises(CuratorError, match="REL must be a whole number from 1 to 5"):
            queue.submit_rating(session, ls.id, u.id, item.item_id, 3, bad)
    # an item of another session, an unknown item, a forged id type, another rater's queue
    other_item = ls2.items[0].id
    for forged in (other_item, 10**9, "1; DROP TABLE users", None):
        with pytest.raises(CuratorError, match="not in your queue"):
            queue.submit_rating(session, ls.id, u.id, forged, 3, 3)
    with pytest.raises(CuratorError, match="not in your queue"):
        queue.submit_rating(session, ls.id, v.id, item.item_id, 3, 3)  # v never opened the session
    assert session.scalar(select(func.count()).where(ListeningRating.rated_at.is_not(None))) == 0

    play_item(session, audio_store, u.id, ls.id, item.item_id)
    first = queue.submit_rating(session, ls.id, u.id, item.item_id, 4, 2)
    assert (first.ovl, first.rel) == (4, 2) and first.time_on_task_ms >= 0
    for again in ((4, 2), (5, 5)):  # a replay of the submit, or a second rating: refused, nothing changed
        with pytest.raises(CuratorError, match=r"already has your rating \(OVL 4, REL 2; submitted twice\?\)"):
            queue.submit_rating(session, ls.id, u.id, item.item_id, *again)
    rated = list(session.scalars(select(ListeningRating).where(ListeningRating.rated_at.is_not(None))))
    assert [(r.user_id, r.item_id, r.ovl, r.rel) for r in rated] == [(u.id, item.item_id, 4, 2)]
    nxt = queue.next_item(session, ls.id, u.id)
    assert nxt.item_id != item.item_id and nxt.done == 1
    # undo the last rating, rate again differently
    assert queue.undo_last(session, ls.id, u.id) == item.item_id
    assert queue.next_item(session, ls.id, u.id).item_id == item.item_id
    assert queue.submit_rating(session, ls.id, u.id, item.item_id, 5, 5).ovl == 5  # played before the undo
    assert queue.undo_last(session, ls.id, v.id) is None
    # undo reaches the last answer only, once, and only within the window
    second = queue.next_item(session, ls.id, u.id)
    play_item(session, audio_store, u.id, ls.id, second.item_id)
    queue.submit_rating(session, ls.id, u.id, second.item_id, 2, 2)
    assert queue.undo_last(session, ls.id, u.id) == second.item_id
    assert queue.undo_last(session, ls.id, u.id) is None  # not back through the first item's rating
    assert session.scalar(select(ListeningRating.ovl).where(ListeningRating.item_id == item.item_id,
                                                            ListeningRating.user_id == u.id)) == 5
    queue.submit_rating(session, ls.id, u.id, second.item_id, 2, 2)
    assert queue.undo_last(session, ls.id, u.id, window_s=0.0) is None
    assert queue.undo_last(session, ls.id, u.id) == second.item_id
    queue.submit_rating(session, ls.id, u.id, second.item_id, 2, 2)
    # a closed session takes no ratings
    design.set_session_open(session, ls.id, False)
    with pytest.raises(CuratorError, match="is closed"):
        queue.submit_rating(session, ls.id, u.id, nxt.item_id, 3, 3)
    with pytest.raises(CuratorError, match="is closed"):
        queue.next_item(session, ls.id, u.id)
    with pytest.raises(CuratorError, match="does not exist"):
        queue.next_item(session, 999999, u.id)


def test_missing_audio_is_reported_and_skippable(session, audio_store):
    add_world(session, audio_store, n_captions=2, systems=SYSTEMS[:1])
    ls = design.create_listening_session(session, "missing", clip_sets_for(session, 1), n_prompts=2, n_gold=0)
    (u,) = add_users(session, 1)
    item = queue.next_item(session, ls.id, u.id, audio_store)
    clip = session.get(ListeningItem, item.item_id).clip
    audio_store.resolve(clip.path).unlink()
    again = queue.next_item(session, ls.id, u.id, audio_store)
    assert again.item_id == item.item_id and again.audio_path is None
    assert "missing from the audio store; skip this clip" in again.audio_error
    assert queue.skip_item(session, ls.id, u.id, item.item_id, reason="audio missing")
    assert not queue.skip_item(session, ls.id, u.id, item.item_id)  # replay
    with pytest.raises(CuratorError, match="was skipped"):
        queue.submit_rating(session, ls.id, u.id, item.item_id, 3, 3)
    nxt = queue.next_item(session, ls.id, u.id, audio_store)
    assert nxt.item_id != item.item_id and nxt.done == 1
    play_item(session, audio_store, u.id, ls.id, nxt.item_id)
    queue.submit_rating(session, ls.id, u.id, nxt.item_id, 3, 3)
    assert queue.next_item(session, ls.id, u.id, audio_store) is None
    p = queue.progress(session, ls.id, u.id)
    assert (p.rated, p.skipped, p.remaining) == (1, 1, 0)
    (r,) = results.session_results(session, ls.id).raters
    assert (r.n_rated, r.n_skipped) == (1, 1)


def clip_sets_for(session, k):
    return [clipsets.clip_set_from_generator(session, f"set-{g}", generator=g) for g, _ in SYSTEMS[:k]]


def rate_everything(session, audio_store, ls, users, rule):
    """Each user plays and rates every item with rule(user_index, item) -> (ovl, rel)."""
    for k, u in enumerate(users):
        while (q := queue.next_item(session, ls.id, u.id)) is not None:
            play_item(session, audio_store, u.id, ls.id, q.item_id)
            queue.submit_rating(session, ls.id, u.id, q.item_id, *rule(k, session.get(ListeningItem, q.item_id)))


def test_results_gold_screening_ci_and_alpha(session, audio_store):
    add_world(session, audio_store, n_captions=5)
    sets = clip_sets(session)
    ls = design.create_listening_session(session, "results", sets, n_prompts=5, n_gold=3, seed=5)
    users = add_users(session, 5)
    quality = {sets[0].id: 2, sets[1].id: 4, sets[2].id: 3}

    def rule(k, item):
        if item.is_gold:
            return (3, 5) if k == 4 else (3, 1)  # rater4 says a mismatched prompt fits: excluded
        base = quality[item.clip_set_id]
        jitter = (item.id + k) % 3 - 1  # -1, 0, +1: imperfect agreement
        return int(np.clip(base + jitter, 1, 5)), int(np.clip(base + 1 - jitter * (k % 2), 1, 5))

    rate_everything(session, audio_store, ls, users, rule)
    res = results.session_results(session, ls.id)
    assert res.excluded_raters == ["rater4"]
    excluded = {r.name: r for r in res.raters}["rater4"]
    assert excluded.excluded and excluded.gold_mean_rel == 5.0 and excluded.n_gold == 3
    assert all(not r.excluded and r.gold_mean_rel == 1.0 for r in res.raters if r.name != "rater4")
    assert res.n_items == 15 and res.n_gold_items == 3 and res.n_prompts == 5
    assert res.n_items_covered == 15 and res.complete and res.min_raters == 4
    assert "≥ 3" in res.gold_rule

    # per-system mean of per-clip means over the kept raters' ratings of real items, with the cluster
    # bootstrap over prompts and raters, recomputed independently (kept raters × prompts tables)
    kept = [u for u in users if u.name != "rater4"]
    items = [it for it in ls.items if not it.is_gold]
    prompts = sorted({it.caption_id for it in items})
    for s in res.systems:
        mine = sorted((it for it in items if it.clip_set_id == s.clip_set_id), key=lambda it: it.caption_id)
        table = np.array([[rule(k, it) for it in mine] for k, _ in enumerate(kept)], dtype=float)  # raters × prompts × 2
        assert [it.caption_id for it in mine] == prompts
        ref_ovl, ref_rel = (design_mean_ci(table[:, :, j], seed=ls.seed) for j in (0, 1))
        assert s.n_ratings == 20 and s.n_clips == 5 and s.ovl.n == 5 and s.ovl.method == "cluster bootstrap"
        assert s.ovl.mean == pytest.approx(table[:, :, 0].mean()) and s.ovl.low == pytest.approx(ref_ovl.low)
        assert s.rel.high == pytest.approx(ref_rel.high) and s.rel.low <= s.rel.mean <= s.rel.high
        # wider than the t interval that counts every rating as independent
        naive = mean_ci(table[:, :, 0].ravel())
        assert s.ovl.high - s.ovl.low > naive.high - naive.low
    by_name = {s.name: s for s in res.systems}
    assert by_name["set-tango2"].ovl.mean > by_name["set-audioldm"].ovl.mean > by_name["set-tango"].ovl.mean

    # α (ordinal) against the krippendorff package on the kept raters × real items
    ovl = np.array([[rule(k, it)[0] for it in items] for k, _ in enumerate(kept)], dtype=float)
    rel = np.array([[rule(k, it)[1] for it in items] for k, _ in enumerate(kept)], dtype=float)
    assert res.alpha_ovl == pytest.approx(krippendorff.alpha(reliability_data=ovl, level_of_measurement="ordinal"))
    assert res.alpha_rel == pytest.approx(krippendorff.alpha(reliability_data=rel, level_of_measurement="ordinal"))
    assert 0 < res.alpha_ovl < 1


def test_coverage_warning_below_min_raters(session, audio_store):
    add_world(session, audio_store, n_captions=2, systems=SYSTEMS[:1])
    ls = design.create_listening_session(session, "thin", clip_sets_for(session, 1), n_prompts=2, n_gold=0)
    users = add_users(session, 2)
    rate_everything(session, audio_store, ls, users, lambda k, it: (3 + k, 4))
    res = results.session_results(session, ls.id)
    assert not res.complete and res.n_items_covered == 0
    assert any("fewer than 4 ratings" in w for w in res.warnings)


def test_export_csv_and_json(session, audio_store, tmp_path):
    add_world(session, audio_store, n_captions=3)
    ls = design.create_listening_session(session, "exp", clip_sets(session), n_prompts=3, n_gold=2)
    session.get(ListeningItem, ls.items[0].id).prompt = 'a "quoted", comma\nand <b>html</b>'
    users = add_users(session, 4)
    rate_everything(session, audio_store, ls, users, lambda k, it: (1 + (k + it.id) % 5, 1 if it.is_gold else 4))
    out = tmp_path / "export"
    paths = results.export_results(session, ls.id, out)
    assert sorted(p.name for p in out.iterdir()) == ["differences.csv", "raters.csv", "ratings.csv", "results.json", "systems.csv"]
    data = json.loads(paths["results.json"].read_text())
    assert data["session_name"] == "exp" and len(data["systems"]) == 3 and len(data["ratings"]) == 4 * 11
    assert set(data["systems"][0]["ovl"]) >= {"mean", "low", "high", "half_width", "n"}
    with paths["ratings.csv"].open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 44 and {r["rater"] for r in rows} == {u.name for u in users}
    assert any(r["prompt"] == 'a "quoted", comma\nand <b>html</b>' for r in rows)  # round-trips through csv
    with paths["systems.csv"].open(newline="") as fh:
        systems = list(csv.DictReader(fh))
    assert [s["system"] for s in systems] == ["set-tango", "set-tango2", "set-audioldm"]
    assert all(s["n_ratings"] == "12" for s in systems)
    # rewrite in place works; a file where the folder should be is refused
    results.export_results(session, ls.id, out)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CuratorError, match="is a file"):
        results.export_results(session, ls.id, tmp_path / "afile")


def test_concurrent_first_open_and_replayed_submit(store_url, audio_store):
    """Two requests of one rater at once (double click): one set of assignments, one rating."""
    from db.session import open_store

    factory = open_store(store_url)
    with factory() as s:
        add_world(s, audio_store, n_captions=3)
        ls = design.create_listening_session(s, "race", clip_sets(s), n_prompts=3)
        (u,) = add_users(s, 1)
        s.commit()
        ls_id, uid, n_items = ls.id, u.id, len(ls.items)
    def in_parallel(fn, n=4):
        barrier, out, errors = threading.Barrier(n), [], []

        def run():
            try:
                barrier.wait()
                with factory() as s:
                    out.append(fn(s))
                    s.commit()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        return out

    # 1. first open from four requests at once: one set of assignments, the same first item
    firsts = in_parallel(lambda s: queue.next_item(s, ls_id, uid).item_id)
    assert len(set(firsts)) == 1
    # 2. the same submit four times at once: one rating written, three replays refused
    with factory() as s:
        play_item(s, audio_store, uid, ls_id, firsts[0])
        s.commit()

    def submit(s):
        try:
            return queue.submit_rating(s, ls_id, uid, firsts[0], 3, 4).ovl
        except CuratorError as exc:
            assert "already has your rating" in str(exc)
            return "refused"

    outcomes = in_parallel(submit)
    assert sorted(outcomes, key=str) == [3, "refused", "refused", "refused"]
    with factory() as s:
        rows = list(s.scalars(select(ListeningRating).where(ListeningRating.user_id == uid)))
        assert len(rows) == n_items
        assert [(r.item_id, r.ovl, r.rel) for r in rows if r.rated_at is not None] == [(firsts[0], 3, 4)]


def test_migration_0003_downgrades_and_upgrades(store_url):
    from db.session import downgrade, make_engine, table_names, upgrade

    tables = {"clip_sets", "clip_set_items", "listening_sessions", "listening_systems", "listening_items",
              "listening_ratings"}
    assert tables <= set(table_names(make_engine(store_url)))
    downgrade(store_url, "0002")
    assert not tables & set(table_names(make_engine(store_url)))
    upgrade(store_url)
    assert tables <= set(table_names(make_engine(store_url)))
