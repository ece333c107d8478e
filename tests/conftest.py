"""Fixtures: a migrated store on SQLite and on the PostgreSQL server, an audio store.

The `store_url` fixture is parametrized over both back ends. PostgreSQL tests create a fresh
database each and drop it afterwards; they skip (with the reason) only where no server answers
at 127.0.0.1:5432, and fail instead when CURATOR_REQUIRE_POSTGRES=1 (as in CI).
"""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PG_ADMIN_URL = os.environ.get("CURATOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    """None when the server answers, else the reason."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL.replace("postgresql://", "postgresql://", 1), connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means no server for these tests
        return f"no PostgreSQL server answers at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"


@pytest.fixture(scope="session")
def pg_reason() -> str | None:
    reason = _pg_available()
    if reason and os.environ.get("CURATOR_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"CURATOR_REQUIRE_POSTGRES=1 but {reason}")
    return reason


def make_pg_database(pg_reason: str | None) -> tuple[str, callable]:
    """A fresh empty database on the server: (url, drop)."""
    if pg_reason:
        pytest.skip(pg_reason)
    import psycopg

    name = f"curator_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"

    def drop() -> None:
        from db.session import dispose_engines

        dispose_engines()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_store_url(request, tmp_path, pg_reason):
    """An empty (un-migrated) store URL on each back end."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        from db.session import dispose_engines

        dispose_engines()
    else:
        url, drop = make_pg_database(pg_reason)
        yield url
        drop()


@pytest.fixture
def store_url(empty_store_url):
    """A migrated store URL on each back end."""
    from db.session import upgrade

    upgrade(empty_store_url)
    return empty_store_url


@pytest.fixture
def sqlite_store_url(tmp_path):
    """A migrated SQLite store only (for tests whose logic does not depend on the back end)."""
    from db.session import dispose_engines, upgrade

    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    yield url
    dispose_engines()


@pytest.fixture
def session(store_url):
    from db.session import open_store

    factory = open_store(store_url)
    with factory() as s:
        yield s


@pytest.fixture
def audio_store(tmp_path):
    from curator.audio import AudioStore

    return AudioStore(tmp_path / "audio")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread (and do not fight other tests for the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def browser():
    """Debian's Chromium, headless, through Playwright (imported here: only browser tests need it)."""
    from playwright.sync_api import sync_playwright

    from builders.browser import ARGS, CHROMIUM

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()
