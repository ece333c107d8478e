"""The listening tab's handlers through the app's real UIContext (no browser): server-side role
checks, stamping with the logged-in user, escaped prompts, bad input, missing audio, exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from sqlalchemy import select

from annotate_ui.web.app import build_app
from annotate_ui.web.context import make_context
from annotate_ui.web.listening_tab import ListeningHandlers, parse_score, prompt_html
from annotate_ui.logic.media_route import serve
from db.annotation import User
from db.listening import ListeningItem, ListeningRating
from db.models import AudioClip, Caption, text_hash

EVIL = '<script>alert("x")</script> a <b>dog</b> & a cat'


def req(name):
    return SimpleNamespace(username=name)


def gr_error(fn, *args):
    with pytest.raises(gr.Error) as info:
        fn(*args)
    return info.value.message


@pytest.fixture
def app(store_url, audio_store):
    ctx = make_context(store_url, audio_store)
    with ctx.session() as s:
        s.add_all([User(name="boss", role="admin", password_hash="x"),
                   User(name="rater0", role="rater", password_hash="x"),
                   User(name="rater1", role="rater", password_hash="x"),
                   User(name="gone", role="rater", password_hash="x", active=False)])
        caps = [Caption(text=t, text_sha=text_hash(t), split="test") for t in (EVIL, "rain on a roof", "a car passes")]
        s.add_all(caps)
        s.flush()
        rng = np.random.default_rng(1)
        for gen in ("sysA", "sysB"):
            for cap in caps:
                sha, rel = audio_store.put_wave(rng.standard_normal(800).astype(np.float32) * 0.1, 16000)
                s.add(AudioClip(sha256=sha, path=rel, sample_rate=16000, num_samples=800, duration_s=0.05,
                                generator=gen, checkpoint_id=f"{gen}-ckpt", prompt=cap.text, caption_id=cap.id,
                                strategy="eval", slot=0))
    return ctx, ListeningHandlers(ctx)


def play(ctx, name, audio_html):
    """What the page's player does on play: fetch the clip's token URL (the <audio> src) through the
    media route's work, which records the bytes sent."""
    token = re.search(r'<audio [^>]*src="media/([A-Za-z0-9_-]+)"', audio_html).group(1)
    user = ctx.user(req(name))
    with ctx.session() as s:
        serve(s, ctx.audio_store, ctx.copies, user, token, None)


def make_session(h, name="blind", n_gold=None):
    h.create_clip_set("set-A", "sysA", "", "eval", req("boss"))
    h.create_clip_set("set-B", "sysB", "", "eval", req("boss"))
    msg, dd = h.create_session(name, ["set-A", "set-B"], 3, 0, "" if n_gold is None else str(n_gold), 4, 3.0, "",
                               req("boss"))
    assert "6 clips (2 systems) + 2 gold items" in msg
    return dd.choices[0][1]


def test_prompt_is_escaped_and_scores_parsed():
    html_text = prompt_html(EVIL)
    assert "<script>" not in html_text and "&lt;script&gt;" in html_text and "&amp; a cat" in html_text
    assert parse_score("4", "OVL") == 4 and parse_score(5, "OVL") == 5
    assert parse_score("9", "OVL") == "9"  # left for the logic to refuse
    with pytest.raises(Exception, match="choose an OVL rating"):
        parse_score(None, "OVL")


