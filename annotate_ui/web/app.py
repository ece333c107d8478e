"""The Gradio rater app: builds components and wires events; the work is in audit.py/tuning.py.

What annotate_ui/web/listening_tab.py relies on from this module:

    def build_listening_tab(ctx: UIContext) -> None
        Called inside `with gr.Tab("Listening sessions"):` of this app's gr.Blocks; builds that
        tab's components and wires its events. Every handler it wires takes a `request: gr.Request`
        parameter and starts with `user = ctx.user(request)` (any active account) or
        `user = ctx.admin(request)` (admins only); both raise gr.Error for anyone else, so the
        role check happens on the server whatever the browser sends. Votes/ratings are stamped
        with `user.id` (an `annotate_ui.logic.auth.AuthUser`: id, name, role, is_admin), never with a
        name from the browser.
        `with ctx.session() as s:` is a Session on the store that commits on success and rolls
        back on error; `ctx.session_factory` is the raw sessionmaker, `ctx.db_url` the store URL.
        `ctx.audio_store` is the curator.audio.AudioStore. Audio goes to a rater only as
        `ctx.media_url(session, user, kind, ref)` (an opaque token kept in the store; the media
        route sends a per-token copy and records the bytes it sent: the playback check),
        never a path from the browser nor a file Gradio caches under its hash. `ctx.errors()` is a context manager turning CuratorError into gr.Error.
        `ctx.on_load` is a list: append `(fn, outputs)` to run fn(request) -> updates when the page
        loads (e.g. to show admin-only parts to admins only).
    Per-user state lives in the store or gr.State, never in module globals.

Security notes: every page is behind the login (`/login` checks the store's argon2 hashes on a
worker thread, never on the event loop, and locks an account or a client out after repeated
failures, shared by every process through the store; see logic/logins.py); a login idle for longer than the session timeout is logged out;
every handler re-resolves the logged-in name to an active account and checks the role; the only
ids the browser sends back are assignment ids, checked against the user. Audio goes out under
opaque per-assignment tokens as per-token copies (annotate_ui/logic/media.py), so nothing a browser
receives tells which clip it is. Request bodies over `max_body_bytes` are refused before they
are read, and the page an anonymous visitor gets lists no endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import html
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import fastapi
import gradio as gr
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from gradio import route_utils
from gradio.routes import templates
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import cookie_parser

from annotate_ui.logic import audit, playback, tuning
from annotate_ui.logic import rater_steps as steps
from annotate_ui.logic.auth import AuthUser, active_user, verify_login
from annotate_ui.logic.logins import DEFAULT_SESSION_IDLE_S, MISS, LoginLimiter, LoginSessions, TokenMap, cookie_id
from annotate_ui.logic.media import MEDIA_ROUTE, CopyCache
from annotate_ui.logic.media_route import Served, serve
from annotate_ui.logic.predraw import Predrawer
from annotate_ui.web import charts
from annotate_ui.web.listening_tab import LISTENING_KEYBOARD_JS, build_listening_tab
from annotate_ui.web.quality_tab import build_quality_tab
from annotate_ui.web.rater_api import api_routes
from annotate_ui.web.runs_tab import build_runs_tab
from curator.audio import AudioStore
from curator.filter import DEFAULT_PRESET, get_preset, list_presets, save_preset, thresholds_of
from db.annotation import DEFAULT_OVERLAP
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


# --------------------------------------------------------------------------------------------
# Keyboard shortcuts (1–4 vote, a/b play a side, s skip, u undo), ignored while typing
# --------------------------------------------------------------------------------------------

KEYBOARD_JS = """
<script>
(() => {
  const votes = {"1": "vote-A", "2": "vote-B", "3": "vote-both_good", "4": "vote-both_bad",
                 "s": "audit-skip", "u": "audit-undo"};
  const shown = (el) => el && el.offsetParent !== null;
  function play(id) {
    const box = document.getElementById(id);
    if (!shown(box)) return;
    const button = box.querySelector('button[aria-label="Play"], button[aria-label="Pause"], .play-pause-button');
    if (button) { button.click(); return; }
    const audio = box.querySelector("audio");
    if (audio) { audio.paused ? audio.play() : audio.pause(); }
  }
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target, tag = ((t && t.tagName) || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable)) return;
    const key = e.key.toLowerCase();
    if (votes[key]) {
      const button = document.getElementById(votes[key]);
      if (shown(button) && !button.disabled) { e.preventDefault(); button.click(); }
    } else if (key === "a" || key === "b") {
      e.preventDefault(); play(key === "a" ? "audio-a" : "audio-b");
    }
  });
})();
</script>
"""

CSS = """
#audit-caption .caption { font-size: 1.3em; padding: .5em 0; white-space: pre-wrap; }
#audit-players .players { display: flex; gap: 1em; flex-wrap: wrap; }
#audit-players .player { flex: 1 1 20em; }
#audit-players .side { font-weight: bold; }
#audit-players audio, #listen-audio audio { width: 100%; }
img.spectrogram { display: block; width: 100%; max-width: 640px; height: auto; image-rendering: auto;
                  border-radius: 4px; margin-top: .3em; }
