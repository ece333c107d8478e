"""The launched Gradio app through its HTTP API (gradio_client, httpx): access, roles, stamping,
replays, missing audio, escaping, presets, logout; and the load test."""

from __future__ import annotations

import io
import re
import threading
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client
from sqlalchemy import func, select

from annotate_ui.logic import audit
from annotate_ui.logic.auth import disable_user
from curator.filter import get_preset, thresholds_of
from db.annotation import AuditAssignment, AuditItem, User
from db.models import AudioClip, Pair
from builders.app import EVIL, play_all, player_urls, running_app
from builders.ui import PASSWORD

PAPER = ("paper", 0.45, 0.60, 0.40, 0.0, 0.05, 0.35, 0.08, 0.70)
def client(url, name, password=PASSWORD) -> Client:
    return Client(url, auth=(name, password), download_files=False, verbose=False)


@pytest.fixture
def app(store_url, audio_store):
    with running_app(store_url, audio_store, captions=[EVIL]) as running:
        yield running


ADMIN_CALLS = [
    ("/tuning_refresh", PAPER),
    ("/tuning_reload", PAPER),
    ("/tuning_load_preset", ("paper",)),
    ("/tuning_save_preset", ("sneaky", *PAPER)),
    ("/fill_queue", ("random", 5, 3, *PAPER)),
]


def test_rater_is_refused_every_admin_event(app):
    ctx, url, pairs, users = app
    rater = client(url, "rater0")
    for api_name, args in ADMIN_CALLS:
        with pytest.raises(Exception, match="admins only"):
            rater.predict(*args, api_name=api_name)
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditItem)) == len(pairs)  # nothing filled
        from db.errors import CuratorError
        with pytest.raises(CuratorError):
            get_preset(s, "sneaky")
    admin = client(url, "admin0")
    total, precision, *_ = admin.predict(*PAPER, api_name="/tuning_refresh")
    assert "candidate pairs" in total and "Kept pairs" in precision


def test_pages_and_api_need_login(app):
    _, url, *_ = app
    with httpx.Client(base_url=url, timeout=20) as h:
        assert h.get("/config").status_code == 401
        r = h.post("/gradio_api/call/next", json={"data": []})
        assert r.status_code in (401, 403)
        r = h.post("/login", data={"username": "rater0", "password": "wrong-password"})
        assert r.status_code == 400
        assert h.get("/config").status_code == 401
    with pytest.raises(Exception):
        client(url, "rater0", "wrong-password")


def test_votes_are_stamped_with_the_logged_in_user(app):
    ctx, url, pairs, users = app
    r0, r1 = client(url, "rater0"), client(url, "rater1")
    out = r0.predict(api_name="/next")
    aid, caption = out[0], out[1]
    assert EVIL not in caption and "&lt;script&gt;" in caption  # caption escaped
    # rater1 replays rater0's assignment id: refused with the reason, nothing recorded
    assert "not assigned to you" in r1.predict(aid, "", api_name="/vote_B")[4]
    # not played yet: refused with the reason on the same pair, nothing recorded
    assert "⚠ play clips A and B to the end before you vote" in r0.predict(aid, "clear winner", api_name="/vote_A")[4]
    with _login(url, "rater0") as h:
        play_all(h, out[2])
    nxt = r0.predict(aid, "clear winner", api_name="/vote_A")
    assert nxt[4].startswith("Recorded") and nxt[0] != aid
    again = r0.predict(aid, "", api_name="/vote_B")  # replayed submit: refused, the next pair stays
    assert "already has your vote" in again[4] and again[0] == nxt[0]
    with ctx.session() as s:
        a = s.get(AuditAssignment, int(aid))
        assert (s.get(User, a.user_id).name, a.verdict, a.note, a.state) == ("rater0", "A", "clear winner", "done")
        assert s.scalar(select(func.count()).where(AuditAssignment.state == "done")) == 1
    # undo through the API brings the same pair back
    back = r0.predict(api_name="/undo")
    assert back[0] == aid
    with ctx.session() as s:
        assert s.get(AuditAssignment, int(aid)).state == "assigned"


def test_missing_audio_shows_a_message_and_skip_works(app):
    ctx, url, pairs, users = app
    r0 = client(url, "rater0")
    first = r0.predict(api_name="/next")
    with ctx.session() as s:
        a = s.get(AuditAssignment, int(first[0]))
        pair = s.get(Pair, a.pair_id)
        clip = s.get(AudioClip, pair.loser_clip_id)
        ctx.audio_store.resolve(clip.path).unlink()
        rel = clip.path
        gone, plays = ("b", "a") if a.a_is_winner else ("a", "b")  # the loser's side
    again = r0.predict(api_name="/next")  # same open assignment, now with a missing file
    assert again[0] == first[0]
    assert f"side {gone.upper()}: the audio file is missing or unreadable; press Skip" in again[4]
    assert rel not in again[4] and clip.sha256 not in again[4]
    players = again[2]  # the other side still plays; the missing one shows the message instead of a player
    assert players.count("<audio") == 1 and set(player_urls(players)) == {plays} and "press Skip" in players
    with httpx.Client(base_url=url, timeout=20) as h:
        h.post("/login", data={"username": "rater0", "password": PASSWORD}).raise_for_status()
        assert h.get("/" + player_urls(players)[plays]).status_code == 200
    after = r0.predict(first[0], api_name="/skip")
    assert after[0] != first[0] and after[4].startswith("Skipped")
    with ctx.session() as s:
        assert s.get(AuditAssignment, int(first[0])).state == "skipped"


