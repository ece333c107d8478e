"""Rater-app benchmarks.

1. Next-pair (audit) and next-clip (listening) latency with R concurrent raters on loopback. The
   app runs as `annotate-ui` in its own process (`--workers N`: N processes on one socket,
   PostgreSQL only); each rater logs in over raw HTTP (httpx) and calls the JSON routes
   (api/audit/next, api/audit/vote; api/listen/next, api/listen/rate), fetching each pair's audio
   and spectrograms as the page's players do (--no-media leaves them out, to show the vote path's
   own cost). Each run stops after --seconds or --votes per rater. Reported: the vote round trip
   (the wait for the next pair or clip), the media fetches, the server's CPU per vote (all its
   processes), the 1-minute load average before and after (the machine is shared) and the
   invariants (no vote lost or duplicated, no pair over its overlap, never twice to one rater).
   --think-ms: raters pause about that long (±50 %) before each vote; 0 is the closed loop.
2. Threshold view refresh (`annotate_ui.logic.tuning.view` + the frames the plots get) at 100k and 1M
   pairs of random scores.
3. --login-flood N: one rater's next-pair latency alone, then while N anonymous clients flood
   /login with wrong passwords (argon2 checks run on worker threads; the lockout then refuses
   the flood without checking anything). Both phases in one run, and their ratio.

    .venv/bin/python benchmarks/bench_ui.py [--raters 50] [--think-ms 2000] [--tab audit|listen] [--workers 1 --workers 2]
        [--seconds 30] [--votes 60] [--no-media] [--db URL] [--skip-http]
    .venv/bin/python benchmarks/bench_ui.py --login-flood 4 [--votes 200]   # 3. next-pair p95 under a /login flood

--db: a fresh SQLite file per run by default; with a PostgreSQL URL
(postgresql+psycopg://postgres@127.0.0.1:5432/postgres) each run creates its own database on that
server and drops it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def percentile(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


class RawClient:
    """Gradio's HTTP API without gradio_client: POST /gradio_api/call/NAME, then read its SSE result."""

    def __init__(self, url: str, name: str, password: str):
        import secrets

        import httpx

        self.h = httpx.Client(base_url=url, timeout=120)
        r = self.h.post("/login", data={"username": name, "password": password})
        r.raise_for_status()
        self.session_hash = secrets.token_hex(8)  # one per rater, like a browser tab (gradio_client does the same)

    def run(self, api_name: str, *data):
        """An event that skips the queue (queue=False), as the page calls it: POST /gradio_api/run/NAME."""
        r = self.h.post(f"/gradio_api/run/{api_name}", json={"data": list(data), "session_hash": self.session_hash})
        if r.status_code != 200:
            raise RuntimeError(f"{api_name}: HTTP {r.status_code}: {r.text[:200]}")
        return r.json()["data"]

    def call(self, api_name: str, *data):
        r = self.h.post(f"/gradio_api/call/{api_name}", json={"data": list(data), "session_hash": self.session_hash})
        r.raise_for_status()
        event_id = r.json()["event_id"]
        event = None
        with self.h.stream("GET", f"/gradio_api/call/{api_name}/{event_id}") as s:
            for line in s.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line.split(":", 1)[1].strip()
                    if event == "error":
                        raise RuntimeError(payload)
                    return json.loads(payload)
        raise RuntimeError(f"{api_name}: no result")


@contextmanager
def fresh_store(server_url: str | None, tmp: Path):
    """A fresh store URL: a SQLite file in TMP, or a new database on SERVER_URL's PostgreSQL server
    (created here and dropped afterwards, so runs never meet each other's data)."""
    if server_url is None or not server_url.startswith("postgresql"):
        yield server_url or f"sqlite:///{tmp / 'store.db'}"
        return
    import psycopg
    from sqlalchemy.engine import make_url

    from db.session import dispose_engines

    base = make_url(server_url)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bench_ui_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


AUDIO_SRC = re.compile(r'<audio[^>]* src="([^"]+)"')