html.hide-spectrograms img.spectrogram { display: none !important; }
"""

# "Show spectrograms": applied on the page only (a class on <html>), remembered in localStorage
SPECTROGRAM_TOGGLE_JS = """(show) => {
  document.documentElement.classList.toggle("hide-spectrograms", !show);
  try { localStorage.setItem("show-spectrograms", show ? "1" : "0"); } catch (e) {}
  return show;
}"""
SPECTROGRAM_RESTORE_JS = """() => {
  let show = true;
  try { show = localStorage.getItem("show-spectrograms") !== "0"; } catch (e) {}
  document.documentElement.classList.toggle("hide-spectrograms", !show);
  return show;
}"""

INSTRUCTIONS = (
    "Listen to **A** and **B** (keys **a** / **b**), then judge which clip matches the caption better: "
    "**1** A better · **2** B better · **3** both good · **4** both bad · **s** skip · **u** undo the last vote."
)


# --------------------------------------------------------------------------------------------
# The audit tab
# --------------------------------------------------------------------------------------------


def audio_tag(url: str) -> str:
    """A player that asks the media route for its clip only when the rater presses play: the bytes
    the route sends are the playback record a vote is checked against."""
    return f'<audio controls preload="none" src="{html.escape(url)}"></audio>'


def spectrogram_tag(url: str, label: str) -> str:
    """The clip's spectrogram under its player (hidden by the page's "Show spectrograms" box)."""
    return (f'<img class="spectrogram" loading="lazy" src="{html.escape(url)}" '
            f'alt="spectrogram of {html.escape(label)}" width="640" height="128">')


def _players_html(view: steps.AuditView) -> str:
    """The two players: <audio> elements whose URLs are opaque tokens of this assignment's sides (blind)."""
    if view.assignment_id is None:
        return ""
    parts = []
    for clip in view.clips:
        label = clip.side.upper()
        if clip.problem:
            inner = f"<em>{html.escape(clip.problem)}</em>"
        else:
            inner = audio_tag(clip.audio) + spectrogram_tag(clip.spectrogram, f"clip {label}")
        parts.append(f'<div id="audio-{clip.side}" class="player"><div class="side">{label}</div>{inner}</div>')
    return f"<div class='players'>{''.join(parts)}</div>"


def _audit_outputs(view: steps.AuditView):
    """(assignment id, caption html, players html, progress, message, note) of a view.

    Small text only: the audio itself is fetched by the browser from the media route, under
    tokens issued to the logged-in user.
    """
    progress = f"Done **{view.done}** · skipped {view.skipped} · remaining **{view.remaining}**"
    if view.assignment_id is None:
        why = view.empty_reason or "No pair is waiting for you. Thank you!"
        return ("", f"<div class='caption'><em>{html.escape(why)}</em></div>", "", progress, view.message, "")
    return (str(view.assignment_id), f"<div class='caption'>{html.escape(view.caption)}</div>",
            _players_html(view), progress, view.message, "")


