"""Perturbations through the real `openai` client against a loopback OpenAI-compatible server.

The server is tests/builders/llm_server.py (http.server in a thread on 127.0.0.1).
"""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from builders.llm_server import FakeLLM

from curator.cli import app
from db.errors import CuratorError
from curator.perturb.llm import LLMConfig, LLMFatalError, OpenAIPerturber
from curator.perturb.parse import build_prompt, compare_key, load_template, parse_perturbations
from curator.perturb.run import run_perturbations
from db.models import Caption, Perturbation, PerturbationRequest, text_hash

runner = CliRunner()


# --- parsing ----------------------------------------------------------------------------------

def test_parse_numbered_and_bulleted_lines():
    raw = ('Here are five perturbed captions:\n1. "A cat meows in a park"\n2) A dog barks in a park\n'
           "- a  dog BARKS in a park!\n* A horse neighs indoors\n• **A bell rings at night**\n"
           "3. A dog barks in the rain\n4.\n")
    out = parse_perturbations(raw, "A dog barks in a park")
    # the original (any case/punctuation) and repeats are dropped, markers/quotes/emphasis stripped
    assert out == ["A cat meows in a park", "A horse neighs indoors", "A bell rings at night", "A dog barks in the rain"]


def test_parse_plain_lines_only_when_exactly_five():
    five = "a\nb\nc\nd\ne"
    assert parse_perturbations(five, "x") == ["a", "b", "c", "d", "e"]
    assert parse_perturbations("I'm sorry, I can't help with that.", "x") == []
    assert parse_perturbations("", "x") == [] and parse_perturbations(None, "x") == []
    assert compare_key("A Dog, barks!") == compare_key("a dog barks")


def test_templates_state_the_papers_requirements():
    s2, s3 = load_template("2"), load_template("3")
    for t in (s2, s3):
        assert "{caption}" in t and "five" in t and "similar length" in t and "one caption per line" in t
        assert "keeps some of its concepts" in t and "wrong about the audio" in t
    assert "different order" in s3 and "add one event" in s3 and "remove one event" in s3
    assert build_prompt(" A dog barks ", "2").rstrip().endswith("Caption: A dog barks")
    with pytest.raises(CuratorError, match="unknown perturbation strategy '4'"):
        load_template("4")


# --- the loopback server ----------------------------------------------------------------------

@pytest.fixture
def llm():
    with FakeLLM() as fake:
        yield fake


def _perturber(url, **kw) -> OpenAIPerturber:
    cfg = dict(model="fake-gpt", base_url=url, api_key="", timeout=0.5, max_retries=3, backoff=0.01, max_backoff=0.05)
    cfg.update(kw)
    return OpenAIPerturber(LLMConfig(**cfg))


def _captions(session, texts, temporal=False):
    caps = [Caption(text=t, text_sha=text_hash(t), temporal=temporal) for t in texts]
    session.add_all(caps)
    session.commit()
    return caps


# --- the runner against the server ------------------------------------------------------------

def test_retries_raw_storage_malformed_and_rerun(session, llm):
    texts = ["A dog barks", "RATE a cat meows", "BOOM a car passes", "SLOW rain falls",
             "MALFORMED a bell rings", "NOTJSON wind blows"]
    caps = _captions(session, texts)
    p = _perturber(llm.url)
    assert p.notes and "placeholder" in p.notes[0]
    counts = run_perturbations(session, p, "2", captions=caps, concurrency=2, progress=False)
    assert (counts.asked, counts.failed, counts.malformed, counts.perturbations) == (6, 0, 2, 20)
    # server-side: one retry after the 429, two after the 500s, one after the timeout
    assert llm.counts == {"A dog barks": 1, "RATE a cat meows": 2, "BOOM a car passes": 3, "SLOW rain falls": 2,
                          "MALFORMED a bell rings": 1, "NOTJSON wind blows": 1}
    reqs = {r.caption_id: r for r in session.scalars(select(PerturbationRequest))}
    assert len(reqs) == 6
    assert reqs[caps[0].id].raw_response.startswith("1. A dog barks variant 1") and reqs[caps[0].id].n_parsed == 5
    assert reqs[caps[4].id].raw_response == "I am sorry, but I cannot rewrite this caption."
    assert reqs[caps[4].id].n_parsed == 0 and reqs[caps[5].id].raw_response.startswith("<html>")
    texts_of_0 = session.scalars(select(Perturbation.text).where(Perturbation.caption_id == caps[0].id)
                                 .order_by(Perturbation.position)).all()
    assert texts_of_0 == [f"A dog barks variant {i}" for i in range(1, 6)]
    assert all(r.strategy == "2" and r.model == "fake-gpt" for r in reqs.values())

    before = llm.total
    again = run_perturbations(session, p, "2", captions=caps, concurrency=2, progress=False)
    assert llm.total == before and (again.asked, again.skipped) == (0, 6)
    # another model or strategy is a different request
    other = run_perturbations(session, _perturber(llm.url, model="other-llm"), "3", captions=caps[:1], progress=False)
    assert other.asked == 1 and llm.total == before + 1


