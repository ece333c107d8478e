"""`UIContext`: what every handler of the rater app needs (the store, the audio store, the login
state, who is asking), and `make_context` to build one on a store. The tabs' contract with it is
described at the top of annotate_ui/web/app.py."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import gradio as gr
from sqlalchemy.orm import Session, sessionmaker

from annotate_ui.logic import audit, playback, tuning
from annotate_ui.logic.auth import AuthUser, active_user, verify_login
from annotate_ui.logic.logins import DEFAULT_SESSION_IDLE_S, LoginLimiter, LoginSessions, cookie_id
from annotate_ui.logic.media import MEDIA_ROUTE, CopyCache
from annotate_ui.logic.predraw import Predrawer
from curator.audio import AudioStore
from db.errors import CuratorError
from db.session import open_store

log = logging.getLogger(__name__)


@dataclass
class UIContext:
    """What every handler needs: the store, the audio store, and who is asking."""

    db_url: str
    session_factory: sessionmaker
    audio_store: AudioStore
    on_load: list = field(default_factory=list)
    lease_s: float = audit.DEFAULT_LEASE_S  # an open assignment goes back to the queue after this
    session_idle_s: float = DEFAULT_SESSION_IDLE_S  # a login unused this long is logged out
    max_body_bytes: int = 1 << 20  # request bodies over this are refused unread (a note is ≤ 2000 characters)
    # a vote or rating needs this share of each of its clips sent by the media route (1.0: to the end)
    min_played_share: float = playback.DEFAULT_MIN_PLAYED_SHARE
    copies: CopyCache = field(default_factory=CopyCache, repr=False)
    limiter: LoginLimiter = field(default_factory=LoginLimiter, repr=False)
    locked_delay_s: float = 1.0  # a refused (locked-out) login is answered after this pause
    sessions: LoginSessions | None = field(default=None, repr=False)
    predrawer: Predrawer | None = field(default=None, repr=False)  # draws spectrograms ahead (annotate_ui/predraw.py)
    # argon2 checks run here, one at a time: never on the event loop that serves the raters, and a flood
    # of logins queues here instead of taking every core (a check is ~0.1 s; people log in rarely)
    login_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="login"), repr=False)
    _tuning: dict = field(default_factory=dict, repr=False)  # (model1, model2) → TuningData (store data, not user state)
    _tuning_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _write_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _leases_checked: float = field(default=float("-inf"), repr=False)

    def __post_init__(self) -> None:
        if self.sessions is None:
            self.sessions = LoginSessions(self.session_idle_s)
        # logins and lockouts live in the store, so every server process of it shares them
        self.sessions.bind(self.session_factory)
        self.limiter.bind(self.session_factory)
        if not self.lease_s > 0:
            raise CuratorError(f"assignment lease {self.lease_s!r} s must be positive")
        self.min_played_share = playback.check_share(self.min_played_share)

    def media_url(self, session: Session, user: AuthUser, kind: str, ref: tuple, what: str = "audio") -> str:
        """A fresh opaque URL for one clip (WHAT "audio") or its spectrogram image (WHAT
        "spectrogram") shown to USER, its grant written with SESSION (see annotate_ui/logic/media.py)."""
        return f"{MEDIA_ROUTE}/{playback.issue_grant(session, user.id, kind, ref, what)}"

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold around the audit's write transactions. On SQLite it queues this process's writers on a
        lock, which wakes the next one as soon as the store is free; without it, 20 raters' threads
        meet on SQLite's own lock, whose busy handler sleeps up to 100 ms between tries (the
        seconds-long tail of the load benchmark). Other processes still wait on busy_timeout.
        PostgreSQL locks rows, so nothing is held there."""
        if self.session_factory.kw["bind"].dialect.name != "sqlite":
            yield
            return
        with self._write_lock:
            yield

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.session_factory() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except CuratorError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def user(self, request: gr.Request | None) -> AuthUser:
        """The active account behind REQUEST (Gradio's login), else gr.Error."""
        name = getattr(request, "username", None) if request is not None else None
        with self.session() as s:
            user = active_user(s, name)
        if user is None:
            raise gr.Error("you are not logged in, or your account is disabled; log in again", print_exception=False)
        return user

    def admin(self, request: gr.Request | None) -> AuthUser:
        user = self.user(request)
        if not user.is_admin:
            log.warning("user %s (role %s) was refused an admin action", user.name, user.role)
            raise gr.Error("this action is for admins only", print_exception=False)
        return user

    def login(self, username: str, password: str) -> AuthUser | None:
        """The store's argon2 hashes decide (the password is never logged); the account, or None.
        Also Gradio's `auth=` callable (a truthy answer lets the login in)."""
        with self.session() as s:
            user = verify_login(s, username, password)
        log.info("login %s for user %r", "succeeded" if user else "refused",
                 username[:100] if isinstance(username, str) else "?")
        return user

    def lease_due(self) -> float | None:
        """`lease_s` when open assignments should be checked for expired leases now, else None. The
        check is a query on every next pair; a lease lasts minutes, so this process checks every
        tenth of a lease (at most every 10 s), and an abandoned pair is back a little later at worst."""
        now = time.monotonic()
        with self._tuning_lock:
            if now - self._leases_checked < min(10.0, self.lease_s / 10):
                return None
            self._leases_checked = now
        return self.lease_s

    def queue_changed(self) -> None:
        """New clips may be shown to raters: draw their spectrograms ahead (when a predrawer runs)."""
        if self.predrawer is not None:
            self.predrawer.kick()

    @property
    def cookie_id(self) -> str:
        """The login cookie's name suffix, the same in every process of this store."""
        return cookie_id(self.db_url)

    def request_user(self, request, activity: bool = True, fresh: bool = True) -> AuthUser | None:
        """The active account logged in on REQUEST's cookie (a Starlette request), else None; FRESH:
        read from the store, not the process's cache (see annotate_ui/logins.py)."""
        cookies = request.cookies
        token = cookies.get(f"access-token-{self.cookie_id}") or cookies.get(f"access-token-unsecure-{self.cookie_id}")
        return self.sessions.user(token, activity=activity, fresh=fresh)

    def tuning_data(self, session: Session, models: tuple[str | None, str | None], *, reload: bool = False) -> tuning.TuningData:
        with self._tuning_lock:
            if reload or models not in self._tuning:
                self._tuning[models] = tuning.TuningData.load(session, models)
            return self._tuning[models]


def make_context(db_url: str, audio_store: AudioStore, **settings) -> UIContext:
    """SETTINGS: lease_s, session_idle_s, max_body_bytes, limiter, locked_delay_s, sessions,
    min_played_share (UIContext fields)."""
    return UIContext(db_url=db_url, session_factory=open_store(db_url), audio_store=audio_store, **settings)


__all__ = ["UIContext", "make_context"]
