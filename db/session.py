"""Engines, sessions and migrations of the store.

SQLite by default (WAL, foreign keys on); PostgreSQL through psycopg 3 for teams.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from db.errors import CuratorError

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
        if db and db != ":memory:" and not db.startswith("file:"):
            _create_private(Path(db))
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_backend_name() == "postgresql":
        # The rater app serves ~40 threads. No ping per checkout (a round trip per request) and LIFO,
        # so the few connections in use stay warm and idle ones age out; a connection the server
        # dropped is replaced when it fails (pool_recycle bounds a connection's age).
        engine = create_engine(url, pool_size=32, max_overflow=8, pool_use_lifo=True, pool_recycle=1800,
                               connect_args={"connect_timeout": 5})
    else:
        raise CuratorError(f"store URL {safe_url(url)}: only sqlite and postgresql are supported")
    _ENGINES[url] = engine
    return engine


def _create_private(path: Path) -> None:
    """Create a new SQLite file readable by its owner only (0600): it holds the raters' password
    hashes. SQLite gives its -wal and -shm files the same mode. An existing file is left as it is."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise CuratorError(f"store {path} cannot be created: {exc.strerror or exc}") from None
    os.close(fd)


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


def known_revisions() -> list[str]:
    """This version's migration ids, oldest first."""
    from alembic.script import ScriptDirectory

    return [r.revision for r in reversed(list(ScriptDirectory.from_config(_alembic_config(DEFAULT_DB)).walk_revisions()))]


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    where = safe_url(str(engine.url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else "unknown error"
        if "not a database" in first or "malformed" in first:
            raise CuratorError(f"store {where} is not a database ({first})") from None
        raise CuratorError(f"cannot reach store {where}: {first}") from None


def _refuse_newer(engine: Engine, rev: str | None) -> None:
    """A store stamped by a newer version of the studio (a revision this one does not know)."""
    if rev is not None and rev not in known_revisions():
        raise CuratorError(f"store {safe_url(str(engine.url))} is at revision {rev}, newer than this version of the "
                           f"studio (its latest is {head_revision()}); use the newer version")


def _alembic(fn, *args) -> None:
    from alembic.util import CommandError

    try:
        fn(*args)
    except CommandError as exc:
        raise CuratorError(f"migration failed: {str(exc).strip().splitlines()[0]}") from None


def _migrate(url: str, direction: str, revision: str) -> str:
    """Run Alembic's DIRECTION ("upgrade" or "downgrade") on the store at URL to REVISION; returns
    the revision it is at afterwards."""
    from alembic import command  # Alembic loads only for a migration, not for every command using a store

    engine = make_engine(url)
    _refuse_newer(engine, current_revision(engine))  # fails clearly when unreachable
    _check_target(revision)
    cfg = _alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        _alembic(getattr(command, direction), cfg, revision)
    return current_revision(engine) or ""


def upgrade(url: str, revision: str = "head") -> str:
    """Migrate the store at URL to REVISION; returns the revision it is at afterwards."""
    return _migrate(url, "upgrade", revision)


def _check_target(revision: str) -> None:
    known = known_revisions()
    relative = re.fullmatch(r"(?:head|base)?[+-]\d+", revision or "") is not None  # e.g. -1, head-2
    if not relative and revision not in ("head", "base", *known):
        raise CuratorError(f"revision {revision[:40]!r} is unknown (known: base, {', '.join(known)}, head)")


def downgrade(url: str, revision: str) -> str:
    """Migrate the store at URL back to REVISION; returns the revision it is at afterwards."""
    return _migrate(url, "downgrade", revision)


def check_migrated(engine: Engine) -> None:
    """Refuse a store that is not at the latest migration, in one line."""
    rev = current_revision(engine)
    _refuse_newer(engine, rev)
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