def test_retries_wait_for_retry_after_with_jitter(session, llm):
    """Eight threads hit a 429 asking for 2 s at once: each waits at least 2 s, and not in lockstep."""
    import random
    import threading

    waits, lock = [], threading.Lock()

    def sleep(s):
        with lock:
            waits.append(s)

    p = _perturber(llm.url, timeout=10, max_backoff=30.0)
    p.sleep, p.rng = sleep, random.Random(0)
    caps = _captions(session, [f"THROTTLE sound {i}" for i in range(8)])
    counts = run_perturbations(session, p, "2", captions=caps, concurrency=8, progress=False)
    assert counts.asked == 8 and all(llm.counts[c.text] == 2 for c in caps)
    assert len(waits) == 8 and all(2.0 <= w <= 3.0 for w in waits), waits  # Retry-After, then up to +50 %
    assert len({round(w, 3) for w in waits}) == 8  # spread out, not one instant
    # the cap still holds, and the exponential backoff grows per attempt
    q = _perturber(llm.url, backoff=1.0, max_backoff=4.0, jitter=0.0)
    assert [q.retry_wait(a) for a in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert q.retry_wait(0, hinted=3.0) == 3.0 and q.retry_wait(0, hinted=60.0) == 4.0


def test_retry_after_header_forms():
    import email.utils

    import httpx

    from curator.perturb.llm import _retry_after

    def exc(headers):
        return openai.RateLimitError("429", response=httpx.Response(429, headers=headers,
                                                                     request=httpx.Request("POST", "http://x")), body=None)

    assert _retry_after(exc({"Retry-After": "7"})) == 7.0
    assert _retry_after(exc({"retry-after-ms": "1500", "Retry-After": "7"})) == 1.5
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert _retry_after(exc({"Retry-After": date}), now=1_000_000.0) == pytest.approx(30.0)
    assert _retry_after(exc({"Retry-After": "soon"})) is None and _retry_after(exc({})) is None


def test_concurrency_limit(session):
    with FakeLLM(hold_for=3) as llm:
        caps = _captions(session, [f"sound number {i}" for i in range(12)])
        counts = run_perturbations(session, _perturber(llm.url, timeout=10), "2", captions=caps,
                                   concurrency=3, progress=False)
    assert counts.asked == 12 and llm.total == 12
    assert llm.max_in_flight == 3  # held until three were in flight, never a fourth


def test_exhausted_retries_store_nothing_and_are_asked_again(session, llm):
    caps = _captions(session, ["DOWN a siren wails", "A horn honks"])
    p = _perturber(llm.url, max_retries=2)
    counts = run_perturbations(session, p, "2", captions=caps, concurrency=1, progress=False)
    assert (counts.asked, counts.failed) == (1, 1) and "HTTP 503 after 3 attempts" in counts.failures[0]
    assert llm.counts["DOWN a siren wails"] == 3
    assert session.scalar(select(func.count()).select_from(PerturbationRequest)) == 1
    run_perturbations(session, p, "2", captions=caps, concurrency=1, progress=False)
    assert llm.counts["DOWN a siren wails"] == 6 and llm.counts["A horn honks"] == 1


def test_endpoint_down_stops_the_run(session, llm):
    caps = _captions(session, ["A horn honks"] + [f"DOWN siren {i}" for i in range(5)])
    with pytest.raises(CuratorError, match=r"2 requests in a row failed after every retry .*HTTP 503.* stopped after 1 answers"):
        run_perturbations(session, _perturber(llm.url, max_retries=1), "2", captions=caps, concurrency=1,
                          progress=False, max_consecutive_failures=2)
    assert llm.total == 1 + 2 * 2  # nothing asked after the second failure
    assert session.scalar(select(func.count()).select_from(PerturbationRequest)) == 1


def test_fatal_status_stops_the_run(session):
    class Refuse(FakeLLM):
        def answer(self, h, path, body, caption, n):
            self.send(h, 401, {"error": {"message": "invalid api key", "type": "auth"}})

    with Refuse() as llm:
        caps = _captions(session, ["A dog barks", "A cat meows"])
        with pytest.raises(LLMFatalError, match="answered HTTP 401 for model 'fake-gpt': invalid api key"):
            run_perturbations(session, _perturber(llm.url), "2", captions=caps, concurrency=1, progress=False)
    assert llm.total == 1  # not retried, not asked for the second caption
    assert session.scalar(select(func.count()).select_from(PerturbationRequest)) == 0


def test_bad_config_and_strategy(session, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(CuratorError, match="OPENAI_API_KEY is not set"):
        OpenAIPerturber(LLMConfig(model="gpt-4"))
    with pytest.raises(CuratorError, match="--timeout must be positive, got 0"):
        LLMConfig(model="m", timeout=0)
    with pytest.raises(CuratorError, match="--base-url 'localhost:8000' is not an http"):
        LLMConfig(model="m", base_url="localhost:8000")
    p = _perturber("http://127.0.0.1:9/v1")
    with pytest.raises(CuratorError, match="unknown perturbation strategy '1.1'"):
        run_perturbations(session, p, "1.1", captions=[])
    with pytest.raises(CuratorError, match="--concurrency must be at least 1"):
        run_perturbations(session, p, "2", captions=[], concurrency=0)


# --- the command ------------------------------------------------------------------------------

def test_cli_strategy3_runs_on_t2_and_strategy2_needs_a_selection(sqlite_store_url, tmp_path, llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    f = tmp_path / "c.txt"
    f.write_text("A dog barks then a cat meows\nRain falls on a roof\nA man speaks while a car passes\n")
    assert runner.invoke(app, ["captions", "import", str(f), "--db", sqlite_store_url]).exit_code == 0
    args = ["perturb", "--strategy", "3", "--model", "fake-gpt", "--base-url", llm.url, "--db", sqlite_store_url]
    res = runner.invoke(app, args + ["--limit", "1"])
    assert res.exit_code == 0, res.output
    assert "2 captions, 0 already asked, 1 answered (5 perturbations)" in res.output
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "2 captions, 1 already asked, 1 answered" in res.output
    assert llm.total == 2 and set(llm.counts) == {"A dog barks then a cat meows", "A man speaks while a car passes"}

    res = runner.invoke(app, ["perturb", "--strategy", "2", "--model", "fake-gpt", "--base-url", llm.url, "--db", sqlite_store_url])
    assert res.exit_code == 2 and "no caption selection yet" in res.output
    res = runner.invoke(app, ["perturb", "--strategy", "5", "--model", "m", "--db", sqlite_store_url])
    assert res.exit_code == 2 and "'5' is not one of '2', '3'" in res.output  # --help lists the choices
    res = runner.invoke(app, ["perturb", "--strategy", "3", "--db", sqlite_store_url])
    assert res.exit_code == 2 and "--model is required" in res.output
    res = runner.invoke(app, ["perturb", "--strategy", "3", "--backend", "gpt", "--model", "m", "--db", sqlite_store_url])
    assert res.exit_code == 2 and "unknown --backend 'gpt'" in res.output


def test_cli_world_backend(sqlite_store_url, tmp_path):
    from curator.world import random_captions

    f = tmp_path / "world.txt"
    f.write_text("\n".join(random_captions(8, seed=1)) + "\n")
    assert runner.invoke(app, ["captions", "import", str(f), "--db", sqlite_store_url]).exit_code == 0
    res = runner.invoke(app, ["perturb", "--strategy", "3", "--backend", "world", "--db", sqlite_store_url])
    assert res.exit_code == 0, res.output
    from db.session import open_store

    with open_store(sqlite_store_url)() as s:
        reqs = s.scalars(select(PerturbationRequest)).all()
        assert reqs and all(r.model == "world-rules" and r.n_parsed > 0 for r in reqs)
        assert s.scalar(select(func.count()).select_from(Perturbation)) == sum(r.n_parsed for r in reqs)
    res = runner.invoke(app, ["perturb", "--strategy", "3", "--backend", "world", "--db", sqlite_store_url])
    assert f"{len(reqs)} already asked, 0 answered" in res.output


def test_control_characters_in_an_answer_are_never_stored(session):
    """An answer with a NUL or an escape sequence: those lines are not captions (dropped), and the raw
    answer is stored with the NUL made visible, on both back ends (PostgreSQL text cannot hold NUL)."""
    from curator.perturb.run import PerturbCounts, _store

    raw = "1. A cat barks.\n2. A dog\x00 meows.\n3. A \x1b[31mcow\x1b[0m sings.\n4. A bird roars.\n5. A cow hums."
    assert parse_perturbations(raw, "A dog barks.") == ["A cat barks.", "A bird roars.", "A cow hums."]
    cap = Caption(text="A dog barks.", text_sha=text_hash("A dog barks."), source="t")
    session.add(cap)
    session.commit()
    _store(session, PerturbCounts("2", "m"), cap, "2", "m", raw, parse_perturbations(raw, cap.text))
    req = session.scalar(select(PerturbationRequest))
    assert "\x00" not in req.raw_response and "A dog\\x00 meows." in req.raw_response and req.n_parsed == 3
    assert [p.text for p in session.scalars(select(Perturbation).order_by(Perturbation.position))] == \
        ["A cat barks.", "A bird roars.", "A cow hums."]
