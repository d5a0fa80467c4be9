"""
The API for the co-located application (the original's paths and shapes):

  GET /mep-agent/v1/token              the current MEP token, expires_in = seconds left
  GET /mep-agent/v1/endpoint/{serName} transportInfo.endpoint of the first ACTIVE instance
                                       (?all=true: every instance)

Every answer is JSON. Status mapping (the original answered 400 for all discovery failures):
token not yet obtained 412, no valid token (expired or refused, and renewing fails) 503,
invalid name 400, unknown service or no ACTIVE instance 404, MEP unreachable with nothing
cached 503, other MEP errors 502, missing/wrong API token 401, unknown path 404, wrong
method 405. Routes raise L{ApiProblem}s; L{jsonweb.strict_routes} turns them into answers.
"""

from __future__ import annotations

import hmac
import json
import math
import re
from typing import Any

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from werkzeug.routing import PathConverter

from .dialect import EDGEGALLERY, Dialect
from .discovery import DiscoveryCache
from .errors import ApiProblem
from .jsonweb import JSONGuard, json_headers, query_flag, query_value, respond, strict_routes
from .mep import Token
from .secret import Secret
from .token import TokenKeeper

TOKEN_PATH = b"/mep-agent/v1/token"


class TokenFastPath(Resource):
    """
    GET /mep-agent/v1/token, the call applications make most, answered without Klein's
    routing and Deferreds (two thirds of the time a request took, in the profile
    benchmarks/RESULTS.md reports), from the body AgentAPI encoded for this token and
    second. Every other request, and every answer but a 200, goes through Klein.
    """

    isLeaf = True  # noqa: N815 (twisted.web's name)

    def __init__(self, api: AgentAPI, routed: IResource) -> None:
        super().__init__()
        self._api = api
        self._routed = routed

    def render(self, request: Request) -> Any:
        """The token at once, or whatever the routes answer."""
        if request.method == b"GET" and request.path == TOKEN_PATH:
            body = self._api.token_body(request)
            if body is not None:
                json_headers(request, 200)
                return body
        return self._routed.render(request)


class Unauthorized(ApiProblem):
    """The application did not send the API token."""

    headers = {"WWW-Authenticate": 'Bearer realm="mep-agent"'}

    def __init__(self) -> None:
        super().__init__(401, "missing or wrong bearer token for the agent API")


class BadServiceName(ApiProblem):
    """A name the MEP's serName rules forbid: never sent to the MEP."""

    def __init__(self, name: str, rule: str) -> None:
        super().__init__(400, f"invalid service name: {rule}", serName=name[:140])


class ServiceNotFound(ApiProblem):
    """The MEP knows no instance of the name, or none that is ACTIVE."""

    def __init__(self, name: str, states: list[str] | None = None) -> None:
        if states is None:
            super().__init__(404, "service not found", serName=name)
        else:
            super().__init__(404, "no ACTIVE instance of the service", serName=name, states=states)


class AnyName(PathConverter):
    """werkzeug's path converter, also matching control characters (answered 400)."""

    regex = "(?s:[^/].*?)"


INDEX_HEADER = b"X-Mep-Agent-Index"
MAX_WAIT = 300.0
_WAIT = re.compile(r"(\d{1,6})(ms|s|m)?")


def parse_wait(text: str) -> float:
    """?wait=30s, 500ms, 5m or plain seconds, at most MAX_WAIT; ApiProblem 400 otherwise."""
    match = _WAIT.fullmatch(text)
    if match is None:
        raise ApiProblem(400, "wait must be a duration such as 30s, 500ms or 5m")
    number, unit = int(match.group(1)), match.group(2) or "s"
    seconds = number / 1000 if unit == "ms" else number * 60 if unit == "m" else number
    return float(min(seconds, MAX_WAIT))


class AgentAPI:
    """The application API's Klein app; see the module docstring."""

    app = Klein()
    app.url_map.converters["name"] = AnyName
    strict_routes(app)

    def __init__(
        self,
        tokens: TokenKeeper,
        discovery: DiscoveryCache,
        clock: IReactorTime,
        api_token: Secret | None = None,
        dialect: Dialect = EDGEGALLERY,
    ) -> None:
        self._dialect = dialect
        self._tokens = tokens
        self._discovery = discovery
        self._clock = clock
        self._api_token = api_token
        self._token_body: tuple[Token, int, bytes] | None = None

    def resource(self) -> IResource:
        """The resource to serve."""
        return TokenFastPath(self, JSONGuard(self.app.resource()))

    def token_body(self, request: IRequest) -> bytes | None:
        """
        The 200 body of GET /mep-agent/v1/token, encoded once per token and second; None
        when the answer is not a 200 (no valid token, missing API token): the route gives it.
        """
        if self._api_token is not None:
            try:
                self._authorize(request)
            except Unauthorized:
                return None
        token = self._tokens.current()
        return None if token is None else self._encoded(token)

    def _encoded(self, token: Token) -> bytes:
        remaining = max(0, math.floor(token.expires_at - self._clock.seconds()))
        if self._token_body is not None and self._token_body[:2] == (token, remaining):
            return self._token_body[2]
        body = json.dumps(
            {
                "access_token": token.access_token.reveal(),
                "token_type": token.token_type,
                "expires_in": remaining,
            }
        ).encode()
        self._token_body = (token, remaining, body)
        return body

    def _authorize(self, request: IRequest) -> None:
        if self._api_token is None:
            return
        given = request.getHeader(b"authorization") or b""
        expected = f"Bearer {self._api_token.reveal()}".encode("latin-1", "replace")
        if not hmac.compare_digest(given, expected):
            raise Unauthorized()

    @app.route("/mep-agent/v1/token", methods=["GET"])
    def token(self, request: IRequest) -> bytes:
        """The current token and the seconds it has left."""
        self._authorize(request)
        token = self._tokens.require()  # 412 or 503 when there is none
        json_headers(request, 200)
        return self._encoded(token)

    @app.route("/mep-agent/v1/endpoint/<name:ser_name>", methods=["GET"])
    async def endpoint(self, request: IRequest, ser_name: str) -> bytes:
        """The endpoint of the first ACTIVE instance of C{ser_name} (or every instance)."""
        self._authorize(request)
        if not self._dialect.valid_discovery_name(ser_name):
            raise BadServiceName(ser_name, self._dialect.discovery_name_rule)
        wait = query_value(request, "wait")
        if wait is not None:
            seconds = parse_wait(wait)
            given = request.getHeader(INDEX_HEADER)
            if given is not None and not given.isdigit():
                raise ApiProblem(400, f"{INDEX_HEADER.decode()} must be a whole number")
            index = int(given) if given else 0
            await self._discovery.wait_for_change(ser_name, index, seconds)
        lookup = await self._discovery.lookup(ser_name)
        headers = {
            "Age": str(int(lookup.age)),
            "X_Cache": lookup.source.value.upper(),
            "X_Mep_Agent_Index": str(self._discovery.index(ser_name)),
        }
        instances = lookup.instances or ()
        if not instances:
            raise ServiceNotFound(ser_name)
        if query_flag(request, "all"):
            return respond(request, 200, [i.summary() for i in instances], **headers)
        for instance in instances:
            if instance.state == "ACTIVE":
                return respond(request, 200, instance.endpoint, **headers)
        raise ServiceNotFound(ser_name, sorted({str(i.state) for i in instances}))