def _served(served: Served) -> Response:
    """SERVED as a response (a single byte range when the player asked for one); no ETag or
    Last-Modified, private caching only (the URL is a token of one user's one assignment)."""
    headers = {"Cache-Control": "private, max-age=3600", "Accept-Ranges": "bytes", "X-Content-Type-Options": "nosniff"}
    if served.status == 416:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{served.total}"})
    if served.status == 200:
        return Response(served.body, media_type=served.media_type, headers=headers)
    return Response(served.body, status_code=206, media_type=served.media_type,
                    headers={**headers, "Content-Range": f"bytes {served.start}-{served.end}/{served.total}"})


def app_routes(ctx: UIContext) -> list:
    """The routes the app adds before Gradio's own (so they take precedence):

    * GET media/{token}: the blind copy of one clip, to the user the token was issued to, while
      the assignment is open or the item in their queue; the bytes it sends are recorded (playback);
    * POST /login: Gradio's login with the store's argon2 check on a worker thread and the
      per-account / per-client limit (logic/logins.LoginLimiter); same form fields and cookies as Gradio's.
    """
    router = fastapi.APIRouter()

    @router.get("/" + MEDIA_ROUTE + "/{token}", include_in_schema=False)
    def media(token: str, request: fastapi.Request):
        user = ctx.request_user(request)
        if user is None:
            return PlainTextResponse("you are not logged in, or your account is disabled; log in again", 401)
        with ctx.session() as s:
            try:
                with ctx.writing():
                    served = serve(s, ctx.audio_store, ctx.copies, user, token, request.headers.get("range"))
                    s.commit()
            except CuratorError as exc:
                return PlainTextResponse(str(exc), 404)
        return _served(served)

    async def login(request: fastapi.Request):
        try:
            form = await request.form()
        except Exception:  # noqa: BLE001 - a malformed body is a refused login, not a server error
            return JSONResponse({"detail": "Incorrect credentials."}, status_code=400)
        username = str(form.get("username") or "").strip()
        password = str(form.get("password") or "")
        client = request.client.host if request.client else None
        wait = await asyncio.get_running_loop().run_in_executor(None, ctx.limiter.locked_for, username, client)
        if wait > 0:
            return await _locked_out(ctx, wait)
        loop = asyncio.get_running_loop()
        user = await loop.run_in_executor(ctx.login_pool, ctx.login, username, password)
        if not user:
            await loop.run_in_executor(None, ctx.limiter.failed, username, client)
            return JSONResponse({"detail": "Incorrect credentials."}, status_code=400)
        # the store writes run off the event loop too (a login is rare; a vote must not wait behind it)
        await loop.run_in_executor(None, ctx.limiter.succeeded, username, client)
        token = await loop.run_in_executor(None, ctx.sessions.create, user.id)
        response = JSONResponse({"success": True})
        response.set_cookie(key=f"access-token-{ctx.cookie_id}", value=token, httponly=True, samesite="none", secure=True)
        response.set_cookie(key=f"access-token-unsecure-{ctx.cookie_id}", value=token, httponly=True)
        return response

    def logout(request: fastapi.Request, all_session: bool = False):
        """End this browser's login (ALL_SESSION: every login of this account) in the store, so no
        process of it accepts the cookie any more."""
        user = ctx.request_user(request, activity=False)
        cookies = request.cookies
        token = cookies.get(f"access-token-{ctx.cookie_id}") or cookies.get(f"access-token-unsecure-{ctx.cookie_id}")
        if user is not None and all_session:
            ctx.sessions.end_user(user.id)
        elif token:
            ctx.sessions.end(token)
        response = RedirectResponse(url="./", status_code=302)
        response.delete_cookie(key=f"access-token-{ctx.cookie_id}", path="/")
        response.delete_cookie(key=f"access-token-unsecure-{ctx.cookie_id}", path="/")
        return response

    router.add_api_route("/login", login, methods=["POST"], include_in_schema=False)
    router.add_api_route("/login/", login, methods=["POST"], include_in_schema=False)
    router.add_api_route("/logout", logout, methods=["GET"], include_in_schema=False)
    router.add_api_route("/logout/", logout, methods=["GET"], include_in_schema=False)
    router.routes.extend(api_routes(ctx))
    return router.routes