@contextmanager
def _login(url, name):
    with httpx.Client(base_url=url, timeout=20) as h:
        h.post("/login", data={"username": name, "password": PASSWORD}).raise_for_status()
        yield h


def test_audio_route_serves_only_the_owners_open_pair(app):
    ctx, url, pairs, users = app
    r0 = client(url, "rater0")
    out = r0.predict(api_name="/next")
    aid, players = out[0], out[2]
    with ctx.session() as s:
        a = s.get(AuditAssignment, int(aid))
        pair = s.get(Pair, a.pair_id)
        winner, loser = s.get(AudioClip, pair.winner_clip_id), s.get(AudioClip, pair.loser_clip_id)
        side_a, side_b = (winner, loser) if a.a_is_winner else (loser, winner)
    # blind: the page names an opaque token per side, never the assignment, a clip id, sha or file
    urls = player_urls(players)
    assert set(urls) == {"a", "b"} and all(re.fullmatch(r"media/[A-Za-z0-9_-]{24}", u) for u in urls.values())
    assert urls["a"] != urls["b"]
    for clip in (winner, loser):
        assert clip.sha256 not in players and clip.path not in players
    with _login(url, "rater0") as h:
        for side, clip in (("a", side_a), ("b", side_b)):
            r = h.get("/" + urls[side])
            assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
            # the blind mapping is kept: the same audio as the stored clip, to within one 16-bit step
            served, sr = sf.read(io.BytesIO(r.content), dtype="int16")
            stored, sr0 = sf.read(ctx.audio_store.resolve(clip.path), dtype="int16")
            assert sr == sr0 and served.shape == stored.shape
            assert np.abs(served.astype(int) - stored.astype(int)).max() <= 1
            assert r.content != ctx.audio_store.resolve(clip.path).read_bytes()  # but not the stored bytes
            assert "content-disposition" not in r.headers and clip.sha256 not in str(r.headers)
            assert "etag" not in r.headers and "last-modified" not in r.headers
            assert r.headers["cache-control"].startswith("private")
        # a range request (what browsers send for media) gets the part asked for, of the same copy
        whole = h.get("/" + urls["a"]).content
        r = h.get("/" + urls["a"], headers={"Range": "bytes=0-3"})
        assert r.status_code == 206 and r.content == b"RIFF"
        r = h.get("/" + urls["a"], headers={"Range": "bytes=40-"})
        assert r.status_code == 206 and r.content == whole[40:]
        assert h.get("/" + urls["a"], headers={"Range": f"bytes={len(whole) + 5}-"}).status_code == 416
        # path tricks, old-style ids and made-up tokens: refused, nothing read
        for bad in (f"/audit/audio/{aid}/a", f"/media/{aid}", "/media/" + "A" * 24, "/media/..%2f..%2fstore.db",
                    f"/media/{urls['a'][6:]}/../../etc/passwd", f"/media/{side_a.path}", f"/media/{side_a.sha256}",
                    "/media/", f"/media/{'x' * 10_000}"):
            r = h.get(bad)
            assert r.status_code in (404, 405, 422), (bad, r.status_code)
            assert not r.content.startswith(b"RIFF"), bad
    # another rater (with their own valid login), and nobody logged in, are refused that token
    with _login(url, "rater1") as h:
        r = h.get("/" + urls["a"])
        assert r.status_code == 404 and not r.content.startswith(b"RIFF")
    with httpx.Client(base_url=url, timeout=20) as h:
        assert h.get("/" + urls["a"]).status_code == 401
    # once voted, the pair's audio is no longer served (not even to its rater)
    r0.predict(aid, "", api_name="/vote_B")
    with _login(url, "rater0") as h:
        assert h.get("/" + urls["a"]).status_code == 404
    # a disabled account is refused at once, on a live login
    with _login(url, "rater1") as h:
        out1 = client(url, "rater1").predict(api_name="/next")
        url1 = "/" + player_urls(out1[2])["a"]
        assert h.get(url1).status_code == 200
        with ctx.session() as s:
            disable_user(s, "rater1")
        assert h.get(url1).status_code == 401


