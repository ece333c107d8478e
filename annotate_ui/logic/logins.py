"""Logins and login lockouts of the rater app, kept in the store (db/logins.py).

Every server process of one store (`annotate-ui --workers N`, or several `annotate-ui` behind a
load balancer) reads the same rows, so a login made on one process is valid on all of them, a
logout or an idle expiry ends it everywhere, and a lockout started by failures on one process
refuses the next attempt on every other.

Times are the server clock in seconds (`time.time` by default; tests pass a fake clock).

* `LoginSessions`: a random cookie token per login (`secrets.token_urlsafe`, 128 bits); the store
  keeps only its SHA-256. A lookup is cached in the process for `cache_s` seconds (default 2 s)
  and the last use is written at most every `touch_s` seconds (a twentieth of the idle timeout,
  at most 60 s). The cache answers the app's guard (idle expiry, the anonymous page, Gradio's
  own routes); a request that reads or writes rater data (a vote, a clip) asks the store
  (`fresh=True`, one query), so a logout or a disabled account is refused at once everywhere.
* `LoginLimiter`: failed logins counted per account name and per client address; MAX_FAILURES
  failures of either lock it for LOCKOUT_S, doubling with every further lockout, until a success.
* `TokenMap`: Gradio's `app.tokens` (token → user name) over `LoginSessions`, so Gradio's own
  routes (`/config`, `/user`, its queue) resolve the same logins.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from annotate_ui.logic.auth import AuthUser
from db.errors import CuratorError
from db.annotation import User
from db.logins import LoginSession, LoginStrike

log = logging.getLogger(__name__)

MAX_FAILURES = 5  # failed logins of one account, or from one client, before a lockout
LOCKOUT_S = 60.0  # the first lockout; each further one doubles, up to MAX_LOCKOUT_S
MAX_LOCKOUT_S = 24 * 3600.0
FAILURE_WINDOW_S = 15 * 60.0  # failures older than this (with no lockout since) are forgotten
DEFAULT_SESSION_IDLE_S = 60 * 60.0  # a login unused this long is logged out
CACHE_S = 2.0  # a login looked up in the store is trusted in this process for this long
MISS = object()  # LoginSessions.cached: the store must be asked


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def cookie_id(db_url: str) -> str:
    """The suffix of the login cookie's name: the same in every process of one store (Gradio's own
    is random per process), different between two stores served from one host."""
    from db.session import safe_url

    return hashlib.sha256(safe_url(db_url).encode("utf-8")).hexdigest()[:32]


class _Bound:
    """Holds the store's session factory (bound by the app context once the store is open)."""

    factory: sessionmaker | None = None

    def bind(self, factory: sessionmaker) -> None:
        self.factory = factory

    def _session(self) -> Session:
        if self.factory is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a store")
        return self.factory()


@dataclass
class _Cached:
    user: AuthUser
    last_seen: float  # as last read from or written to the store
    checked: float  # when the store was last read


class LoginSessions(_Bound):
    """Logged-in browsers, by cookie token (see the module docstring)."""

    def __init__(self, idle_s: float = DEFAULT_SESSION_IDLE_S, clock=time.time, cache_s: float = CACHE_S):
        if not idle_s > 0:
            raise CuratorError(f"session idle timeout {idle_s!r} s must be positive")
        self.idle_s, self.clock, self.cache_s = float(idle_s), clock, float(cache_s)
        self.touch_s = min(60.0, self.idle_s / 20)
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def create(self, user_id: int) -> str:
        """A new login of USER_ID; returns its cookie token (the store keeps its hash only)."""
        token = secrets.token_urlsafe(16)
        with self._session() as s:
            s.add(LoginSession(token_hash=token_hash(token), user_id=int(user_id), last_seen=self.clock()))
            s.commit()
        return token

    def user(self, token: str | None, activity: bool = True, fresh: bool = False) -> AuthUser | None:
        """The active account logged in under TOKEN, else None (unknown, ended, idle too long, or
        the account is disabled). ACTIVITY: this request counts as a use (a heartbeat does not).
        FRESH: ask the store (one query), not the cache: what a request that reads or writes
        rater data does, so a logout or a disabled account is refused at once in every process."""
        if not token or len(token) > 100:
            return None
        now = self.clock()
        with self._lock:
            hit = self._cache.get(token)
        if (not fresh and hit is not None and now - hit.checked <= self.cache_s
                and now - hit.last_seen <= self.idle_s):
            if activity and now - hit.last_seen > self.touch_s:
                self._touch(token, now)
                hit.last_seen = now
            return hit.user
        with self._session() as s:
            row = s.execute(select(LoginSession.last_seen, User.id, User.name, User.role, User.active)
                            .join(User, User.id == LoginSession.user_id)
                            .where(LoginSession.token_hash == token_hash(token))).first()
            if row is None or not row.active:
                self._forget(token)
                return None
            if now - row.last_seen > self.idle_s:
                s.execute(delete(LoginSession).where(LoginSession.token_hash == token_hash(token)))
                s.commit()
                self._forget(token)
                log.info("session of %r expired after %.0f s idle", row.name, self.idle_s)
                return None
            last_seen = row.last_seen
            if activity and now - last_seen > self.touch_s:
                s.execute(update(LoginSession).where(LoginSession.token_hash == token_hash(token))
                          .values(last_seen=now).execution_options(synchronize_session=False))
                s.commit()
                last_seen = now
        user = AuthUser(row.id, row.name, row.role)
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[token] = _Cached(user, last_seen, now)
        return user

    def cached(self, token: str | None, activity: bool = True):
        """What `user` would answer when the process's cache can answer without the store (no read,
        no write due); MISS otherwise. Lets the event loop answer most requests without a thread."""
        if not token:
            return None
        now = self.clock()
        with self._lock:
            hit = self._cache.get(token)
        if (hit is None or now - hit.checked > self.cache_s or now - hit.last_seen > self.idle_s
                or (activity and now - hit.last_seen > self.touch_s)):
            return MISS
        return hit.user

    def _touch(self, token: str, now: float) -> None:
        with self._session() as s:
            s.execute(update(LoginSession).where(LoginSession.token_hash == token_hash(token))
                      .values(last_seen=now).execution_options(synchronize_session=False))
            s.commit()

    def _forget(self, token: str) -> None:
        with self._lock:
            self._cache.pop(token, None)

    def end(self, token: str) -> None:
        """Log TOKEN out (in every process: the row is gone)."""
        with self._session() as s:
            s.execute(delete(LoginSession).where(LoginSession.token_hash == token_hash(token)))
            s.commit()
        self._forget(token)

    def end_user(self, user_id: int) -> int:
        """Log every browser of USER_ID out; returns how many logins ended."""
        with self._session() as s:
            n = s.execute(delete(LoginSession).where(LoginSession.user_id == int(user_id))).rowcount or 0
            s.commit()
        with self._lock:
            for token in [t for t, c in self._cache.items() if c.user.id == int(user_id)]:
                del self._cache[token]
        return int(n)