async def _locked_out(ctx: UIContext, wait: float) -> Response:
    """429 for a locked account or client, after `ctx.locked_delay_s`: a client hammering /login in a
    loop gets one answer a second per connection instead of hundreds, so the flood cannot crowd the
    event loop that serves the raters (a waiting answer costs the server nothing)."""
    await asyncio.sleep(ctx.locked_delay_s)
    return JSONResponse({"detail": f"too many failed logins: try again in {math.ceil(wait)} s"},
                        status_code=429, headers={"Retry-After": str(math.ceil(wait))})


class Guard:
    """ASGI middleware in front of the whole app:

    * a request body over `ctx.max_body_bytes` gets 413 before anything parses it (by its
      Content-Length, or, streamed without one, as soon as the count passes the limit);
    * a login token idle for longer than `ctx.session_idle_s` is dropped (the visitor is logged
      out); the page's heartbeat does not count as use;
    * an anonymous visitor's page is the bare login form, without Gradio's API description (which
      would list every endpoint, admin ones included);
    * a POST /login from a client that is locked out is refused before its body is read.
    """

    def __init__(self, app, ctx: UIContext):
        self.app, self.ctx = app, ctx

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        limit = self.ctx.max_body_bytes
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return await self._too_large(scope, receive, send)
        path = scope.get("path", "")
        if scope.get("method") == "POST" and path.rstrip("/").endswith("/login") and scope.get("client"):
            wait = await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(self.ctx.limiter.locked_for, "", scope["client"][0], account_too=False))
            if wait > 0:
                return await (await _locked_out(self.ctx, wait))(scope, receive, send)
        cookies = cookie_parser(headers.get("cookie", ""))
        cid = self.ctx.cookie_id
        token = cookies.get(f"access-token-{cid}") or cookies.get(f"access-token-unsecure-{cid}")
        # an idle login ends here (in the store); the page's heartbeat does not count as use
        activity = "heartbeat" not in path
        user = self.ctx.sessions.cached(token, activity)
        if user is MISS:
            user = await asyncio.get_running_loop().run_in_executor(None, self.ctx.sessions.user, token, activity)
        logged_in = user is not None
        if not logged_in and scope.get("method") in ("GET", "HEAD") and path.rstrip("/") == "":
            return await _login_page(fastapi.Request(scope))(scope, receive, send)

        seen = 0
        started = refused = False

        async def counted_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # answer 413 now; the app sees the client gone and its reply is dropped
                    refused = True
                    if not started:
                        await self._too_large(scope, receive, tracked_send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                if started:
                    return
                started = True
            elif refused and message["type"] == "http.response.body" and not message.get("_guard"):
                return
            await send({k: v for k, v in message.items() if k != "_guard"})

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not refused:
                raise

    async def _too_large(self, scope, receive, send):
        body = f"request body larger than {self.ctx.max_body_bytes} bytes".encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body, "_guard": True})


def _login_page(request: fastapi.Request) -> Response:
    """Gradio's login page as Gradio renders it for an anonymous visitor, with an empty API description."""
    app = request.app
    blocks = app.get_blocks()
    root = route_utils.get_root_url(request=request, route_path="/", root_path=app.root_path)
    config = {"auth_required": True, "auth_message": blocks.auth_message, "space_id": blocks.space_id, "root": root,
              "page": {"": {"layout": {}}}, "pages": [""], "components": [], "dependencies": [], "current_page": ""}
    return templates.TemplateResponse(request=request, name="frontend/index.html", context={
        "base_url": "./", "config": config, "gradio_api_info": {"named_endpoints": {}, "unnamed_endpoints": {}}})