def _serve(url: str, audio_root: Path, port: int, concurrency: int, log_path: Path, *extra: str) -> subprocess.Popen:
    """`annotate-ui` in its own process, as it is deployed: the raters' client threads must not share its GIL."""
    cmd = [sys.executable, "-c", "from annotate_ui.cli import main; main()", "--db", url, "--audio-root", str(audio_root),
           "--host", "127.0.0.1", "--port", str(port), "--concurrency", str(concurrency), *extra]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    from builders.serve import wait_until_serving

    return wait_until_serving(proc, port, 120, lambda: f"see {log_path}")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process PID so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of PID and its children (uvicorn's worker processes), so far."""
    total = _cpu_s(pid)
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for kid in kids:
        try:
            total += _tree_cpu_s(int(kid))
        except (OSError, ValueError, IndexError):
            pass
    return total


class ApiClient:
    """The JSON routes (annotate_ui/rater_api.py) as the page's script calls them."""

    def __init__(self, url: str, name: str, password: str):
        import httpx

        self.h = httpx.Client(base_url=url, timeout=120)
        self.h.post("/login", data={"username": name, "password": password}).raise_for_status()

    def api(self, path: str, **body):
        r = self.h.post(f"/api/{path}", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {r.status_code}: {r.text[:200]}")
        return r.json()

    def media(self, view) -> float:
        """GET the clips' audio (and spectrograms) of VIEW as the page's players do; seconds taken."""
        t = time.perf_counter()
        clips = view.get("clips") or ([view["clip"]] if view.get("clip") else [])
        for clip in clips:
            for url in (clip.get("audio"), clip.get("spectrogram")):
                if url:
                    self.h.get("/" + url).raise_for_status()
        return time.perf_counter() - t


def bench_http(db_url: str | None, raters: int, seconds: float, overlap: int = 3, think_ms: float = 0.0,
               tab: str = "audit", workers: int = 1, media: bool = True, max_votes: int = 400) -> dict:
    """R raters on the JSON routes, each: the next pair (or clip), its media (as the page's players
    fetch it; MEDIA=False leaves it out, to show the vote path's own CPU), think THINK_MS (±50 %),
    vote (or rate), repeat until SECONDS have passed or MAX_VOTES were cast. think_ms=0 is the
    closed loop (each rater votes again the moment the next pair and its media are there)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_ui_"))
    with fresh_store(db_url, tmp) as url:
        return _bench_http(url, tmp, raters, seconds, overlap, think_ms, tab, workers, media, max_votes)


def _listening_world(s, store, n_prompts: int, tag: str) -> int:
    """A listening session of N_PROMPTS prompts × 2 systems (tiny tones), no gold items; its id."""
    from annotate_ui.logic.listening import clipsets, design
    from curator.audio import SAMPLE_RATE
    from db.models import AudioClip, Caption, text_hash

    caps = [Caption(text=f"{tag} rain on a tin roof {i}", text_sha=text_hash(f"{tag} rain on a tin roof {i}"),
                    split="test") for i in range(n_prompts)]
    s.add_all(caps)
    s.flush()
    for g, gen in enumerate(("sysA", "sysB")):
        for k, cap in enumerate(caps):
            wave = 0.1 * np.sin(np.arange(800) * (0.05 + 0.0001 * k + 0.02 * g)).astype(np.float32)
            sha, rel = store.put_wave(wave, SAMPLE_RATE)
            s.add(AudioClip(sha256=sha, path=rel, sample_rate=SAMPLE_RATE, num_samples=len(wave), duration_s=0.05,
                            generator=f"{tag}{gen}", checkpoint_id="c", prompt=cap.text, caption_id=cap.id,
                            strategy="eval", slot=0))
    s.flush()
    sets = [clipsets.clip_set_from_generator(s, f"{tag}-set-{g}", generator=f"{tag}{g}") for g in ("sysA", "sysB")]
    return design.create_listening_session(s, f"{tag}-bench", sets, caption_ids=[c.id for c in caps], n_gold=0,
                                      min_raters=1).id


def _bench_http(url: str, tmp: Path, raters: int, seconds: float, overlap: int, think_ms: float, tab: str,
                workers: int, media: bool, max_votes: int) -> dict:
    from sqlalchemy import select

    from annotate_ui.logic import audit
    from annotate_ui.logic.predraw import predraw
    from annotate_ui.web.context import make_context
    from curator.audio import AudioStore
    from db.annotation import AuditAssignment
    from db.listening import ListeningRating
    from db.session import upgrade
    from builders.ports import free_port
    from builders.ui import PASSWORD, make_pool, make_users

    upgrade(url)
    store = AudioStore(tmp / "audio")
    ctx = make_context(url, store)
    # closed loop: up to ~60 votes/s/rater-slot are possible; paced: 1 per think time
    per_rater = max_votes if not think_ms else min(max_votes, int(seconds / (think_ms / 1000)) + 2)
    tag = f"b{int(time.time())}"
    t0 = time.perf_counter()
    with ctx.session() as s:
        names = [u.name for u in make_users(s, n_raters=raters, admins=1, prefix=f"{tag}r")][1:]
        if tab == "audit":
            n_pairs = -(-raters * per_rater // overlap) + 10
            pairs = make_pool(s, store, n_pairs, seed=int(time.time()) % 1000)
            audit.enqueue(s, pairs, reason="random", added_by="bench", overlap=overlap)
        else:
            n_pairs = per_rater // 2 + 2
            session_id = _listening_world(s, store, n_pairs, tag)
        s.commit()
        predraw(s, store)  # what the server's predrawer does when the queue is filled
    setup_s = time.perf_counter() - t0
    port = free_port()
    server = _serve(url, store.root, port, 16, tmp / "annotate-ui.log", "--workers", str(workers))
    base = f"http://127.0.0.1:{port}/"
    lat_next, lat_media, errors, cast = [], [], [], {}
    lock = threading.Lock()
    try:
        clients = {n: ApiClient(base, n, PASSWORD) for n in names}
        barrier = threading.Barrier(raters)
        deadline = [0.0]

        def rater(name):
            rng = random.Random(name)
            try:
                c, mine, ln, lm = clients[name], [], [], []
                barrier.wait()
                t = time.perf_counter()
                view = c.api("audit/next") if tab == "audit" else c.api("listen/next", session_id=session_id)
                ln.append(time.perf_counter() - t)
                for k in range(per_rater):
                    key = view.get("assignment_id") if tab == "audit" else view.get("item_id")
                    if key is None or time.perf_counter() > deadline[0]:
                        break
                    if media:
                        lm.append(c.media(view))
                    if think_ms:
                        time.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)
                    t = time.perf_counter()
                    if tab == "audit":
                        view = c.api("audit/vote", assignment_id=key, verdict=audit.VERDICTS[k % 4])
                    else:
                        view = c.api("listen/rate", session_id=session_id, item_id=key, ovl=1 + k % 5, rel=1 + (k + 2) % 5)
                    ln.append(time.perf_counter() - t)
                    mine.append(key)
                with lock:
                    lat_next.extend(ln)
                    lat_media.extend(lm)
                    cast[name] = mine
            except BaseException as exc:  # noqa: BLE001
                errors.append(repr(exc))

        load0 = os.getloadavg()[0]
        cpu0 = _tree_cpu_s(server.pid)
        t0 = time.perf_counter()
        deadline[0] = t0 + seconds
        threads = [threading.Thread(target=rater, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        server_cpu = _tree_cpu_s(server.pid) - cpu0
        load1 = os.getloadavg()[0]
    finally:
        server.terminate()
        server.wait(30)
    n_cast = sum(len(v) for v in cast.values())
    if tab == "audit":
        with ctx.session() as s:
            rows = s.execute(select(AuditAssignment.id, AuditAssignment.pair_id, AuditAssignment.user_id,
                                    AuditAssignment.state).where(AuditAssignment.pair_id.in_(pairs))).all()
        done = sorted(r.id for r in rows if r.state == "done")
        per_pair: dict = {}
        for r in rows:
            per_pair[r.pair_id] = per_pair.get(r.pair_id, 0) + 1
        checks = {"no_vote_lost_or_duplicated": done == sorted(int(a) for v in cast.values() for a in v),
                  "max_per_pair": max(per_pair.values()) if per_pair else 0, "overlap": overlap,
                  "never_twice": len({(r.pair_id, r.user_id) for r in rows}) == len(rows)}
    else:
        with ctx.session() as s:
            rows = s.execute(select(ListeningRating.item_id, ListeningRating.user_id, ListeningRating.rated_at)
                             .where(ListeningRating.session_id == session_id)).all()
        from db.annotation import User

        with ctx.session() as s:
            ids = dict(s.execute(select(User.name, User.id).where(User.name.in_(names))).all())
        rated = sorted((r.user_id, r.item_id) for r in rows if r.rated_at is not None)
        checks = {"no_vote_lost_or_duplicated": rated == sorted((ids[n], i) for n, v in cast.items() for i in v),
                  "never_twice": len({(r.item_id, r.user_id) for r in rows}) == len(rows)}
    return {
        "store": url.split(":")[0].split("+")[0], "tab": tab, "workers": workers, "raters": raters,
        "think_ms": think_ms, "media": media, "bound_s": seconds, "setup_s": round(setup_s, 1), "errors": errors[:3],
        "votes_recorded": n_cast, **checks,
        "wall_s": round(wall, 1), "votes_per_s": round(n_cast / wall, 1),
        "server_cpu_ms_per_vote": round(1000 * server_cpu / max(1, n_cast), 2),
        "next_ms_p50": round(percentile(lat_next, 50), 1), "next_ms_p95": round(percentile(lat_next, 95), 1),
        "next_ms_max": round(percentile(lat_next, 100), 1),
        **({"media_ms_p50": round(percentile(lat_media, 50), 1), "media_ms_p95": round(percentile(lat_media, 95), 1)}
           if lat_media else {}),
        "load_avg_1min": [round(load0, 1), round(load1, 1)], "cores": os.cpu_count(),
    }


def bench_logic(db_url: str | None, raters: int, votes: int, overlap: int = 3) -> dict:
    """The same load without HTTP: next_assignment + vote per rater thread, one session each."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_ui_logic_"))
    with fresh_store(db_url, tmp) as url:
        return _bench_logic(url, tmp, raters, votes, overlap)


