"""Engines, sessions and migrations of the store.

SQLite by default (WAL, foreign keys on); PostgreSQL through psycopg 3 for teams.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from curator.errors import CuratorError

DEFAULT_DB = "sqlite:///curator.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def normalize_url(url: str) -> str:
    """postgresql:// and postgres:// go through psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def safe_url(url: str) -> str:
    """The URL without its password, for messages and manifests."""
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True).replace("***", "")
    except ArgumentError:
        return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


_ENGINES: dict[str, Engine] = {}


def make_engine(url: str) -> Engine:
    """An engine for URL (cached per URL within the process)."""
    url = normalize_url(url)
    if url in _ENGINES:
        return _ENGINES[url]
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CuratorError(f"store URL {url!r} is not a database URL (e.g. sqlite:///curator.db)") from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not Path(db).parent.exists():
            raise CuratorError(f"store {safe_url(url)}: folder {Path(db).parent} does not exist")
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_backend_name() == "postgresql":
        engine = create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=30,  # the rater app serves ~40 threads
                               connect_args={"connect_timeout": 5})
    else:
        raise CuratorError(f"store URL {safe_url(url)}: only sqlite and postgresql are supported")
    _ENGINES[url] = engine
    return engine


def dispose_engines() -> None:
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(DEFAULT_DB)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise CuratorError(f"cannot reach store {safe_url(str(engine.url))}: {str(exc.orig).strip().splitlines()[0]}") from None


def upgrade(url: str, revision: str = "head") -> str:
    """Migrate the store at URL to REVISION; returns the revision it is at afterwards."""
    from alembic import command

    engine = make_engine(url)
    current_revision(engine)  # fails clearly when unreachable
    cfg = _alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(engine) or ""


def downgrade(url: str, revision: str) -> str:
    from alembic import command

    engine = make_engine(url)
    cfg = _alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    return current_revision(engine) or ""


def check_migrated(engine: Engine) -> None:
    """Refuse a store that is not at the latest migration, in one line."""
    rev = current_revision(engine)
    if rev != head_revision():
        where = safe_url(str(engine.url))
        state = "is not migrated" if rev is None else f"is at revision {rev}, not the latest"
        raise CuratorError(f"store {where} {state}: run `curator db upgrade --db {where}`")


def open_store(url: str) -> sessionmaker[Session]:
    """A session factory for a migrated store at URL (raises CuratorError otherwise)."""
    engine = make_engine(url)
    check_migrated(engine)
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session on a migrated store; commits on success, rolls back on error."""
    factory = open_store(url)
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


def env_db_url() -> str:
    return os.environ.get("CURATOR_DB", DEFAULT_DB)
