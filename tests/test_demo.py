"""`curator demo` end to end on a small N, on SQLite and PostgreSQL; counts stable for a seed."""

from __future__ import annotations

from typer.testing import CliRunner

from curator.cli import app
from curator.cli.demo import run_demo

N = 16
DURATION = 8.0  # shorter clips than the 10.24 s default keep the test quick


def test_demo_end_to_end_and_stable(empty_store_url, tmp_path):
    res = CliRunner().invoke(app, ["demo", "--db", empty_store_url, "--captions", str(N), "--seed", "3",
                                   "--duration", str(DURATION), "--audio-root", str(tmp_path / "audio")])
    assert res.exit_code == 0, res.output
    assert "annotate-ui --db" in res.output and "curator stats" in res.output and "curator export" in res.output
    first = run_demo(empty_store_url, captions=N, seed=3, duration_s=DURATION, audio_root=str(tmp_path / "audio"),
                     echo=lambda s: None, progress=False).counts  # a rerun adds nothing
    assert first["captions"] == N and first["clips"] > 0 and first["pairs"] > 0
    assert 0 < first["scores"] <= 2 * first["clips"] and first["scores"] % 2 == 0  # cached per (clip sha, text)
    assert sum(v for k, v in first.items() if k.startswith("kept_")) > 0
    assert first["audit_items"] > 0 and first["listening_items"] > 0
    again = run_demo(f"sqlite:///{tmp_path / 'other.db'}", captions=N, seed=3, duration_s=DURATION,
                     audio_root=str(tmp_path / "audio2"), echo=lambda s: None, progress=False).counts
    assert again == first  # same seed, fresh store: same counts


def test_demo_refuses_tiny_n(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--db", f"sqlite:///{tmp_path / 'd.db'}", "--captions", "1"])
    assert res.exit_code == 2 and "at least 2 captions" in res.output


def test_demo_accounts_are_created_once_and_log_in(sqlite_store_url):
    from annotate_ui.logic.auth import verify_login
    from curator.cli.demo import ensure_demo_accounts
    from db.session import session_scope

    with session_scope(sqlite_store_url) as s:
        created = ensure_demo_accounts(s)
    assert set(created) == {"admin", "rater"}
    with session_scope(sqlite_store_url) as s:
        assert verify_login(s, "admin", created["admin"]).role == "admin"
        assert verify_login(s, "rater", created["rater"]).role == "rater"
        assert verify_login(s, "rater", created["admin"]) is None
        assert ensure_demo_accounts(s) == {}  # a store with users is left alone


def test_demo_has_work_for_a_new_rater(sqlite_store_url, tmp_path):
    """A new demo store: the audit queue holds uncertain pairs for 3 raters each, and an open listening
    session compares the world generator at 5 and 100 steps; `rater` gets a pair and a clip at once."""
    from sqlalchemy import select

    from annotate_ui.logic import audit
    from annotate_ui.logic.listening import design, queue
    from annotate_ui.logic.auth import active_user
    from curator.cli.demo import DEMO_OVERLAP, DEMO_SESSION, ensure_demo_accounts
    from db.annotation import AuditItem
    from db.models import AudioClip
    from db.session import session_scope

    run_demo(sqlite_store_url, captions=N, seed=3, duration_s=DURATION, audio_root=str(tmp_path / "audio"),
             echo=lambda s: None, progress=False)
    with session_scope(sqlite_store_url) as s:
        ensure_demo_accounts(s)
    with session_scope(sqlite_store_url) as s:
        items = list(s.scalars(select(AuditItem)))
        assert items and {it.overlap for it in items} == {DEMO_OVERLAP} and {it.reason for it in items} == {"uncertain"}
        (ls,) = [x for x in design.list_sessions(s, open_only=True)]
        assert ls["name"] == DEMO_SESSION
        session = design.get_session(s, DEMO_SESSION)
        steps = {s.get(AudioClip, it.clip_id).steps for it in session.items}
        assert steps == {5, 100} and len(session.systems) == 2
        rater = active_user(s, "rater")
        task = audit.next_assignment(s, rater)
        assert task is not None and task.caption
        assert queue.next_item(s, session.id, rater.id) is not None
