"""The application: settings, the safety middleware, and `serve` (uvicorn)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import secrets
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit

from touchstone.config import field, from_dict, to_dict
from touchstone.errors import UserError

log = logging.getLogger("touchstone.serve")
TOKEN_COOKIE = "touchstone_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass
class ServeConfig:
    workspace: str = field("workspace", help="the workspace whose loop, models and champion are served")
    model: str | None = field(
        None, help="the model that judges (default: the workspace's champion, followed as it changes)"
    )
    host: str = field("127.0.0.1", help="address to bind; anything but loopback needs a token")
    port: int = field(8000, help="port to bind", min=1, max=65535)
    token: str | None = field(
        None, help="shared secret every page and API call must carry (default: $TOUCHSTONE_TOKEN)"
    )
    # 256 KiB holds three text fields at the character cap in any script (4 bytes a character at worst).
    max_body_bytes: int = field(256 * 1024, help="largest request body; larger is a 413", min=1)
    judge_seconds: float = field(30.0, help="longest a request may wait for its judgement; then a 503", above=0)
    # 5 ms: a forward pass of a micro model on 2 cores takes tens of ms, so the wait costs a lone
    # request little and lets questions from concurrent clients share the next pass.
    batch_wait: float = field(0.005, help="longest the first question of a batch waits for others", min=0)
    batch_size: int | None = field(
        None,
        help="most questions in one batch (default: the judge's 4 x 32; 1 answers one request per forward pass)",
        min=1,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_config(cfg: ServeConfig) -> ServeConfig:
    """The token from TOUCHSTONE_TOKEN when none is given; refuse a non-loopback address without one, a
    model directory that is not there, and a setting outside its field's range (one built in code, not
    through the command line that checks them as they are typed)."""
    if cfg.token is None and os.environ.get("TOUCHSTONE_TOKEN"):
        cfg.token = os.environ["TOUCHSTONE_TOKEN"]
    if not is_loopback(cfg.host) and not cfg.token:
        raise UserError(
            f"serve: --host {cfg.host} is not loopback; give --token (or TOUCHSTONE_TOKEN) so that "
            "every request must carry it"
        )
    if cfg.model is not None and not Path(cfg.model).is_dir():
        raise UserError(f"{cfg.model}: no such model directory")
    settings = to_dict(cfg)
    from_dict(ServeConfig, settings, where="serve", flags=tuple(settings))  # each within its field's range
    return cfg


# ------------------------------------------------------------------------------------------ middleware
class Guard:
    """Pure ASGI middleware, outermost: the token, same-origin POSTs and the body size cap.

    Pure ASGI rather than Starlette's BaseHTTPMiddleware so that server-sent events stream through
    untouched and an over-long body is refused while it arrives, not after it has been read."""

    def __init__(self, app, cfg: ServeConfig):
        self.app, self.cfg = app, cfg

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.cfg.token:
            given, where = _token_of(scope, headers)
            if given is None:
                return await _refuse(
                    scope,
                    send,
                    401,
                    "this server needs a token: send 'Authorization: Bearer "
                    "TOKEN', or open /?token=TOKEN once in a browser",
                )
            if not secrets.compare_digest(given.encode(), self.cfg.token.encode()):
                return await _refuse(scope, send, 403, "wrong token")
            if where == "query" and scope["method"] == "GET":
                return await _remember(scope, send, given)
        if scope["method"] not in SAFE_METHODS:
            why = _cross_site(headers)
            if why:
                return await _refuse(scope, send, 403, why)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.cfg.max_body_bytes):
            return await _refuse(scope, send, 413, f"request body over {self.cfg.max_body_bytes} bytes")
        limit, seen = self.cfg.max_body_bytes, 0
        started = refused = False

        async def capped_receive():
            # A body without Content-Length (chunked) is counted as it arrives: past the cap the client
            # gets its 413 at once and the app sees a disconnect, so it stops reading.
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if not started and not refused:
                        refused = True
                        await _refuse(scope, send, 413, f"request body over {limit} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # the 413 is the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, capped_receive, guarded_send)


def _token_of(scope, headers: dict) -> tuple[str | None, str]:
    """(the token the request carries, where: "header", "cookie" or "query")."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), "header"
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:  # a malformed cookie header carries no token
        pass
    if TOKEN_COOKIE in cookie:
        return cookie[TOKEN_COOKIE].value, "cookie"
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return (query["token"][0], "query") if "token" in query else (None, "")


