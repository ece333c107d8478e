"""The rater app attacked over real loopback HTTP: blindness of the audio (audit and listening),
login floods and lockouts, idle sessions, the anonymous page, request-size limits, short error
messages."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import Counter
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from gradio_client import Client
from scipy.stats import binom
from sqlalchemy import select

from annotate_ui.logic import audit
from annotate_ui.logic.auth import active_user
from annotate_ui.logic.listening import clipsets, design, queue
from annotate_ui.logic.logins import LoginLimiter, LoginSessions
from annotate_ui.web.app import launch
from annotate_ui.web.context import make_context
from curator.audio import SAMPLE_RATE
from db.annotation import AuditAssignment
from db.listening import ListeningItem
from db.models import AudioClip, Caption, Pair, text_hash
from builders.app import free_port, play_all, player_urls, spectrogram_urls
from builders.ui import PASSWORD, make_users


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@contextmanager
def served(ctx):
    port = free_port()
    demo = launch(ctx, port=port, prevent_thread_lock=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@contextmanager
def logged_in(url, name, password=PASSWORD):
    with httpx.Client(base_url=url, timeout=30) as h:
        h.post("/login", data={"username": name, "password": password}).raise_for_status()
        yield h


def _tone(freq: float, seconds: float = 0.05) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def strategy1_pool(s, audio_store, n_captions=8, losers=4) -> list[int]:
    """Strategy 1 as §4.1.2 builds it: per caption the top clip wins against each other clip, so
    the winner's clip is in LOSERS pairs and each loser in one (what the probe counted)."""
    pairs = []
    for c in range(n_captions):
        text = f"a bell rings {c} times"
        cap = Caption(text=text, text_sha=text_hash(text), source="test")
        s.add(cap)
        s.flush()
        clips = []
        for slot in range(losers + 1):
            sha, rel = audio_store.put_wave(_tone(300 + 40 * c + 7 * slot), SAMPLE_RATE)
            clips.append(AudioClip(sha256=sha, path=rel, sample_rate=SAMPLE_RATE, num_samples=800, duration_s=0.05,
                                   generator="world", checkpoint_id="w", prompt=text, caption_id=cap.id,
                                   strategy="1.1", slot=slot))
        s.add_all(clips)
        s.flush()
        for loser in clips[1:]:
            p = Pair(caption_id=cap.id, winner_clip_id=clips[0].id, loser_clip_id=loser.id, strategy="1.1")
            s.add(p)
            s.flush()
            pairs.append(p.id)
    return pairs


STATS = ("sha256", "etag", "last-modified", "date", "content-length", "url")


def _stats(url: str, r: httpx.Response) -> dict[str, str | None]:
    return {"sha256": hashlib.sha256(r.content).hexdigest(), "etag": r.headers.get("etag"),
            "last-modified": r.headers.get("last-modified"), "date": r.headers.get("date"),
            "content-length": r.headers.get("content-length"), "url": url}


def _repeat_predictor(fetches: list[tuple[dict, dict, bool]], key: str) -> tuple[int, int]:
    """(decisive, correct) of 'the side whose KEY value was seen more often is the winner'."""
    seen = Counter(v for a, b, _ in fetches for v in (a[key], b[key]) if v is not None)
    decisive = correct = 0
    for a, b, a_wins in fetches:
        ca, cb = seen[a[key]] if a[key] else 0, seen[b[key]] if b[key] else 0
        if ca != cb:
            decisive += 1
            correct += (ca > cb) == a_wins
    return decisive, correct


def _not_better_than_chance(decisive: int, correct: int) -> bool:
    return decisive == 0 or correct <= binom.ppf(0.9999, decisive, 0.5)