def test_rater_flow_is_blind_escaped_and_stamped(app):
    ctx, h = app
    sid = make_session(h)
    choices = h.session_choices(req("rater0")).choices
    assert [c[1] for c in choices] == [sid]
    state, progress, prompt, audio, message, ovl, rel = h.open_session(sid, req("rater0"))
    with ctx.session() as s:  # the clip shown first is the one at position 0 of rater0's own order
        rater0_id = s.scalar(select(User.id).where(User.name == "rater0"))
        first = s.scalar(select(ListeningRating.item_id).where(ListeningRating.session_id == sid,
                                                               ListeningRating.user_id == rater0_id,
                                                               ListeningRating.position == 0))
        assert s.get(ListeningItem, first).session_id == sid
    assert state == {"session_id": sid, "item_id": first} and "Clip **1** of 8" in progress
    assert "<script>" not in prompt and re.fullmatch(r'<div class="listen-player"><audio controls preload="none" '
                                                     r'src="media/[A-Za-z0-9_-]{24}"></audio><img class="spectrogram" '
                                                     r'loading="lazy" src="media/[A-Za-z0-9_-]{24}" alt="spectrogram of '
                                                     r'the clip" width="640" height="128"></div>', audio)
    seen = []
    for k in range(8):
        shown = json.dumps([progress, prompt, message], default=str)
        assert "sysA" not in shown and "set-B" not in shown  # system names hidden
        if "&lt;script&gt;" in prompt:
            seen.append(state["item_id"])
        # before the clip played: refused with the reason, nothing written
        assert "play the clip to the end before you rate it" in gr_error(h.submit, state, "3", 3, req("rater0"))
        play(ctx, "rater0", audio)
        out = h.submit(state, str(1 + k % 5), 3, req("rater0"))
        assert "Recorded OVL" in out[4]
        # double click: refused, no duplicate
        assert "already has your rating" in gr_error(h.submit, state, str(1 + k % 5), 3, req("rater0"))
        state, progress, prompt, audio, message, ovl, rel = out
    assert seen  # the HTML prompt came up, escaped
    assert state["item_id"] is None and "remaining **0**" in progress
    with ctx.session() as s:
        rater0 = s.scalar(select(User).where(User.name == "rater0"))
        rows = list(s.scalars(select(ListeningRating).where(ListeningRating.rated_at.is_not(None))))
        assert len(rows) == 8 and {r.user_id for r in rows} == {rater0.id}


def test_bad_input_is_refused_with_a_clear_message(app):
    ctx, h = app
    sid = make_session(h)
    state = h.open_session(sid, req("rater0"))[0]
    assert "choose an OVL rating" in gr_error(h.submit, state, None, 3, req("rater0"))
    assert "OVL must be a whole number from 1 to 5, got 9" in gr_error(h.submit, state, 9, 3, req("rater0"))
    assert "REL must be a whole number from 1 to 5, got '0'" in gr_error(h.submit, state, 3, "0", req("rater0"))
    assert "choose a listening session" in gr_error(h.open_session, None, req("rater0"))
    assert "no clip is open" in gr_error(h.submit, None, 3, 3, req("rater0"))
    # an item of another rater's queue / another session is refused
    other = h.open_session(sid, req("rater1"))[0]
    assert "not in your queue" in gr_error(h.submit, {"session_id": sid, "item_id": 10**9}, 3, 3, req("rater1"))
    with ctx.session() as s:
        foreign = s.scalar(select(ListeningItem.id).where(ListeningItem.session_id == sid)
                           .where(ListeningItem.id != other["item_id"]).limit(1))
        s.execute(ListeningRating.__table__.delete().where(ListeningRating.item_id == foreign,
                                                           ListeningRating.user_id == s.scalar(
                                                               select(User.id).where(User.name == "rater1"))))
    assert "not in your queue" in gr_error(h.submit, {"session_id": sid, "item_id": foreign}, 3, 3, req("rater1"))
    with ctx.session() as s:
        assert s.scalar(select(ListeningRating).where(ListeningRating.rated_at.is_not(None))) is None


def test_roles_are_checked_on_the_server(app):
    ctx, h = app
    sid = make_session(h)
    for fn, args in ((h.create_clip_set, ("x", "sysA", "", "eval")),
                     (h.create_session, ("x", ["set-A"], 1, 0, 0, 4, 3.0, "")),
                     (h.results, (sid,)), (h.export, (sid,)), (h.close_session, (sid,))):
        assert "admins only" in gr_error(fn, *args, req("rater0"))
        assert "not logged in" in gr_error(fn, *args, req(None))
        assert "not logged in" in gr_error(fn, *args, req("gone"))  # disabled account
    assert "not logged in" in gr_error(h.open_session, sid, req("nobody"))
    box, *rest = h.admin_overview(req("rater0"))
    assert box == gr.update(visible=False) and all(r == gr.update() for r in rest)
    box, table, sets, sessions = h.admin_overview(req("boss"))
    assert box == gr.update(visible=True) and list(table["name"]) == ["set-A", "set-B"]


