"""
What the agent's two Klein apps share: JSON answers, request bodies read with bounds, and
one set of error handlers so that every failure is a JSON 4xx/5xx, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from klein import Klein
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from mep_agent.util import jsontext
from mep_agent.web.problems import DOMAIN_ERRORS, ApiProblem, problem_for

log = Logger()

MAX_BODY = 64 * 1024


def json_headers(request: IRequest, status: int) -> None:
    """Set the status and the headers of every JSON answer."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")


def respond(request: IRequest, status: int, body: Any, **headers: str) -> bytes:
    """Set the status and JSON headers; the encoded body."""
    json_headers(request, status)
    for name, value in headers.items():
        request.setHeader(name.replace("_", "-").encode(), value.encode())
    return json.dumps(body).encode()


def error(request: IRequest, status: int, message: str, **fields: Any) -> bytes:
    """A JSON error answer C{{"error": message, ...fields}}."""
    return respond(request, status, dict({"error": message}, **fields))


def problem_answer(request: IRequest, problem: ApiProblem) -> bytes:
    """The JSON answer to an L{ApiProblem}: its status, headers and fields."""
    for name, header in problem.headers.items():
        request.setHeader(name.encode(), header.encode())
    return error(request, problem.status, problem.message, **problem.fields)


def query_values(request: IRequest) -> dict[str, str]:
    """
    The last value of each key of the query (C{''} for a key without '='). Read from the
    raw URI, because Twisted's request.args drops a key given without '='.
    """
    query = request.uri.partition(b"?")[2]
    if not query:
        return {}
    parsed = parse_qs(query.decode("latin-1"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def is_true(value: str | None) -> bool:
    """A flag's value: C{?name}, C{?name=1}, C{?name=true} are true; absent, 0, false, no not."""
    return value is not None and value.lower() not in ("0", "false", "no")


def query_flag(request: IRequest, name: str) -> bool:
    """True for C{?name}, C{?name=1}, C{?name=true} (L{is_true})."""
    return is_true(query_values(request).get(name))


def query_value(request: IRequest, name: str) -> str | None:
    """The last value of C{?name=value} in the raw query, or None."""
    return query_values(request).get(name)


def read_json(request: IRequest) -> Any:
    """The request's JSON body; ValueError when absent, too large, too deep or not JSON."""
    content = getattr(request, "content", None)
    raw = content.read(MAX_BODY + 1) if content is not None else b""
    if len(raw) > MAX_BODY:
        raise ValueError(f"body larger than {MAX_BODY} bytes")
    return jsontext.loads(raw)


def strict_routes(app: Klein) -> None:
    """
    Routes match exactly: no redirect for a missing trailing slash or merged slashes
    (werkzeug would answer C{//x} with a redirect, which Klein cannot render), and JSON
    answers for unknown paths (404), wrong methods (405), L{ApiProblem}s and bugs (500,
    logged).
    """
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    # Klein's stubs type handlers as (request, failure) only, not methods of a class app.
    handle_errors: Any = app.handle_errors

    @handle_errors(ApiProblem, *DOMAIN_ERRORS)
    def problem(instance: Any, request: IRequest, failure: Failure) -> bytes:
        value = failure.value
        assert isinstance(value, Exception)
        return problem_answer(request, problem_for(value))

    @handle_errors(NotFound, RequestRedirect)
    def not_found(instance: Any, request: IRequest, failure: Failure) -> bytes:
        return error(request, 404, "no such resource")

    @handle_errors(MethodNotAllowed)
    def not_allowed(instance: Any, request: IRequest, failure: Failure) -> bytes:
        return error(request, 405, "method not allowed")

    @handle_errors(HTTPException)
    def http_error(instance: Any, request: IRequest, failure: Failure) -> bytes:
        value = failure.value
        assert isinstance(value, HTTPException)
        code = value.code if value.code and 400 <= value.code < 500 else 400
        return error(request, code, "bad request")

    @handle_errors(Exception)
    def crashed(instance: Any, request: IRequest, failure: Failure) -> bytes:
        log.failure(
            "{path} failed",
            failure,
            path=request.path.decode("utf-8", "replace")[:200],
            level=LogLevel.error,
            event="api.bug",
        )
        return error(request, 500, "internal error")


class JSONGuard(Resource):
    """
    The one front door of a Klein resource: a request the routes cannot take (a path or
    Host that is not UTF-8, a Host name IDNA cannot encode: Klein's and werkzeug's rules,
    L{refusal}) is a JSON 400 before Klein sees it, where Klein would answer a C{text/html}
    400 and log a traceback; an exception raised before Klein's own error handling is a
    JSON 400 too. The application API's fast path asks the same L{refusal} first.
    """

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self._inner = inner
        self._good_host = b""  # the last Host name that passed (most requests repeat it)

    def refusal(self, request: Request) -> str | None:
        """Why the routes cannot take C{request} (see the class), or None."""
        host = request.getRequestHostname()
        if host != self._good_host:
            try:
                host.decode("utf-8").lower().encode("idna")
            except UnicodeError:
                return "malformed Host header"
            self._good_host = host
        if request.path.isascii() and b"%" not in request.path:
            return None  # plain ASCII: nothing to decode (the usual request, on the hot path)
        try:
            b"/".join(request.postpath or ()).decode("utf-8")
        except UnicodeDecodeError:
            return "the path is not UTF-8 once percent-decoded"
        return None

    def render(self, request: Request) -> Any:
        """Render with the inner resource; JSON 400 when the request is refused or raises."""
        problem = self.refusal(request)
        if problem is None:
            try:
                return self._inner.render(request)
            except Exception:
                problem = "bad request"
        log.info(
            "refused a malformed request for {path}: {problem}",
            path=request.path.decode("utf-8", "replace")[:200],
            problem=problem,
            event="api.bad_request",
        )
        return error(request, 400, "bad request", reason=problem)