def test_no_statistic_of_the_audio_predicts_the_winner(sqlite_store_url, audio_store):
    """The probe: fetch both sides of every assignment as a rater would and count repeats of every
    header, URL and the bytes' hash; none beats chance at naming the automatic winner."""
    ctx = make_context(sqlite_store_url, audio_store)
    with ctx.session() as s:
        pairs = strategy1_pool(s, audio_store)
        make_users(s, n_raters=1, admins=1)
        audit.enqueue(s, pairs, reason="random", added_by="admin0", overlap=1)
        stored = {c.id: c.sha256 for c in s.scalars(select(AudioClip))}
        winner_of = {p.id: (p.winner_clip_id, p.loser_clip_id) for p in s.scalars(select(Pair))}
    fetches = []  # (side a stats, side b stats, a is the winner)
    images = []  # the same for the two spectrogram images
    stored_fetches = []  # the same with the stored files' hashes: what an unprotected server leaks
    with served(ctx) as url, logged_in(url, "rater0") as h:
        out = h.post("/gradio_api/run/next", json={"data": [], "session_hash": "p"}).json()["data"]
        while out[0]:
            aid = int(out[0])
            urls = player_urls(out[2])
            got = {side: _stats(urls[side], h.get("/" + urls[side])) for side in ("a", "b")}
            pics = spectrogram_urls(out[2])
            shown = {side: h.get("/" + pics[side]) for side in ("a", "b")}
            assert all(r.status_code == 200 and r.headers["content-type"] == "image/png" for r in shown.values())
            pic = {side: _stats(pics[side], r) for side, r in shown.items()}
            with ctx.session() as s:
                a = s.get(AuditAssignment, aid)
                w, lo = winner_of[a.pair_id]
                a_wins = bool(a.a_is_winner)
            fetches.append((got["a"], got["b"], a_wins))
            images.append((pic["a"], pic["b"], a_wins))
            clip_a, clip_b = (w, lo) if a_wins else (lo, w)
            stored_fetches.append(({"sha256": stored[clip_a]}, {"sha256": stored[clip_b]}, a_wins))
            out = h.post("/gradio_api/run/vote_A", json={"data": [str(aid), ""], "session_hash": "p"}).json()["data"]
    assert len(fetches) == len(pairs) == 32
    # the setup can show a leak: counting repeats of the stored bytes names the winner every time
    d, c = _repeat_predictor(stored_fetches, "sha256")
    assert d == 32 and c == 32
    # what the rater's browser received: nothing repeats, nothing names a file, nothing beats chance
    every = [x for a, b, _ in fetches for x in (a, b)]
    assert len({x["sha256"] for x in every}) == len(every)  # every copy is unique
    assert len({x["url"] for x in every}) == len(every)
    assert all(x["etag"] is None and x["last-modified"] is None for x in every)
    for key in STATS:
        d, c = _repeat_predictor(fetches, key)
        assert _not_better_than_chance(d, c), (key, d, c)
    # nor does the size itself (longer/shorter side)
    sizes = [(int(a["content-length"]), int(b["content-length"]), w) for a, b, w in fetches]
    decisive = [(sa > sb) == w for sa, sb, w in sizes if sa != sb]
    assert _not_better_than_chance(len(decisive), sum(decisive))
    # the spectrogram images the same: cached once per clip on the server, a unique copy per token
    every = [x for a, b, _ in images for x in (a, b)]
    assert len({x["sha256"] for x in every}) == len(every) and len({x["url"] for x in every}) == len(every)
    assert not {x["url"] for x in every} & {x["url"] for a, b, _ in fetches for x in (a, b)}
    assert all(x["etag"] is None and x["last-modified"] is None for x in every)
    for key in STATS:
        d, c = _repeat_predictor(images, key)
        assert _not_better_than_chance(d, c), ("spectrogram", key, d, c)
    assert len(list(audio_store.root.rglob("*.spec-v1.png"))) == len(stored)  # one cached image per clip


def _listening_world(ctx, audio_store):
    with ctx.session() as s:
        make_users(s, n_raters=1, admins=1)
        caps = [Caption(text=t, text_sha=text_hash(t), split="test") for t in
                ("rain on a roof", "a car passes", "a dog barks", "birds sing")]
        s.add_all(caps)
        s.flush()
        for g, gen in enumerate(("sysA", "sysB")):
            for k, cap in enumerate(caps):
                sha, rel = audio_store.put_wave(_tone(250 + 60 * k + 20 * g), SAMPLE_RATE)
                s.add(AudioClip(sha256=sha, path=rel, sample_rate=SAMPLE_RATE, num_samples=800, duration_s=0.05,
                                generator=gen, checkpoint_id="c", prompt=cap.text, caption_id=cap.id,
                                strategy="eval", slot=0))
        s.flush()
        sets = [clipsets.clip_set_from_generator(s, f"set-{g}", generator=g) for g in ("sysA", "sysB")]
        ls = design.create_listening_session(s, "blind", sets, n_prompts=4, n_gold=3)
        return ls.id


