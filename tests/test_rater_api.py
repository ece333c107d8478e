"""The raters' hot path: the steps without Gradio, logins and lockouts in the store (shared by
every process of it), the JSON routes over real loopback HTTP, `annotate-ui --workers`."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from annotate_ui.logic import audit
from annotate_ui.logic import rater_steps as steps
from annotate_ui.logic.auth import disable_user
from annotate_ui.logic.listening import clipsets, design
from annotate_ui.logic.logins import LoginLimiter, LoginSessions, TokenMap
from annotate_ui.web.app import launch
from annotate_ui.web.context import make_context
from builders.ports import free_port
from builders.serve import serve_process
from builders.ui import PASSWORD, make_pool, make_users, play_item, play_pair
from db.annotation import AuditAssignment
from db.listening import ListeningRating
from db.errors import CuratorError
from db.logins import LoginSession
from db.session import open_store

class FakeClock:
    def __init__(self):
        self.t = 5000.0

    def __call__(self):
        return self.t


def _listening(s, store, n_prompts=3) -> int:
    """A listening session of N_PROMPTS prompts × 2 systems, no gold items; its id."""
    import numpy as np

    from curator.audio import SAMPLE_RATE
    from db.models import AudioClip, Caption, text_hash

    caps = [Caption(text=f"a bell rings {i}", text_sha=text_hash(f"a bell rings {i}"), split="test")
            for i in range(n_prompts)]
    s.add_all(caps)
    s.flush()
    for g, gen in enumerate(("sysA", "sysB")):
        for k, cap in enumerate(caps):
            wave = 0.1 * np.sin(np.arange(800) * (0.05 + 0.003 * k + 0.02 * g)).astype(np.float32)
            sha, rel = store.put_wave(wave, SAMPLE_RATE)
            s.add(AudioClip(sha256=sha, path=rel, sample_rate=SAMPLE_RATE, num_samples=800, duration_s=0.05,
                            generator=gen, checkpoint_id="c", prompt=cap.text, caption_id=cap.id, strategy="eval",
                            slot=0))
    s.flush()
    sets = [clipsets.clip_set_from_generator(s, f"set-{g}", generator=g) for g in ("sysA", "sysB")]
    return design.create_listening_session(s, "hot-path", sets, caption_ids=[c.id for c in caps], n_gold=0, min_raters=1).id


# --------------------------------------------------------------------------------------------
# The steps, without Gradio or HTTP
# --------------------------------------------------------------------------------------------


def test_audit_steps_vote_once_and_hand_out_blind_urls(store_url, audio_store):
    ctx = make_context(store_url, audio_store)
    with ctx.session() as s:
        pairs = make_pool(s, audio_store, 3)
        r0, r1 = make_users(s, n_raters=2, admins=0)
        audit.enqueue(s, pairs, reason="random", added_by="t", overlap=1)
    v = steps.audit_next(ctx, r0)
    assert v.assignment_id is not None and v.remaining == 3 and [c.side for c in v.clips] == ["a", "b"]
    urls = [u for c in v.clips for u in (c.audio, c.spectrogram)]
    # four opaque tokens (audio and image of each side): nothing names the assignment or a clip
    assert len(set(urls)) == 4 and all(re.fullmatch(r"media/[A-Za-z0-9_-]{24}", u) for u in urls)
    assert steps.audit_next(ctx, r0).assignment_id == v.assignment_id  # the open pair comes back
    with ctx.session() as s:
        play_pair(s, audio_store, r0, v.assignment_id)
    nxt = steps.audit_vote(ctx, r0, v.assignment_id, "B", "  ")
    assert nxt.message == "Recorded: B better." and nxt.done == 1 and nxt.assignment_id != v.assignment_id
    with pytest.raises(CuratorError, match="already has your vote"):
        steps.audit_vote(ctx, r0, v.assignment_id, "A")
    with pytest.raises(CuratorError, match="not assigned to you"):
        steps.audit_vote(ctx, r1, nxt.assignment_id, "A")
    with pytest.raises(CuratorError, match="verdict"):
        steps.audit_vote(ctx, r0, nxt.assignment_id, "C")
    with pytest.raises(CuratorError):  # clips not played yet: refused, nothing recorded
        steps.audit_vote(ctx, r0, nxt.assignment_id, "A")
    skipped = steps.audit_skip(ctx, r0, nxt.assignment_id)
    assert skipped.message == "Skipped." and skipped.skipped == 1
    with ctx.session() as s:
        rows = s.execute(select(AuditAssignment.verdict, AuditAssignment.state)
                         .where(AuditAssignment.user_id == r0.id).order_by(AuditAssignment.id)).all()
    assert [tuple(r) for r in rows] == [("B", "done"), (None, "skipped"), (None, "assigned")]
    d = skipped.as_dict()
    assert set(d) == {"assignment_id", "caption", "clips", "done", "skipped", "remaining", "message", "empty_reason"}


def test_listening_steps_rate_each_clip_once(store_url, audio_store):
    ctx = make_context(store_url, audio_store)
    with ctx.session() as s:
        (r0,) = make_users(s, n_raters=1, admins=0)
        sid = _listening(s, audio_store, n_prompts=2)
    v = steps.listen_next(ctx, r0, sid)
    assert v.item_id is not None and v.total == 4 and v.done == 0 and v.clip.audio.startswith("media/")
    with ctx.session() as s:
        play_item(s, audio_store, r0, sid, v.item_id)
    nxt = steps.listen_rate(ctx, r0, sid, v.item_id, 4, 5)
    assert nxt.done == 1 and nxt.item_id != v.item_id and "Recorded OVL 4, REL 5" in nxt.message
    with pytest.raises(CuratorError, match="already"):  # a replay is refused and writes nothing
        steps.listen_rate(ctx, r0, sid, v.item_id, 4, 5)
    with pytest.raises(CuratorError, match="already"):
        steps.listen_rate(ctx, r0, sid, v.item_id, 1, 1)
    with ctx.session() as s:
        play_item(s, audio_store, r0, sid, nxt.item_id)
    with pytest.raises(CuratorError, match="OVL must be a whole number"):
        steps.listen_rate(ctx, r0, sid, nxt.item_id, "5", 5)
    with pytest.raises(CuratorError, match="choose a listening session"):
        steps.listen_next(ctx, r0, "1")
    with ctx.session() as s:
        rated = s.scalars(select(ListeningRating.ovl).where(ListeningRating.rated_at.is_not(None))).all()
    assert rated == [4]


# --------------------------------------------------------------------------------------------
# Logins and lockouts in the store: two "processes" (two objects on one store) share them
# --------------------------------------------------------------------------------------------


def test_a_login_made_in_one_process_holds_in_another_and_ends_everywhere(store_url):
    factory = open_store(store_url)
    with factory() as s:
        (r0,) = make_users(s, n_raters=1, admins=0)
        s.commit()
    clock = FakeClock()
    a, b = LoginSessions(600, clock=clock), LoginSessions(600, clock=clock)
    a.bind(factory)
    b.bind(factory)
    token = a.create(r0.id)
    assert b.user(token).name == "rater0" and TokenMap(b)[token] == "rater0" and token in TokenMap(b)
    with factory() as s:  # only the hash of the cookie is stored
        assert s.scalars(select(LoginSession.token_hash)).all() == [__import__("hashlib").sha256(token.encode()).hexdigest()]
    clock.t += 599
    assert a.user(token) is not None  # a use: the idle clock restarts (in the store)
    clock.t += 599
    assert b.user(token) is not None
    a.end(token)  # logout on a: b refuses it on its next fresh look
    assert b.user(token, fresh=True) is None
    assert token not in TokenMap(b)
    t2 = a.create(r0.id)
    clock.t += 601
    assert b.user(t2) is None  # idle too long
    t3 = a.create(r0.id)
    assert b.user(t3) is not None
    with factory() as s:
        disable_user(s, "rater0")
        s.commit()
    assert b.user(t3, fresh=True) is None  # a disabled account: refused at once when asked fresh
    assert b.user("x" * 500) is None and b.user(None) is None


def test_a_lockout_started_in_one_process_refuses_in_another(store_url):
    factory = open_store(store_url)
    clock = FakeClock()
    a, b = LoginLimiter(max_failures=3, lockout_s=60, clock=clock), LoginLimiter(max_failures=3, lockout_s=60, clock=clock)
    a.bind(factory)
    b.bind(factory)
    assert [a.failed("Admin0", "10.0.0.1") for _ in range(2)] == [0, 0]
    assert b.failed("admin0", "10.0.0.2") == 60  # the third failure of the account, counted on b
    assert a.locked_for("admin0", None) == 60 and b.locked_for("ADMIN0 ", "10.0.0.9") == 60
    assert b.locked_for("", "10.0.0.1", account_too=False) == 0  # that client had 2 failures only
    clock.t += 61
    assert a.locked_for("admin0", None) == 0
    assert [b.failed("admin0", None) for _ in range(3)][-1] == 120  # the next lockout doubles
    a.succeeded("admin0", None)
    assert b.locked_for("admin0", None) == 0


# --------------------------------------------------------------------------------------------
# The JSON routes over real HTTP
# --------------------------------------------------------------------------------------------


def test_json_routes_need_a_login_and_record_a_vote_once(store_url, audio_store):
    ctx = make_context(store_url, audio_store)
    with ctx.session() as s:
        pairs = make_pool(s, audio_store, 3)
        make_users(s, n_raters=2, admins=1)
        audit.enqueue(s, pairs, reason="random", added_by="t", overlap=2)
        sid = _listening(s, audio_store, n_prompts=1)
    port = free_port()
    server = launch(ctx, port=port, prevent_thread_lock=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        with httpx.Client(base_url=url, timeout=30) as anon:
            r = anon.post("/api/audit/next", json={})
            assert r.status_code == 401 and "not logged in" in r.json()["error"]
            assert anon.post("/api/listen/next", json={"session_id": sid}).status_code == 401
            assert anon.get("/api/listen/sessions").status_code == 401
        with httpx.Client(base_url=url, timeout=30) as h, httpx.Client(base_url=url, timeout=30) as h1:
            h.post("/login", data={"username": "rater0", "password": PASSWORD}).raise_for_status()
            h1.post("/login", data={"username": "rater1", "password": PASSWORD}).raise_for_status()
            v = h.post("/api/audit/next", json={}).json()
            aid = v["assignment_id"]
            assert isinstance(aid, int) and v["remaining"] == 3
            early = h.post("/api/audit/vote", json={"assignment_id": aid, "verdict": "A"})
            assert early.status_code == 400  # before both clips were played: refused
            for clip in v["clips"]:
                assert h.get("/" + clip["audio"]).status_code == 200
            # not JSON: refused before anything is read (a form of another site cannot send JSON unasked)
            r = h.post("/api/audit/vote", data={"assignment_id": aid, "verdict": "A"})
            assert r.status_code == 400 and "JSON" in r.json()["error"]
            assert h1.post("/api/audit/vote", json={"assignment_id": aid, "verdict": "A"}).status_code == 400
            r = h.post("/api/audit/vote", json={"assignment_id": aid, "verdict": "A", "note": "clear"})
            assert r.status_code == 200 and r.json()["message"] == "Recorded: A better." and r.json()["done"] == 1
            replay = h.post("/api/audit/vote", json={"assignment_id": aid, "verdict": "A"})
            assert replay.status_code == 400 and "already has your vote" in replay.json()["error"]
            assert h.post("/api/audit/vote", content=b"[1, 2]", headers={"content-type": "application/json"}
                          ).status_code == 400
            # the listening tab's next clip and rating
            assert h.get("/api/listen/sessions").json() == {"sessions": [{"id": sid, "name": "hot-path"}]}
            c = h.post("/api/listen/next", json={"session_id": sid}).json()
            assert h.get("/" + c["clip"]["audio"]).status_code == 200
            r = h.post("/api/listen/rate", json={"session_id": sid, "item_id": c["item_id"], "ovl": 3, "rel": 4})
            assert r.status_code == 200 and r.json()["done"] == 1
            # a disabled account is refused at once, on its live login
            with ctx.session() as s:
                disable_user(s, "rater1")
            assert h1.post("/api/audit/next", json={}).status_code == 401
            # logout ends the login in the store
            h.get("/logout")
            h.cookies.clear()
        with ctx.session() as s:
            votes = s.execute(select(AuditAssignment.verdict, AuditAssignment.note)
                              .where(AuditAssignment.state == "done")).all()
            ratings = s.execute(select(ListeningRating.ovl, ListeningRating.rel)
                                .where(ListeningRating.rated_at.is_not(None))).all()
            logins = s.scalars(select(LoginSession.user_id)).all()
        assert [tuple(v) for v in votes] == [("A", "clear")] and [tuple(r) for r in ratings] == [(3, 4)]
        assert len(logins) == 1  # rater1's (disabled; it can no longer be used); rater0 logged out
    finally:
        server.close()


# --------------------------------------------------------------------------------------------
# Several processes
# --------------------------------------------------------------------------------------------


def test_workers_on_sqlite_are_refused_in_one_line(sqlite_store_url):
    from annotate_ui.cli import cli

    store_url = sqlite_store_url
    r = CliRunner().invoke(cli, ["--db", store_url, "--port", "7999", "--workers", "2"])
    out = r.output.strip()
    assert r.exit_code == 2 and len(out.splitlines()) == 1, out
    assert "--workers needs PostgreSQL" in out and "Traceback" not in out
    r = CliRunner().invoke(cli, ["--db", store_url, "--port", "7999", "--workers", "0"])
    assert r.exit_code == 2 and "--workers 0 must be at least 1" in r.output.strip()


@pytest.mark.postgres
def test_two_worker_processes_share_logins_and_keep_overlap_exact(pg_reason, audio_store):
    """`annotate-ui --workers 2`: each new connection lands on either process; a login made on one
    holds on both, and 2 raters voting over fresh connections never exceed a pair's overlap."""
    from conftest import make_pg_database
    from db.session import upgrade

    url, drop = make_pg_database(pg_reason)
    try:
        upgrade(url)
        ctx = make_context(url, audio_store)
        with ctx.session() as s:
            pairs = make_pool(s, audio_store, 6)
            make_users(s, n_raters=3, admins=1)
            audit.enqueue(s, pairs, reason="random", added_by="t", overlap=2)
        port = free_port()
        proc = serve_process(url, audio_store.root, port, "--workers", "2")
        try:
            cookies = {}
            for name in ("rater0", "rater1", "rater2"):
                with httpx.Client(base_url=f"http://127.0.0.1:{port}/", timeout=30) as h:
                    h.post("/login", data={"username": name, "password": PASSWORD}).raise_for_status()
                    cookies[name] = dict(h.cookies)
            cast = {n: [] for n in cookies}
            for _ in range(5):
                for name, jar in cookies.items():
                    # a new connection each time: the kernel spreads them over both processes
                    with httpx.Client(base_url=f"http://127.0.0.1:{port}/", timeout=30, cookies=jar) as h:
                        v = h.post("/api/audit/next", json={}).json()
                        if v["assignment_id"] is None:
                            continue
                        for clip in v["clips"]:
                            assert h.get("/" + clip["audio"]).status_code == 200
                        r = h.post("/api/audit/vote", json={"assignment_id": v["assignment_id"], "verdict": "A"})
                        assert r.status_code == 200, r.text
                        cast[name].append(v["assignment_id"])
        finally:
            proc.terminate()
            proc.wait(30)
        with ctx.session() as s:
            rows = s.execute(select(AuditAssignment.id, AuditAssignment.pair_id, AuditAssignment.user_id,
                                    AuditAssignment.state)).all()
        done = sorted(r.id for r in rows if r.state == "done")
        assert done == sorted(a for v in cast.values() for a in v) and len(done) == 12  # 6 pairs × overlap 2
        per_pair = {}
        for r in rows:
            per_pair[r.pair_id] = per_pair.get(r.pair_id, 0) + 1
        assert max(per_pair.values()) == 2 and len({(r.pair_id, r.user_id) for r in rows}) == len(rows)
    finally:
        drop()