def _bench_logic(url: str, tmp: Path, raters: int, votes: int, overlap: int) -> dict:
    from annotate_ui.logic import audit
    from curator.audio import AudioStore
    from db.session import open_store, upgrade
    from builders.ui import make_pool, make_users, mark_played

    upgrade(url)
    factory = open_store(url)
    with factory() as s:
        pairs = make_pool(s, AudioStore(tmp / "audio"), max(2 * -(-raters * votes // overlap), votes + 10), write_audio=False,
                          seed=int(time.time()) % 1000 + 1)
        users = make_users(s, n_raters=raters, admins=0, prefix=f"l{int(time.time())}r")
        audit.enqueue(s, pairs, reason="random", added_by="bench", overlap=overlap)
        s.commit()
    lat, lock = [], threading.Lock()

    def rater(u):
        mine = []
        for _ in range(votes):
            t = time.perf_counter()
            with factory() as s:
                task = audit.next_assignment(s, u)
                s.commit()
                mark_played(s, u.id, task.assignment_id)
                audit.vote(s, u, task.assignment_id, "A")
                s.commit()
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=rater, args=(u,)) for u in users]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"store": url.split(":")[0], "raters": raters, "votes_each": votes, "wall_s": round(time.perf_counter() - t0, 1),
            "next+vote_ms_p50": round(percentile(lat, 50), 1), "next+vote_ms_p95": round(percentile(lat, 95), 1)}