def test_listening_gold_items_cannot_be_spotted_by_their_audio(sqlite_store_url, audio_store):
    """A gold item reuses a real item's clip; over HTTP its URL, bytes and headers share nothing with it."""
    ctx = make_context(sqlite_store_url, audio_store)
    sid = _listening_world(ctx, audio_store)
    got = []  # (item id, stats)
    with served(ctx) as url:
        c = Client(url, auth=("rater0", PASSWORD), download_files=False, verbose=False)
        c.predict(api_name="/listen_sessions")
        out = c.predict(sid, api_name="/listen_open")
        with logged_in(url, "rater0") as h:
            while "<audio" in (out[2] or ""):  # (progress, prompt, audio, message, ovl, rel): no State over the API
                src = re.search(r'src="([^"]+)"', out[2]).group(1)
                assert "gradio_api/file" not in src and re.fullmatch(r"media/[A-Za-z0-9_-]{24}", src)
                r = h.get("/" + src)
                assert r.status_code == 200
                with ctx.session() as s:
                    item = queue.next_item(s, sid, active_user(s, "rater0"), None).item_id  # the item the page shows
                got.append((item, _stats(src, r)))
                out = c.predict(3, 3, api_name="/listen_submit")
    with ctx.session() as s:
        items = {i.id: i for i in s.scalars(select(ListeningItem).where(ListeningItem.session_id == sid))}
    assert len(got) == len(items) == 11 and sum(items[i].is_gold for i, _ in got) == 3
    # sanity: the stored clip of each gold item is a real item's clip
    clip_count = Counter(i.clip_id for i in items.values())
    assert all(clip_count[i.clip_id] == 2 for i in items.values() if i.is_gold)
    every = [x for _, x in got]
    assert len({x["sha256"] for x in every}) == len(every) and len({x["url"] for x in every}) == len(every)
    assert all(x["etag"] is None and x["last-modified"] is None for x in every)
    # "shares a value with another item" would flag exactly the gold items and their twins; no value is shared
    for key in ("sha256", "url", "etag", "last-modified"):
        counts = Counter(x[key] for x in every if x[key] is not None)
        assert all(n == 1 for n in counts.values()), key
    twins = {}
    for item, x in got:
        twins.setdefault(items[item].clip_id, []).append(x["content-length"])
    same_size = sum(len(v) == 2 and v[0] == v[1] for v in twins.values())
    assert same_size <= 1  # sizes are random per copy (P(≥ 2 of 3 twins equal) < 1e-5)


# --------------------------------------------------------------------------------------------
# Login
# --------------------------------------------------------------------------------------------


def test_login_flood_locks_the_account_and_the_client_and_checks_off_the_loop(sqlite_store_url, audio_store, caplog):
    clock = FakeClock()
    ctx = make_context(sqlite_store_url, audio_store, limiter=LoginLimiter(max_failures=5, lockout_s=60, clock=clock),
                       locked_delay_s=0.05)
    with ctx.session() as s:
        make_users(s, n_raters=2, admins=1)
    threads = []
    real_login = ctx.login

    def spy(name, password):
        threads.append(threading.current_thread().name)
        return real_login(name, password)

    ctx.login = spy
    caplog.set_level(logging.WARNING, logger="annotate_ui.logic.auth")
    with served(ctx) as url, httpx.Client(base_url=url, timeout=30) as h:
        def login(name, pw=PASSWORD):
            return h.post("/login", data={"username": name, "password": pw})

        codes = [login("admin0", "wrong-password").status_code for _ in range(5)]
        assert codes == [400] * 5
        # locked: the right password is refused too, at once (no hash checked), with the wait
        n_checked = len(threads)
        r = login("admin0")
        assert r.status_code == 429 and "try again in 60 s" in r.text and r.headers["retry-after"] == "60"
        assert [login("admin0", f"guess-{i}").status_code for i in range(20)] == [429] * 20
        assert len(threads) == n_checked
        # every check ran on the login worker threads, never on the event loop's thread
        assert threads and all(t.startswith("login") for t in threads)
        assert any("login locked for 60 s" in m and "admin0" in m for m in caplog.messages)
        # the client is locked too (5 failures from this address), so other names fail at once
        assert login("rater0").status_code == 429
        clock.t += 61
        assert login("rater0").status_code == 200  # both locks over; a success clears the client
        # the next lockout of the same account doubles
        assert [login("admin0", "wrong-password").status_code for _ in range(5)] == [400] * 5
        assert login("admin0").status_code == 429
        assert ctx.limiter.locked_for("admin0", None) == 120  # the account's second lockout
        clock.t += 61  # the client's lockout (its first since the success) is over, the account's is not
        r = login("admin0")
        assert r.status_code == 429 and "try again in 59 s" in r.text
        assert login("rater0").status_code == 200
        clock.t += 60
        assert login("admin0").status_code == 200
        assert h.get("/config").status_code == 200