def test_missing_audio_shows_a_message_and_skips(app, audio_store):
    ctx, h = app
    sid = make_session(h)
    state = h.open_session(sid, req("rater0"))[0]
    with ctx.session() as s:
        audio_store.resolve(s.get(ListeningItem, state["item_id"]).clip.path).unlink()
    state, progress, prompt, audio, message, *_ = h.open_session(sid, req("rater0"))
    assert audio == "" and "missing" in message and "skip" in message
    after = h.skip(state, req("rater0"))
    assert after[0]["item_id"] != state["item_id"] and after[4] == "Skipped."
    with ctx.session() as s:
        row = s.scalar(select(ListeningRating).where(ListeningRating.item_id == state["item_id"]))
        assert row.skip_reason == "audio missing or unreadable"
    undone = h.undo(after[0], req("rater0"))
    assert undone[0]["item_id"] == state["item_id"] and "taken back" in undone[4]


def test_admin_results_export_and_closing(app, tmp_path):
    ctx, h = app
    sid = make_session(h)
    empty = h.results(sid, req("boss"))  # nothing rated yet: the tables say so, the charts too
    assert [list(t.iloc[:, 0]) for t in empty[1:4]] == [["no data yet"]] * 3
    assert "no data yet" in empty[4].to_json() and "no data yet" in empty[5].to_json()
    for rater in ("rater0", "rater1", "boss"):
        out = h.open_session(sid, req(rater))
        while out[0]["item_id"] is not None:
            with ctx.session() as s:
                gold = s.get(ListeningItem, out[0]["item_id"]).is_gold
            play(ctx, rater, out[3])
            out = h.submit(out[0], 4, 5 if rater == "rater1" or not gold else 1, req(rater))
    summary, systems, differences, raters, chart, agreement = h.results(sid, req("boss"))
    assert "Krippendorff" in summary and "Excluded: rater1" in summary  # gold REL 5 ≥ 3
    assert "cluster bootstrap over prompts and raters" in summary
    assert list(differences["systems"]) == ["set-A − set-B"] and "[" in differences["OVL difference [95% CI]"][0]
    spec = json.loads(chart.to_json())  # mean ± CI per system and scale, as Vega-Lite data
    (values,) = [d for d in spec["datasets"].values()]
    assert {(v["system"], v["scale"]) for v in values} == {(a, b) for a in ("set-A", "set-B") for b in ("OVL", "REL")}
    assert all(v["low"] <= v["mean"] <= v["high"] for v in values)
    # every rater gave every real clip OVL 4: no variation, so no agreement to show
    assert "agreement OVL (r)" in raters.columns and "no data yet" in agreement.to_json()
    assert list(systems["system"]) == ["set-A", "set-B"] and list(systems["ratings"]) == [6, 6]
    assert "fewer than 4 ratings" in summary
    assert dict(zip(raters["rater"], raters["excluded"]))["rater1"] == "yes"
    files = h.export(sid, req("boss"))
    assert sorted(Path(f).name for f in files) == ["differences.csv", "raters.csv", "ratings.csv", "results.json", "systems.csv"]
    assert json.loads(Path(files[0]).read_text())["excluded_raters"] == ["rater1"]
    assert "closed" in h.close_session(sid, req("boss"))
    assert h.session_choices(req("rater0")).choices == []
    assert "is closed" in gr_error(h.open_session, sid, req("rater0"))
    assert "open" in h.reopen_session(sid, req("boss"))


def test_admin_bad_input(app):
    ctx, h = app
    make_session(h)
    assert "already exists" in gr_error(h.create_clip_set, "set-A", "sysA", "", "eval", req("boss"))
    assert "no audio clips of generator 'nope'" in gr_error(h.create_clip_set, "z", "nope", "", "eval", req("boss"))
    assert "prompts must be a whole number" in gr_error(h.create_session, "s2", ["set-A"], 2.5, 0, None, 4, 3.0, "",
                                                        req("boss"))
    assert "gold REL threshold" in gr_error(h.create_session, "s2", ["set-A"], 2, 0, None, 4, None, "", req("boss"))
    assert "gold items must be a whole number ≥ 0 or blank, got 'ten'" in gr_error(
        h.create_session, "s2", ["set-A"], 2, 0, "ten", 4, 3.0, "", req("boss"))
    msg, _ = h.create_session("s3", ["set-A"], 2, 0, " 1 ", 4, 3.0, "", req("boss"))
    assert "+ 1 gold items" in msg
    assert "only 3 in common" in gr_error(h.create_session, "s2", ["set-A"], 50, 0, None, 4, 3.0, "", req("boss"))


def test_tab_is_wired_into_the_app(app):
    ctx, _ = app
    demo = build_app(ctx)
    names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert {"listen_open", "listen_submit", "listen_skip", "listen_undo", "listen_results", "listen_export"} <= names