def bench_view(n: int, repeats: int = 20) -> dict:
    from annotate_ui.logic import audit, tuning
    from curator.filter import PairTable, Thresholds

    rng = np.random.default_rng(0)
    w = np.column_stack([rng.normal(0.55, 0.12, n), rng.normal(0.7, 0.12, n)])
    table = PairTable(model_names=("m1", "m2"), model_ids=(1, 2), pair_id=np.arange(1, n + 1),
                      strategy=rng.integers(0, 4, n).astype(np.int8), caption_id=np.arange(n),
                      winner_clip_id=np.arange(n), loser_clip_id=np.arange(n) + n,
                      winner=w, loser=w - rng.uniform(-0.05, 0.45, (n, 2)))
    data = tuning.TuningData.of(table)
    nv = 5000
    votes = audit.VoteArrays(pair_id=rng.integers(1, n + 1, nv), agree=rng.random(nv) < 0.8)
    times = []
    for i in range(repeats + 2):
        th = Thresholds(alpha1=0.40 + 0.005 * (i % 10), beta1=0.35)
        t = time.perf_counter()
        v = tuning.view(data, th, votes)
        v.counts_frame()
        for k in ("alpha1", "alpha2", "delta1", "delta2"):
            v.histogram_frame(k)
        if i >= 2:  # the first calls fill the bin cache (once per loaded table)
            times.append(time.perf_counter() - t)
    return {"pairs": n, "refresh_ms_p50": round(percentile(times, 50), 1), "refresh_ms_p95": round(percentile(times, 95), 1),
            "kept": v.counts["total"]}


