"""The HTTP side of the rater app, in front of Gradio: the media route (blind per-token copies of
the clips, the playback record), the login and logout routes (the store's argon2 check and
lockouts, logins kept in the store), the JSON routes of the raters' steps
(annotate_ui/web/rater_api.py), and `Guard`, the ASGI middleware that bounds request bodies, ends
idle logins and shows an anonymous visitor only the login form."""

from __future__ import annotations

import asyncio
import functools
import math

import fastapi
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from gradio import route_utils
from gradio.routes import templates
from starlette.requests import cookie_parser

from annotate_ui.logic.logins import MISS
from annotate_ui.logic.media import MEDIA_ROUTE
from annotate_ui.logic.media_route import Served, serve
from annotate_ui.web.context import UIContext
from annotate_ui.web.rater_api import api_routes
from db.errors import CuratorError


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


__all__ = ["app_routes", "Guard"]