def test_idle_sessions_expire(sqlite_store_url, audio_store):
    clock = FakeClock()
    ctx = make_context(sqlite_store_url, audio_store, sessions=LoginSessions(600, clock=clock))
    with ctx.session() as s:
        make_users(s, n_raters=1, admins=1)
    with served(ctx) as url, logged_in(url, "rater0") as h:
        assert h.get("/config").status_code == 200
        clock.t += 599
        assert h.get("/config").status_code == 200  # used: the clock restarts
        clock.t += 599
        assert h.post("/gradio_api/run/next", json={"data": [], "session_hash": "x"}).status_code == 200
        clock.t += 601
        assert h.get("/config").status_code == 401  # idle too long: logged out
        assert h.post("/gradio_api/run/next", json={"data": [], "session_hash": "x"}).status_code in (401, 403)
        h.post("/login", data={"username": "rater0", "password": PASSWORD}).raise_for_status()
        assert h.get("/config").status_code == 200


def test_anonymous_page_lists_no_endpoints(sqlite_store_url, audio_store):
    ctx = make_context(sqlite_store_url, audio_store)
    with ctx.session() as s:
        make_users(s, n_raters=1, admins=1)
    with served(ctx) as url:
        with httpx.Client(base_url=url, timeout=30) as h:
            page = h.get("/")
            assert page.status_code == 200 and "auth_required" in page.text
            for name in ("fill_queue", "tuning_save_preset", "listen_create_session", "vote_A", "named_endpoints\":{\"/"):
                assert name not in page.text, name
            assert h.get("/gradio_api/info").status_code == 401
        with logged_in(url, "admin0") as h:  # a logged-in page is Gradio's own, with its endpoints
            assert "fill_queue" in h.get("/").text


def test_request_bodies_over_the_limit_are_refused_unread(sqlite_store_url, audio_store):
    ctx = make_context(sqlite_store_url, audio_store, max_body_bytes=64 * 1024)
    with ctx.session() as s:
        make_users(s, n_raters=1, admins=1)
        audit.enqueue(s, strategy1_pool(s, audio_store, n_captions=1, losers=1), reason="random", added_by="t")
    with served(ctx) as url, logged_in(url, "rater0") as h:
        out = h.post("/gradio_api/run/next", json={"data": [], "session_hash": "x"}).json()["data"]
        aid = out[0]
        play_all(h, out[2])
        big = "x" * (5 << 20)
        r = h.post("/gradio_api/run/vote_A", json={"data": [aid, big], "session_hash": "x"})
        assert r.status_code == 413 and "larger than 65536 bytes" in r.text

        def stream():  # no Content-Length: counted as it arrives
            for _ in range(100):
                yield b"y" * 8192

        r = h.post("/gradio_api/run/vote_A", content=stream(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert h.post("/login", data={"username": "rater0", "password": big}).status_code == 413
        # nothing was recorded; a normal vote still goes through
        with ctx.session() as s:
            assert s.get(AuditAssignment, int(aid)).state == "assigned"
        r = h.post("/gradio_api/run/vote_A", json={"data": [aid, "fine"], "session_hash": "x"})
        assert r.status_code == 200 and r.json()["data"][4].startswith("Recorded")


def test_error_messages_quote_only_a_short_prefix(sqlite_store_url, audio_store):
    ctx = make_context(sqlite_store_url, audio_store)
    with ctx.session() as s:
        make_users(s, n_raters=1, admins=1)
    huge = "z" * 100_000
    with served(ctx) as url:
        admin = Client(url, auth=("admin0", PASSWORD), download_files=False, verbose=False)
        rater = Client(url, auth=("rater0", PASSWORD), download_files=False, verbose=False)
        # a refused vote answers with its reason in the message line (the page shows it there)
        text = rater.predict(huge, "", api_name="/vote_A")[4]
        assert text.startswith("⚠") and "zzzz" * 30 not in text and len(text) < 400, text[:200]
        for c, args, api in ((rater, (huge,), "/skip"),
                             (admin, ("x", huge, "", "eval"), "/listen_create_clip_set"),
                             (admin, (huge, "x", "", "eval"), "/listen_create_clip_set"),
                             (admin, (huge, ["x"], 3, 0, "", 4, 3.0, ""), "/listen_create_session")):
            with pytest.raises(Exception) as info:
                c.predict(*args, api_name=api)
            text = str(info.value)
            assert text and "zzzz" * 30 not in text, (api, text[:200])
            assert len(text) < 400, (api, len(text))