def bench_login_flood(db_url: str | None, votes: int, flooders: int) -> dict:
    """One rater votes VOTES times with nobody else on the server, then VOTES times while FLOODERS
    anonymous clients POST wrong passwords to /login as fast as they can (each its own connection,
    cycling user names, all from 127.0.0.1 as one attacking host would); once with the default
    lockout, once with the lockout effectively off (every flood request then checks an argon2 hash,
    on the login thread). Reported per phase: the rater's next-pair (vote round trip) and
    audio latencies, the p95 ratios to the quiet phase, and what the flood got back (400: a password
    was checked; 429: refused by the lockout, nothing checked)."""
    out = {"votes_each_phase": votes, "flooders": flooders}
    for label, extra in (("lockout", ()), ("no_lockout", ("--login-max-failures", "1000000000"))):
        tmp = Path(tempfile.mkdtemp(prefix="bench_ui_flood_"))
        with fresh_store(db_url, tmp) as url:
            res = _bench_login_flood(url, tmp, votes, flooders, extra)
        out["store"] = url.split(":")[0]
        out.update({f"{k}_{label}" if k.endswith("flood") or k == "flood_responses" else k: v for k, v in res.items()
                    if label == "lockout" or not k.endswith("quiet")})
        out[f"p95_ratio_{label}"] = round(res["next_pair_ms_p95_flood"] / out["next_pair_ms_p95_quiet"], 2)
    return out