def build_app(ctx: UIContext) -> gr.Blocks:
    """The whole app; launch it with `auth=ctx.login`."""
    with gr.Blocks(title="Audio-alpaca rater") as demo:
        with gr.Row():
            who = gr.Markdown(elem_id="who")
            show_spec = gr.Checkbox(value=True, label="Show spectrograms", scale=0, min_width=180,
                                    elem_id="show-spectrograms")
            gr.Button("Log out", link="/logout", size="sm", scale=0, elem_id="logout")
        with gr.Tabs():
            with gr.Tab("Pair audit", id="audit"):
                gr.Markdown(INSTRUCTIONS)
                progress_md = gr.Markdown(elem_id="audit-progress")
                caption = gr.HTML(elem_id="audit-caption")
                assignment = gr.Textbox(visible="hidden", elem_id="audit-assignment", label="assignment")
                players = gr.HTML(elem_id="audit-players")
                message = gr.Markdown(elem_id="audit-message")
                note = gr.Textbox(label="Note (optional)", max_lines=3, elem_id="audit-note")
                with gr.Row():
                    vote_buttons = {v: gr.Button(f"{label}  [{i + 1}]", elem_id=f"vote-{v}", variant="primary")
                                    for i, (v, label) in enumerate(audit.VERDICT_LABELS.items())}
                with gr.Row():
                    skip_btn = gr.Button("Skip  [s]", elem_id="audit-skip")
                    undo_btn = gr.Button("Undo last vote  [u]", elem_id="audit-undo")
            with gr.Tab("Threshold tuning", id="tuning", visible=False, elem_id="tab-tuning") as tuning_tab:
                tuning_parts = _build_tuning(ctx)
            with gr.Tab("Listening sessions", id="listening"):
                build_listening_tab(ctx)
            build_runs_tab(ctx)
            build_quality_tab(ctx)

        audit_out = [assignment, caption, players, progress_md, message, note]

        def on_next(request: gr.Request):
            user = ctx.user(request)
            with ctx.errors():
                return _audit_outputs(steps.audit_next(ctx, user))

        def vote_handler(verdict: str):
            def on_vote(assignment_id: str, note_text: str, request: gr.Request):
                """A refused vote (clips not played yet, a replay, another rater's pair) answers with
                the reason in the page's message line and the rater's open pair, nothing recorded:
                a non-queued event's error would reach the page as a bare "Error"."""
                user = ctx.user(request)
                with ctx.errors():
                    try:
                        return _audit_outputs(steps.audit_vote(ctx, user, assignment_id, verdict, note_text))
                    except CuratorError as exc:
                        message = f"⚠ {exc}"
                    with ctx.session() as s:
                        still = audit.current_assignment(s, user)
                    if still is not None and str(still.id) == str(assignment_id):
                        # the same pair stays: its players (and what they played, under the same
                        # tokens), caption and note as they are
                        return gr.update(), gr.update(), gr.update(), gr.update(), message, gr.update()
                    return _audit_outputs(dataclasses.replace(steps.audit_next(ctx, user), message=message))
            return on_vote

        def on_skip(assignment_id: str, request: gr.Request):
            user = ctx.user(request)
            with ctx.errors():
                return _audit_outputs(steps.audit_skip(ctx, user, assignment_id))

        def on_undo(request: gr.Request):
            user = ctx.user(request)
            with ctx.errors():
                return _audit_outputs(steps.audit_undo(ctx, user))

        def on_load(request: gr.Request):
            user = ctx.user(request)
            with ctx.errors():
                pair = _audit_outputs(steps.audit_next(ctx, user))
            return (f"Signed in as **{html.escape(user.name)}** ({user.role})", gr.Tab(visible=user.is_admin), *pair)

        demo.load(on_load, outputs=[who, tuning_tab, *audit_out], api_name="load")
        # the spectrogram switch runs in the browser only (no server round trip)
        show_spec.change(None, inputs=[show_spec], outputs=[show_spec], js=SPECTROGRAM_TOGGLE_JS, queue=False,
                         show_progress="hidden")
        demo.load(None, outputs=[show_spec], js=SPECTROGRAM_RESTORE_JS)
        # The audit events skip Gradio's queue (queue=False): the page POSTs to /gradio_api/run/NAME and
        # gets the outputs in the reply, one round trip instead of a queue join plus an event stream.
        # They are short database calls (no GPU, nothing to wait in line for); API clients that join
        # the queue (gradio_client) are still served.
        fast = dict(outputs=audit_out, queue=False, show_progress="hidden")
        gr.Button("next", visible=False).click(on_next, api_name="next", **fast)
        for v, btn in vote_buttons.items():
            btn.click(vote_handler(v), inputs=[assignment, note], api_name=f"vote_{v}", **fast)
        skip_btn.click(on_skip, inputs=[assignment], api_name="skip", **fast)
        undo_btn.click(on_undo, api_name="undo", **fast)
        _wire_tuning(ctx, demo, tuning_parts)
        for fn, outputs in ctx.on_load:
            demo.load(fn, outputs=outputs)
    return demo


