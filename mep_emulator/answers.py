"""
Reading a request and writing a JSON answer: the small helpers the emulator's faces
(app.py, etsi.py) and its control API (control.py) share.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from twisted.web.server import Request


def write_json(
    request: Request,
    status: int,
    body: Any,
    content_type: bytes = b"application/json; charset=UTF-8",
) -> bytes:
    """Set the status and answer C{body} as JSON (no body for None)."""
    request.setResponseCode(status)
    if body is None:
        return b""
    request.setHeader(b"Content-Type", content_type)
    return json.dumps(body).encode()


def body_start(request: Request) -> bytes:
    """The first 4 KiB of the request body, for the request log."""
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    start: bytes = content.read(4096)
    return start


def json_object_body(request: Request) -> dict[str, Any] | None:
    """A control call's JSON object body ({} when empty); None when it is not one."""
    try:
        options = json.loads(read_body(request) or b"{}")
    except ValueError:
        return None
    return options if isinstance(options, dict) else None


def read_body(request: Request) -> bytes:
    """The whole request body (the emulator trusts its loopback callers)."""
    return request.content.read() if request.content is not None else b""


def header(request: Request, name: str) -> str | None:
    """The first value of a request header, None when absent."""
    values = request.requestHeaders.getRawHeaders(name)
    return values[0] if values else None


def query(request: Request) -> dict[str, list[str]]:
    """The request's query parameters, blank ones kept."""
    text = request.uri.decode("utf-8", "replace").partition("?")[2]
    return parse_qs(text, keep_blank_values=True)
