"""Small helpers shared by the agent's two Klein apps: JSON answers, never a traceback."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from klein import Klein
from twisted.logger import Logger
from twisted.web.server import Request
from werkzeug.exceptions import MethodNotAllowed, NotFound

log = Logger()

MAX_BODY = 64 * 1024


def respond(request: Request, status: int, body: Any, **headers: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    for name, value in headers.items():
        request.setHeader(name.replace("_", "-").encode(), value.encode())
    return json.dumps(body).encode()


def error(request: Request, status: int, message: str, **fields: Any) -> bytes:
    return respond(request, status, dict({"error": message}, **fields))


def query_flag(request: Request, name: str) -> bool:
    """
    True for C{?name}, C{?name=1}, C{?name=true}. Read from the raw URI, because
    Twisted's request.args drops a key given without '='.
    """
    query = request.uri.decode("latin-1").partition("?")[2]
    values = parse_qs(query, keep_blank_values=True).get(name)
    return values is not None and values[-1].lower() not in ("0", "false", "no")


def read_json(request: Request) -> Any:
    """The request's JSON body; ValueError when absent, too large or not JSON."""
    raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    if len(raw) > MAX_BODY:
        raise ValueError(f"body larger than {MAX_BODY} bytes")
    return json.loads(raw)


def json_errors(app: Klein) -> None:
    """JSON answers for unknown paths (404), wrong methods (405) and bugs (500, logged)."""
    # Klein's stubs type handlers as (request, failure) only, not methods of a class app.
    handle_errors: Any = app.handle_errors

    @handle_errors(NotFound)
    def not_found(instance: Any, request: Any, failure: Any) -> Any:
        return error(request, 404, "no such resource")

    @handle_errors(MethodNotAllowed)
    def not_allowed(instance: Any, request: Any, failure: Any) -> Any:
        return error(request, 405, "method not allowed")

    @handle_errors(Exception)
    def crashed(instance: Any, request: Any, failure: Any) -> Any:
        log.failure("{path} failed", failure, path=request.path)
        return error(request, 500, "internal error")