# --------------------------------------------------------------------------------------------
# The threshold tuning tab (admins)
# --------------------------------------------------------------------------------------------

SLIDERS = (  # name, label, min, max (arXiv 2404.09956 §4.1.2 defaults come from the "paper" preset)
    ("alpha1", "α1: winner score ≥ (model 1)", -1.0, 1.0),
    ("alpha2", "α2: winner score ≥ (model 2)", -1.0, 1.0),
    ("beta1", "β1: loser score ≥ (model 1)", -1.0, 1.0),
    ("beta2", "β2: loser score ≥ (model 2)", -1.0, 1.0),
    ("delta1_min", "Δ1 min (model 1)", -1.0, 2.0),
    ("delta1_max", "Δ1 max (model 1)", -1.0, 2.0),
    ("delta2_min", "Δ2 min (model 2)", -1.0, 2.0),
    ("delta2_max", "Δ2 max (model 2)", -1.0, 2.0),
)
HIST_KEYS = ("alpha1", "alpha2", "delta1", "delta2")


def _build_tuning(ctx: UIContext) -> dict:
    parts: dict = {}
    with gr.Row():
        parts["preset"] = gr.Dropdown(label="Preset", choices=[DEFAULT_PRESET], value=DEFAULT_PRESET,
                                      allow_custom_value=False, elem_id="tuning-preset")
        parts["load_preset"] = gr.Button("Load preset", elem_id="tuning-load")
        parts["reload"] = gr.Button("Reload pairs and votes", elem_id="tuning-reload")
    parts["models"] = gr.Markdown(elem_id="tuning-models")
    sliders = {}
    with gr.Row():
        for name, label, lo, hi in SLIDERS[:4]:
            sliders[name] = gr.Slider(lo, hi, step=0.01, label=label, elem_id=f"slider-{name}")
    with gr.Row():
        for name, label, lo, hi in SLIDERS[4:]:
            sliders[name] = gr.Slider(lo, hi, step=0.01, label=label, elem_id=f"slider-{name}")
    parts["sliders"] = sliders
    parts["total"] = gr.Markdown(elem_id="tuning-total")
    parts["precision"] = gr.Markdown(elem_id="tuning-precision")
    parts["counts"] = gr.Dataframe(charts.no_data(), label="Kept pairs per strategy (Table 2)", interactive=False,
                                   elem_id="tuning-counts")
    plots = {}
    with gr.Row():
        for key in HIST_KEYS[:2]:
            plots[key] = gr.BarPlot(x="score", y="pairs", color="set", label=f"α (winner score), model {key[-1]}",
                                    color_map=charts.HISTOGRAM_COLOURS, elem_id=f"hist-{key}")
    with gr.Row():
        for key in HIST_KEYS[2:]:
            plots[key] = gr.BarPlot(x="score", y="pairs", color="set", label=f"Δ (winner − loser), model {key[-1]}",
                                    color_map=charts.HISTOGRAM_COLOURS, elem_id=f"hist-{key}")
    parts["plots"] = plots
    with gr.Row():
        parts["save_name"] = gr.Textbox(label="Save these thresholds as preset", elem_id="tuning-save-name")
        parts["save"] = gr.Button("Save preset", elem_id="tuning-save")
    parts["save_msg"] = gr.Markdown(elem_id="tuning-save-msg")
    gr.Markdown("### Where to spend human effort")
    with gr.Row():
        parts["fill_mode"] = gr.Radio(["uncertain", "random"], value="uncertain", label="Pairs to audit",
                                      info="uncertain: closest to a threshold, or the two CLAP models disagree",
                                      elem_id="fill-mode")
        parts["fill_n"] = gr.Number(value=100, precision=0, label="How many", elem_id="fill-n")
        parts["fill_overlap"] = gr.Number(value=DEFAULT_OVERLAP, precision=0, label="Raters per pair", elem_id="fill-overlap")
        parts["fill"] = gr.Button("Fill the audit queue", elem_id="fill-queue")
    parts["queue"] = gr.Markdown(elem_id="queue-status")
    return parts