async def _remember(scope, send, token: str) -> None:
    """A page opened with ?token=...: keep the token in a same-site cookie and drop it from the address
    (so it stays out of the history and of links)."""
    rest = urlencode([(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")) if k != "token"])
    location = quote(scope["path"]) + (f"?{rest}" if rest else "")
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode()),
                (b"content-length", b"0"),
                (b"set-cookie", f"{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/".encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def _cross_site(headers: dict) -> str | None:
    """Why a state-changing request looks cross-site, or None. A browser always sends Origin on a
    cross-origin POST; a request without one (curl, a script) is not a browser's forged form."""
    if headers.get("sec-fetch-site") == "cross-site":
        return "cross-site request refused"
    origin = headers.get("origin")
    if origin is None:
        return None
    host = headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc != host:
        return f"cross-site request refused (Origin {origin} is not this server, {host})"
    return None


async def _refuse(scope, send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------------ app
def create_app(cfg: ServeConfig):
    """The FastAPI application for these settings (the caller runs it: `serve`, a test client)."""
    # The web stack loads here, not at the top: `touchstone --help` imports this module for ServeConfig.
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline  # /docs from packaged files, never a CDN
    from transformers.utils import logging as hf_logging

    from touchstone.serve import api, pages
    from touchstone.serve.errors import Conflict, NotFound, Unavailable
    from touchstone.serve.state import State

    hf_logging.disable_progress_bar()  # a bar on the server's terminal for every model load says nothing
    state = State(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await state.close()

    app = FastAPIOffline(
        title="Touchstone",
        version="1",
        lifespan=lifespan,
        description="Judge two versions, check them with the worlds' tools, debate wing designs, "
        "and watch the loop retrain the model.",
    )
    app.state.touchstone = state

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # One line per problem, naming the field: "body.a: String should have at most 20000 characters".
        problems = [
            f"body: malformed JSON ({e.get('ctx', {}).get('error', e['msg'])}, at character {e['loc'][-1]})"
            if e["type"] == "json_invalid"
            else f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()
        ]
        return JSONResponse(
            {
                "detail": "; ".join(problems),
                "errors": [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()],
            },
            status_code=422,
        )

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    for exc_type, status in ((NotFound, 404), (Conflict, 409), (Unavailable, 503)):
        app.add_exception_handler(exc_type, _reply(status))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"[:500]}, status_code=500)

    app.include_router(api.router, prefix="/api/v1")
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    guarded = Guard(app, cfg)
    guarded.state = state
    return guarded


def make_server(app, host: str, port: int):
    """A uvicorn server for `create_app`'s app whose shutdown first ends the event streams (they would
    otherwise hold it until uvicorn's graceful timeout cancels them, with a traceback in the log)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            app.state.closing.set()
            await super().shutdown(sockets)

    return Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3))


def _reply(status: int):
    from fastapi.responses import JSONResponse

    async def handler(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handler


def serve(cfg: ServeConfig) -> None:
    """Run the app under uvicorn until interrupted."""
    check_config(cfg)
    server = make_server(create_app(cfg), cfg.host, cfg.port)
    where = f"http://{cfg.host}:{cfg.port}/"
    print(
        f"touchstone serve: {where} (API {where}api/v1, docs {where}docs)" + ("; token required" if cfg.token else ""),
        flush=True,
    )
    server.run()