def _bench_login_flood(url: str, tmp: Path, votes: int, flooders: int, extra: tuple[str, ...]) -> dict:
    import httpx

    from annotate_ui.logic import audit
    from annotate_ui.web.context import make_context
    from curator.audio import AudioStore
    from db.session import upgrade
    from builders.ports import free_port
    from builders.ui import PASSWORD, make_pool, make_users

    upgrade(url)
    store = AudioStore(tmp / "audio")
    ctx = make_context(url, store)
    with ctx.session() as s:
        pairs = make_pool(s, store, 2 * votes + 10, seed=3)
        make_users(s, n_raters=1, admins=1, prefix="flood")
        audit.enqueue(s, pairs, reason="random", added_by="bench", overlap=1)
    port = free_port()
    server = _serve(url, store.root, port, 4, tmp / "annotate-ui.log", *extra)
    base = f"http://127.0.0.1:{port}/"
    stop = threading.Event()
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def flood(k: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as h:
            i = 0
            while not stop.is_set():
                name = ("admin0", "flood0", f"user{k}_{i % 50}")[i % 3]
                try:
                    code = h.post("/login", data={"username": name, "password": f"wrong-{i}"}).status_code
                except httpx.HTTPError:
                    code = -1
                with lock:
                    statuses[code] = statuses.get(code, 0) + 1
                i += 1

    def phase(c: RawClient, out, n: int):
        lv, la = [], []
        for k in range(n):
            t = time.perf_counter()
            out = c.run(("vote_A", "vote_B")[k % 2], out[0], "")
            lv.append(time.perf_counter() - t)
            t = time.perf_counter()
            for src in AUDIO_SRC.findall(out[2] or ""):
                c.h.get("/" + src).raise_for_status()
            la.append(time.perf_counter() - t)
            time.sleep(0.02)  # a little spacing, so the flood phase lasts several lockout answers
        return out, lv, la

    try:
        c = RawClient(base, "flood0", PASSWORD)
        out = c.run("next")
        out, quiet_v, quiet_a = phase(c, out, votes)
        threads = [threading.Thread(target=flood, args=(k,), daemon=True) for k in range(flooders)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # the flood is under way before the rater's first measured vote
        out, flood_v, flood_a = phase(c, out, votes)
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        server.terminate()
        server.wait(30)
    return {
        "next_pair_ms_p50_quiet": round(percentile(quiet_v, 50), 1),
        "next_pair_ms_p95_quiet": round(percentile(quiet_v, 95), 1),
        "next_pair_ms_p50_flood": round(percentile(flood_v, 50), 1),
        "next_pair_ms_p95_flood": round(percentile(flood_v, 95), 1),
        "audio_both_ms_p95_quiet": round(percentile(quiet_a, 95), 1),
        "audio_both_ms_p95_flood": round(percentile(flood_a, 95), 1),
        "flood_responses": {str(k): v for k, v in sorted(statuses.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, action="append", default=None, help="raters at once (repeatable; default 50)")
    ap.add_argument("--seconds", type=float, default=30.0, help="each load run stops after this (default 30)")
    ap.add_argument("--votes", type=int, default=400, help="at most this many votes per rater and run")
    ap.add_argument("--db", action="append", default=None, help="store URL(s); default a fresh SQLite file")
    ap.add_argument("--think-ms", type=float, action="append", default=None,
                    help="pause before each vote, uniform 0.5-1.5x this (repeatable; default 0: closed loop)")
    ap.add_argument("--tab", action="append", choices=("audit", "listen"), default=None,
                    help="the audit's next pair or the listening tab's next clip (repeatable; default both)")
    ap.add_argument("--workers", type=int, action="append", default=None,
                    help="server processes (repeatable, e.g. --workers 1 --workers 2; more than 1 on PostgreSQL only)")
    ap.add_argument("--no-media", action="store_true", help="leave the clips' audio and images out (the vote path alone)")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-logic", action="store_true")
    ap.add_argument("--skip-view", action="store_true")
    ap.add_argument("--login-flood", type=int, default=0, metavar="N",
                    help="only the login-flood benchmark: 1 rater's next-pair latency alone, then while N clients "
                         "flood /login with wrong passwords (--votes per phase)")
    args = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)
    if args.login_flood:
        for url in args.db or [None]:
            print(json.dumps({"bench": "login_flood", **bench_login_flood(url, args.votes, args.login_flood)}), flush=True)
        return
    if not args.skip_view:
        for n in (100_000, 1_000_000):
            print(json.dumps({"bench": "threshold_view", **bench_view(n)}), flush=True)
    if args.skip_http:
        return
    for url in args.db or [None]:
        is_pg = bool(url and url.startswith("postgres"))
        if not args.skip_logic:
            print(json.dumps({"bench": "logic_no_http", **bench_logic(url, 20, 50)}), flush=True)
        for tab in args.tab or ["audit", "listen"]:
            for workers in args.workers or [1]:
                if workers > 1 and not is_pg:
                    continue  # refused by annotate-ui: several processes need PostgreSQL
                for raters in args.raters or [50]:
                    for think in args.think_ms or [0.0]:
                        res = bench_http(url, raters, args.seconds, think_ms=think, tab=tab, workers=workers,
                                         media=not args.no_media, max_votes=args.votes)
                        print(json.dumps({"bench": f"http_next_{'pair' if tab == 'audit' else 'clip'}", **res}), flush=True)


if __name__ == "__main__":
    main()