class TokenMap(MutableMapping):
    """Gradio's `app.tokens` (cookie token → user name) read from LoginSessions. Gradio only reads
    it (`get`, `in`) and deletes from it on logout; logins are created by the app's /login route."""

    def __init__(self, sessions: LoginSessions):
        self.sessions = sessions

    def __getitem__(self, token):
        user = self.sessions.user(token, activity=False) if isinstance(token, str) else None
        if user is None:
            raise KeyError(token)
        return user.name

    def __contains__(self, token) -> bool:
        return isinstance(token, str) and self.sessions.user(token, activity=False) is not None

    def __setitem__(self, token, name):
        raise TypeError("logins are created by the app's /login route (annotate_ui.logins.LoginSessions.create)")

    def __delitem__(self, token):
        self.sessions.end(token)

    def __iter__(self):
        return iter(())  # the store keeps hashes only: no token can be listed

    def __len__(self) -> int:
        return 0


class LoginLimiter(_Bound):
    """Failed logins per account name and per client address, in the store (see the module
    docstring). While locked, every attempt is refused at once (no password is checked, so a flood
    costs nothing), even with the right password. Each lockout is logged (the name, never a password)."""

    def __init__(self, max_failures: int = MAX_FAILURES, lockout_s: float = LOCKOUT_S,
                 max_lockout_s: float = MAX_LOCKOUT_S, clock=time.time):
        if max_failures < 1 or lockout_s <= 0:
            raise CuratorError(f"login limit of {max_failures} failures / {lockout_s} s is not positive")
        self.max_failures, self.lockout_s, self.max_lockout_s = max_failures, lockout_s, max_lockout_s
        self.clock = clock

    @staticmethod
    def _keys(account: str, client: str | None) -> list[tuple[str, str]]:
        keys = [("account", str(account).strip().lower()[:100])]
        if client:
            keys.append(("client", str(client)[:100]))
        return keys

    def locked_for(self, account: str, client: str | None, *, account_too: bool = True) -> float:
        """Seconds until ACCOUNT (and CLIENT) may try again; 0 when free. account_too=False: the
        client only (what is known before a request's body is read)."""
        now = self.clock()
        keys = self._keys(account, client)[0 if account_too else 1:]
        if not keys:
            return 0.0
        with self._session() as s:
            untils = s.scalars(select(LoginStrike.until).where(
                or_(*(and_(LoginStrike.kind == k, LoginStrike.key == v) for k, v in keys)))).all()
        return max([0.0, *(u - now for u in untils)])

    def failed(self, account: str, client: str | None) -> float:
        """Record one failure; returns the lockout it started (seconds), 0 when none."""
        now = self.clock()
        started = 0.0
        with self._session() as s:
            dialect = s.get_bind().dialect.name
            ins = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
            s.execute(delete(LoginStrike).where(LoginStrike.until <= now, LoginStrike.last < now - FAILURE_WINDOW_S,
                                                LoginStrike.lockouts == 0))
            for kind, key in self._keys(account, client):
                s.execute(ins(LoginStrike.__table__).values(kind=kind, key=key, failures=0, lockouts=0, until=0.0,
                                                            last=now).on_conflict_do_nothing())
                st = s.scalars(select(LoginStrike).where(LoginStrike.kind == kind, LoginStrike.key == key)
                               .with_for_update()).one()  # FOR UPDATE: PostgreSQL serialises two processes' counts
                if st.until <= now and now - st.last > FAILURE_WINDOW_S and st.lockouts == 0:
                    st.failures = 0
                st.failures += 1
                st.last = now
                if st.failures >= self.max_failures:
                    length = min(self.max_lockout_s, self.lockout_s * 2 ** st.lockouts)
                    st.until, st.failures, st.lockouts = now + length, 0, st.lockouts + 1
                    started = max(started, length)
                    log.warning("login locked for %.0f s: %d failed logins of %s %r", length, self.max_failures,
                                kind, key)
            s.commit()
        return started

    def succeeded(self, account: str, client: str | None) -> None:
        with self._session() as s:
            for kind, key in self._keys(account, client):
                s.execute(delete(LoginStrike).where(LoginStrike.kind == kind, LoginStrike.key == key))
            s.commit()


__all__ = ["LoginSessions", "LoginLimiter", "TokenMap", "cookie_id", "token_hash", "DEFAULT_SESSION_IDLE_S",
           "MAX_FAILURES", "LOCKOUT_S"]