def _queue_text(st: audit.QueueStatus) -> str:
    return (f"Audit queue: **{st.items}** pairs ({st.slots} rater slots) · {st.votes} votes · {st.skipped} skipped · "
            f"{st.open_assignments} open · {st.complete_pairs} pairs fully audited")


def _wire_tuning(ctx: UIContext, demo: gr.Blocks, p: dict) -> None:
    sliders = p["sliders"]
    slider_list = [sliders[name] for name, *_ in SLIDERS]
    view_out = [p["total"], p["precision"], p["counts"], *[p["plots"][k] for k in HIST_KEYS]]

    def _view(s: Session, preset_name: str, values, reload: bool = False):
        preset = get_preset(s, preset_name or DEFAULT_PRESET)
        data = ctx.tuning_data(s, (preset.model1, preset.model2), reload=reload)
        th = tuning.thresholds_from_sliders(*values)
        v = tuning.view(data, th, audit.vote_arrays(s))
        total = (f"Kept **{v.counts['total']}** of {v.pool['total']} candidate pairs "
                 f"(models: {html.escape(data.table.model_names[0])} = 1, {html.escape(data.table.model_names[1])} = 2"
                 + (f"; {data.table.n_unscored} pairs without both scores left out" if data.table.n_unscored else "") + ")")
        prec = (v.kept_precision.describe("Kept pairs") + "  \n" + v.dropped_precision.describe("Dropped pairs"))
        return (total, prec, v.counts_frame(),
                *[charts.with_threshold_lines(v.histogram_frame(k), charts.histogram_lines(k, th)) for k in HIST_KEYS])

    def on_refresh(preset_name, a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi, request: gr.Request):
        ctx.admin(request)
        values = (a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi)
        with ctx.errors(), ctx.session() as s:
            return _view(s, preset_name, values)

    def on_reload(preset_name, a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi, request: gr.Request):
        ctx.admin(request)
        values = (a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi)
        with ctx.errors(), ctx.session() as s:
            return _view(s, preset_name, values, reload=True)

    def on_load_preset(preset_name, request: gr.Request):
        ctx.admin(request)
        with ctx.errors(), ctx.session() as s:
            preset = get_preset(s, preset_name or DEFAULT_PRESET)
            th = thresholds_of(preset)
            values = [getattr(th, name) for name, *_ in SLIDERS]
            names = [x.name for x in list_presets(s)]
            return (gr.Dropdown(choices=names, value=preset.name), *values, *_view(s, preset.name, values),
                    _queue_text(audit.queue_status(s)))

    def on_save(save_name, preset_name, a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi, request: gr.Request):
        user = ctx.admin(request)
        values = (a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi)
        with ctx.errors(), ctx.session() as s:
            base = get_preset(s, preset_name or DEFAULT_PRESET)
            th = tuning.thresholds_from_sliders(*values)
            saved = save_preset(s, save_name, th, author=user.name, model1=base.model1, model2=base.model2)
            names = [x.name for x in list_presets(s)]
            return gr.Dropdown(choices=names, value=saved.name), f"Saved preset **{html.escape(saved.name)}**."

    def on_fill(mode, n, overlap, preset_name, a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi, request: gr.Request):
        user = ctx.admin(request)
        values = (a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi)
        with ctx.errors(), ctx.session() as s:
            preset = get_preset(s, preset_name or DEFAULT_PRESET)
            data = ctx.tuning_data(s, (preset.model1, preset.model2))
            th = tuning.thresholds_from_sliders(*values)
            if not isinstance(overlap, (int, float)) or overlap != int(overlap):
                raise CuratorError(f"raters per pair {overlap!r} must be a whole number")
            added = tuning.fill_queue(s, data.table, th, n=n, mode=mode, added_by=user.name, overlap=int(overlap))
            s.commit()
            ctx.queue_changed()
            return f"Added **{added}** pairs ({html.escape(str(mode))}). " + _queue_text(audit.queue_status(s))

    def on_admin_load(request: gr.Request):
        user = ctx.user(request)
        if not user.is_admin:  # raters get nothing of the tab's data
            return (gr.Dropdown(), *[gr.Slider() for _ in SLIDERS], *[gr.update() for _ in view_out], "")
        return on_load_preset(DEFAULT_PRESET, request)

    admin_out = [p["preset"], *slider_list, *view_out, p["queue"]]
    demo.load(on_admin_load, outputs=admin_out, api_name="tuning_load")
    # live: every drag step and typed value (only the latest pending one runs), and the release
    gr.on([t for sl in slider_list for t in (sl.input, sl.release)], on_refresh, inputs=[p["preset"], *slider_list],
          outputs=view_out, api_name="tuning_refresh", concurrency_limit=None, trigger_mode="always_last",
          show_progress="hidden")
    p["reload"].click(on_reload, inputs=[p["preset"], *slider_list], outputs=view_out, api_name="tuning_reload")
    p["load_preset"].click(on_load_preset, inputs=[p["preset"]], outputs=admin_out, api_name="tuning_load_preset")
    p["save"].click(on_save, inputs=[p["save_name"], p["preset"], *slider_list], outputs=[p["preset"], p["save_msg"]],
                    api_name="tuning_save_preset")
    p["fill"].click(on_fill, inputs=[p["fill_mode"], p["fill_n"], p["fill_overlap"], p["preset"], *slider_list],
                    outputs=[p["queue"]], api_name="fill_queue")


def launch(ctx: UIContext, *, host: str = "127.0.0.1", port: int = 7860, prevent_thread_lock: bool = False,
           concurrency: int = 16):
    """Serve the app on a thread of this process (see annotate_ui/web/server.py); returns the server
    (`close()` stops it) at once when PREVENT_THREAD_LOCK, else serves until interrupted."""
    from annotate_ui.web.server import Served as Server, asgi_app

    served = Server(asgi_app(ctx, concurrency), host, port)
    if prevent_thread_lock:
        return served
    try:
        served.thread.join()
    except KeyboardInterrupt:
        served.close()
    return served


def make_context(db_url: str, audio_store: AudioStore, **settings) -> UIContext:
    """SETTINGS: lease_s, session_idle_s, max_body_bytes, limiter, locked_delay_s, sessions,
    min_played_share (UIContext fields)."""
    return UIContext(db_url=db_url, session_factory=open_store(db_url), audio_store=audio_store, **settings)


__all__ = ["UIContext", "build_app", "launch", "make_context", "app_routes", "Guard", "KEYBOARD_JS"]
