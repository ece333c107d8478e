"""The raters' JSON routes: the audit's and the listening sessions' hot path without Gradio.

    POST api/audit/next    {}                                        → the open pair, else a new one
    POST api/audit/vote    {"assignment_id", "verdict", "note"?}     → the vote, then the next pair
    POST api/audit/skip    {"assignment_id"}
    POST api/audit/undo    {}
    GET  api/listen/sessions                                         → the open listening sessions
    POST api/listen/next   {"session_id"}                            → the rater's next clip
    POST api/listen/rate   {"session_id", "item_id", "ovl", "rel"}   → the rating, then the next clip
    POST api/listen/skip   {"session_id", "item_id"}
    POST api/listen/undo   {"session_id"}

Each answers the view of annotate_ui/logic/rater_steps.py as JSON: the same steps, checks and blind
media URLs as the Gradio tabs, over the same login (the store's login cookie; 401 without it,
or for a disabled account). What the user may do is checked by the domain functions against
the logged-in account; a refused step is 400 with {"error": one line} and changes nothing
(a replayed vote, another rater's pair, a bad verdict or score).

A POST must say `Content-Type: application/json`: a page of another site cannot send that
without the browser asking first (CORS), and this app allows no other origin, so a logged-in
rater's browser cannot be made to vote from elsewhere.

Lean on purpose: no Gradio queue, no pydantic model, no per-request ORM objects beyond the
domain calls; the login is one query (joined with the account), the step's own queries, and json.dumps.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from annotate_ui.logic import rater_steps as steps
from annotate_ui.logic.listening import design
from db.errors import CuratorError

API_PREFIX = "/api"
MAX_JSON_BYTES = 16 * 1024  # a note is at most 2000 characters
STEP_THREADS = 8  # steps run at once per process (the rest wait their turn on the event loop, at no cost)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), status,
                    media_type="application/json", headers={"Cache-Control": "no-store"})


def _error(message: str, status: int = 400) -> Response:
    return _json({"error": message}, status)


async def _body(request: Request) -> dict:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise CuratorError("send the request as JSON (Content-Type: application/json)")
    raw = await request.body()
    if len(raw) > MAX_JSON_BYTES:
        raise CuratorError(f"the request is {len(raw)} bytes; at most {MAX_JSON_BYTES}")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise CuratorError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise CuratorError("the request body must be a JSON object")
    return data


def _route(ctx, path: str, step: Callable[[Any, Any, dict], Any], limiter, method: str = "POST") -> Route:
    """A JSON route: login, body, STEP(ctx, user, body) on a worker thread (LIMITER bounds how many
    at once), its view as JSON."""

    def run(request: Request, body: dict) -> Response:
        user = ctx.request_user(request, fresh=True)  # one query: a disabled account is refused at once
        if user is None:
            return _error("you are not logged in, or your account is disabled; log in again", 401)
        try:
            view = step(ctx, user, body)
        except CuratorError as exc:
            return _error(str(exc))
        return _json(view.as_dict() if hasattr(view, "as_dict") else view)

    async def endpoint(request: Request) -> Response:
        try:
            body = await _body(request) if method == "POST" else {}
        except CuratorError as exc:
            return _error(str(exc))
        # one thread hop for the login and the step; at most STEP_THREADS steps at once per process:
        # more threads only queue on the GIL and the store, and their hand-offs cost CPU
        return await anyio.to_thread.run_sync(run, request, body, limiter=limiter.get())

    return Route(API_PREFIX + path, endpoint, methods=[method], include_in_schema=False)


def _open_sessions(ctx, user, body) -> dict:
    with ctx.session() as s:
        return {"sessions": [{"id": r["id"], "name": r["name"]} for r in design.list_sessions(s, open_only=True)]}


def api_routes(ctx) -> list[Route]:
    """The routes above, for the app of CTX (annotate_ui/web/context.py's UIContext)."""
    limiter = _Limiter(STEP_THREADS)
    steps_by_path: dict[str, Callable[[Any, Any, dict], Any]] = {
        "/audit/next": lambda c, u, b: steps.audit_next(c, u),
        "/audit/vote": lambda c, u, b: steps.audit_vote(c, u, b.get("assignment_id"), b.get("verdict"), b.get("note")),
        "/audit/skip": lambda c, u, b: steps.audit_skip(c, u, b.get("assignment_id")),
        "/audit/undo": lambda c, u, b: steps.audit_undo(c, u),
        "/listen/next": lambda c, u, b: steps.listen_next(c, u, b.get("session_id")),
        "/listen/rate": lambda c, u, b: steps.listen_rate(c, u, b.get("session_id"), b.get("item_id"), b.get("ovl"),
                                                          b.get("rel")),
        "/listen/skip": lambda c, u, b: steps.listen_skip(c, u, b.get("session_id"), b.get("item_id")),
        "/listen/undo": lambda c, u, b: steps.listen_undo(c, u, b.get("session_id")),
    }
    return [_route(ctx, "/listen/sessions", _open_sessions, limiter, method="GET"),
            *(_route(ctx, path, step, limiter) for path, step in steps_by_path.items())]


class _Limiter:
    """An anyio CapacityLimiter made on first use (inside the server's event loop)."""

    def __init__(self, n: int):
        self.n, self._limiter = n, None

    def get(self):
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.n)
        return self._limiter


__all__ = ["api_routes", "API_PREFIX"]
