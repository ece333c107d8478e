"""The rater app's HTTP server: Gradio mounted on a FastAPI app, served by uvicorn.

* `asgi_app(ctx)`: the whole app as one ASGI application: the Gradio UI (annotate_ui/web/app.py)
  behind the store's login, with the app's own routes in front (annotate_ui/web/routes.py: login, logout, media, the JSON
  routes of annotate_ui/web/rater_api.py). Logins are read from the store (annotate_ui/logic/logins.py)
  and the login cookie has the same name in every process, so a browser logged in on one
  process is logged in on all of them.
* `Served`: the app served on a thread of this process (tests, `launch(...,
  prevent_thread_lock=True)`).
* `serve(settings, workers=N)`: `annotate-ui`. N > 1 runs uvicorn's worker processes: the parent
  binds the socket and hands it to N children, each building its own app from SETTINGS (passed
  in the environment); the kernel spreads connections over them. Several processes need
  PostgreSQL: SQLite has one writer at a time per file, so N processes would queue on its lock.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass

import fastapi
import gradio as gr
import uvicorn
from starlette.middleware import Middleware
from starlette.routing import Mount

from db.errors import CuratorError

SETTINGS_ENV = "ANNOTATE_UI_SETTINGS"  # how uvicorn's worker processes get the settings


@dataclass(frozen=True)
class ServeSettings:
    """What `annotate-ui` was started with (plain values: they travel to worker processes as JSON)."""

    db: str
    audio_root: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    concurrency: int = 16
    lease_s: float = 30 * 60.0
    session_idle_s: float = 60 * 60.0
    max_body_bytes: int = 1 << 20
    login_max_failures: int = 5
    login_lockout_s: float = 60.0
    min_played_share: float = 1.0

    def context(self):
        """The app context on the store (refuses an un-migrated store in one line)."""
        from annotate_ui.logic.logins import LoginLimiter
        from annotate_ui.web.context import make_context
        from curator.audio import audio_store_for

        return make_context(self.db, audio_store_for(self.db, self.audio_root), lease_s=self.lease_s,
                            session_idle_s=self.session_idle_s, max_body_bytes=self.max_body_bytes,
                            limiter=LoginLimiter(max_failures=self.login_max_failures, lockout_s=self.login_lockout_s),
                            min_played_share=self.min_played_share)


def asgi_app(ctx, concurrency: int = 16) -> fastapi.FastAPI:
    """The app of CTX as one ASGI application (see the module docstring)."""
    from annotate_ui.web.app import CSS, KEYBOARD_JS, build_app
    from annotate_ui.web.listening_tab import LISTENING_KEYBOARD_JS
    from annotate_ui.web.routes import Guard, app_routes
    from annotate_ui.logic.logins import TokenMap

    # Gradio rebuilds a pandas summary of its last GRADIO_ANALYTICS_MAX_EVENTS (10 000) events after
    # every event (only its monitoring page reads it): O(events) CPU per vote under load. Summarise
    # every 500 events over the last 2 000 instead, unless the operator set these.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "500")
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "2000")
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=concurrency)
    demo.max_threads = max(40, concurrency + 8)
    demo._queue.max_thread_count = demo.max_threads
    app = fastapi.FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    gr.mount_gradio_app(app, demo, "/", auth=ctx.login, auth_message="Audio-alpaca rater: log in",
                        max_file_size=ctx.max_body_bytes, show_error=True, ssr_mode=False, css=CSS,
                        head=KEYBOARD_JS + LISTENING_KEYBOARD_JS,
                        app_kwargs={"routes": app_routes(ctx), "middleware": [Middleware(Guard, ctx=ctx)]})
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount))
    # Gradio keeps logins in a dict of its process under a cookie named at random per process;
    # here both come from the store, so every process of it accepts the same cookie
    gradio_app.cookie_id = ctx.cookie_id
    gradio_app.tokens = TokenMap(ctx.sessions)
    app.state.blocks = demo
    return app


def _served_context(settings: ServeSettings):
    """The context a serving process uses: SETTINGS' store, and spectrograms drawn ahead."""
    from annotate_ui.logic.predraw import Predrawer

    ctx = settings.context()
    ctx.predrawer = Predrawer(ctx.session_factory, ctx.audio_store).start()
    return ctx


def worker_app() -> fastapi.FastAPI:
    """uvicorn's factory in each worker process: the app from the settings the parent put in the environment."""
    settings = ServeSettings(**json.loads(os.environ[SETTINGS_ENV]))
    return asgi_app(_served_context(settings), settings.concurrency)


def _config(app, host: str, port: int, **kw) -> uvicorn.Config:
    # no access log (one line per request costs CPU)
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          timeout_graceful_shutdown=5, **kw)


class Served:
    """The app served by uvicorn on a thread of this process until `close()`."""

    def __init__(self, app: fastapi.FastAPI, host: str, port: int):
        self.app = app
        self.server = uvicorn.Server(_config(app, host, port))
        self.thread = threading.Thread(target=self.server.run, name="annotate-ui", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise CuratorError(f"the rater app could not listen on {host}:{port}")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        blocks = getattr(self.app.state, "blocks", None)
        if blocks is not None and blocks._queue is not None:
            blocks._queue.close()


def check_workers(db_url: str, workers: int) -> int:
    if workers < 1:
        raise CuratorError(f"--workers {workers} must be at least 1")
    if workers > 1 and not db_url.startswith(("postgresql", "postgres:")):
        from db.session import safe_url

        raise CuratorError(f"--workers needs PostgreSQL: store {safe_url(db_url)} is SQLite, which takes one writer at "
                           "a time (run one process, or serve a postgresql:// store)")
    return workers


def serve(settings: ServeSettings, workers: int = 1) -> None:
    """Serve until interrupted: in this process, or in WORKERS uvicorn worker processes on one socket."""
    check_workers(settings.db, workers)
    if workers == 1:
        app = asgi_app(_served_context(settings), settings.concurrency)
        uvicorn.Server(_config(app, settings.host, settings.port)).run()
        return
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    uvicorn.run("annotate_ui.web.server:worker_app", factory=True, workers=workers, host=settings.host,
                port=settings.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)


__all__ = ["ServeSettings", "asgi_app", "worker_app", "Served", "serve", "check_workers", "SETTINGS_ENV"]