def test_audit_events_answer_the_page_in_one_request(app):
    """The audit events skip Gradio's queue: the page POSTs /gradio_api/run/NAME (login and role checks still apply)."""
    ctx, url, *_ = app
    with httpx.Client(base_url=url, timeout=20) as h:
        assert h.post("/gradio_api/run/next", json={"data": []}).status_code in (401, 403)
    with _login(url, "rater0") as h:
        out = h.post("/gradio_api/run/next", json={"data": [], "session_hash": "abc"}).json()["data"]
        aid = out[0]
        play_all(h, out[2])
        r = h.post("/gradio_api/run/vote_A", json={"data": [aid, "ok"], "session_hash": "abc"})
        assert r.status_code == 200 and r.json()["data"][4].startswith("Recorded")
        r = h.post("/gradio_api/run/vote_A", json={"data": [aid, ""], "session_hash": "abc"})  # replay
        assert r.status_code == 200 and "already has your vote" in r.json()["data"][4]
    with ctx.session() as s:
        a = s.get(AuditAssignment, int(aid))
        assert (s.get(User, a.user_id).name, a.verdict, a.note) == ("rater0", "A", "ok")


def test_disabled_user_is_refused_and_logout_works(app):
    ctx, url, *_ = app
    with httpx.Client(base_url=url, timeout=20, follow_redirects=False) as h:
        assert h.post("/login", data={"username": "rater1", "password": PASSWORD}).status_code == 200
        assert h.get("/config").status_code == 200
        assert h.get("/logout").status_code == 302
        assert h.get("/config").status_code == 401
    r1 = client(url, "rater1")
    r1.predict(api_name="/next")
    with ctx.session() as s:
        disable_user(s, "rater1")
    with pytest.raises(Exception, match="disabled"):
        r1.predict(api_name="/next")


def test_admin_saves_a_preset_and_fills_the_queue(app):
    ctx, url, pairs, _ = app
    admin = client(url, "admin0")
    admin.predict("loose", "paper", 0.2, 0.3, 0.0, 0.0, 0.0, 0.5, 0.0, 0.9, api_name="/tuning_save_preset")
    with ctx.session() as s:
        th = thresholds_of(get_preset(s, "loose"))
        assert (th.alpha1, th.alpha2, th.delta2_max) == (0.2, 0.3, 0.9)
    with pytest.raises(Exception, match="empty"):
        admin.predict("bad", "paper", 0.2, 0.3, 0.0, 0.0, 0.6, 0.5, 0.0, 0.9, api_name="/tuning_save_preset")
    with pytest.raises(Exception, match="not in the list of choices|does not exist"):
        admin.predict("../../etc/passwd", *PAPER[1:], api_name="/tuning_refresh")
    msg = admin.predict("uncertain", 3, 2, *PAPER, api_name="/fill_queue")
    assert "Added **0**" in msg  # every pair of the pool is queued already
    with pytest.raises(Exception, match="not in the list of choices"):
        admin.predict("<b>all</b>", 3, 2, *PAPER, api_name="/fill_queue")


def _load(store_url, audio_store, n_raters, votes_each, overlap):
    n_pairs = 2 * -(-n_raters * votes_each // overlap)  # slack: a rater cannot take the last slots of pairs it had
    with running_app(store_url, audio_store, n_pairs=n_pairs, n_raters=n_raters, overlap=overlap) as (ctx, url, pairs, users):
        errors: list[BaseException] = []
        cast: dict[str, list[str]] = {}
        clients = {f"rater{i}": client(url, f"rater{i}") for i in range(n_raters)}

        def rater(name: str) -> None:
            try:
                c, mine = clients[name], []
                out = c.predict(api_name="/next")
                with _login(url, name) as h:
                    for k in range(votes_each):
                        assert out[0], f"{name} ran out of pairs after {k} votes"
                        mine.append(out[0])
                        play_all(h, out[2])
                        out = c.predict(out[0], "", api_name=("/vote_A", "/vote_B", "/vote_both_good", "/vote_both_bad")[k % 4])
                cast[name] = mine
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=rater, args=(n,)) for n in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(1500)
        assert not errors, errors[:3]
        with ctx.session() as s:
            rows = s.execute(select(AuditAssignment.id, AuditAssignment.pair_id, AuditAssignment.user_id,
                                    AuditAssignment.state)).all()
            names = dict(s.execute(select(User.id, User.name)).all())
        done = [r for r in rows if r.state == "done"]
        assert len(done) == n_raters * votes_each  # no vote lost
        assert sorted(str(r.id) for r in done) == sorted(a for v in cast.values() for a in v)  # none duplicated
        assert all(names[r.user_id] == name for name, ids in cast.items() for r in done if str(r.id) in ids)
        assert len({(r.pair_id, r.user_id) for r in rows}) == len(rows)  # never twice to one rater
        per_pair: dict[int, int] = {}
        for r in rows:
            per_pair[r.pair_id] = per_pair.get(r.pair_id, 0) + 1
        assert max(per_pair.values()) <= overlap  # no pair over its overlap


@pytest.mark.slow
def test_load_20_raters_in_parallel(store_url, audio_store):
    """20 raters × 200 votes each through the HTTP API (the load test; a few minutes per back end)."""
    _load(store_url, audio_store, n_raters=20, votes_each=200, overlap=3)
