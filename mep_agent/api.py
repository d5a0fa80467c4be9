"""
The API for the co-located application (the original's paths and shapes):

  GET /mep-agent/v1/token              the current MEP token, expires_in = seconds left
  GET /mep-agent/v1/endpoint/{serName} transportInfo.endpoint of the first ACTIVE instance
                                       (?all=true: every instance)

Every answer is JSON. Status mapping (the original answered 400 for all discovery failures):
token not yet obtained 412, token expired and not renewable 503, invalid name 400, unknown
service or no ACTIVE instance 404, MEP unreachable with nothing cached 503, other MEP
errors 502, missing/wrong API token 401, unknown path 404, wrong method 405.
"""

from __future__ import annotations

import hmac
import math
import re
from typing import Any

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from .discovery import DiscoveryCache
from .jsonweb import error, json_errors, query_flag, respond
from .mep import MepError
from .model import SER_NAME_PATTERN
from .secret import Secret
from .token import TokenKeeper

_SER_NAME = re.compile(SER_NAME_PATTERN)


class AgentAPI:
    app = Klein()
    log = Logger()

    def __init__(
        self,
        tokens: TokenKeeper,
        discovery: DiscoveryCache,
        clock: IReactorTime,
        api_token: Secret | None = None,
    ) -> None:
        self._tokens = tokens
        self._discovery = discovery
        self._clock = clock
        self._api_token = api_token

    def resource(self):
        return self.app.resource()

    def _authorized(self, request: Request) -> bool:
        if self._api_token is None:
            return True
        given = (request.getHeader(b"authorization") or b"").decode("latin-1")
        expected = f"Bearer {self._api_token.reveal()}"
        return hmac.compare_digest(
            given.encode("latin-1", "replace"), expected.encode("latin-1", "replace")
        )

    def _deny(self, request: Request) -> bytes:
        request.setHeader(b"WWW-Authenticate", b'Bearer realm="mep-agent"')
        return error(request, 401, "missing or wrong bearer token for the agent API")

    def _token_problem(self, request: Request) -> bytes:
        if self._tokens.tokens_obtained == 0:
            return error(
                request,
                412,
                "no token yet: the agent has not obtained one from the MEP",
                state=self._tokens.state,
            )
        return error(
            request, 503, "the token expired and renewing it is failing", state=self._tokens.state
        )

    @app.route("/mep-agent/v1/token", methods=["GET"])
    def token(self, request: Request) -> bytes:
        if not self._authorized(request):
            return self._deny(request)
        token = self._tokens.current()
        if token is None:
            return self._token_problem(request)
        remaining = max(0, math.floor(token.expires_at - self._clock.seconds()))
        return respond(
            request,
            200,
            {
                "access_token": token.access_token.reveal(),
                "token_type": token.token_type,
                "expires_in": remaining,
            },
        )

    @app.route("/mep-agent/v1/endpoint/<path:ser_name>", methods=["GET"])
    async def endpoint(self, request: Request, ser_name: str) -> bytes:
        if not self._authorized(request):
            return self._deny(request)
        if len(ser_name) > 128 or not _SER_NAME.fullmatch(ser_name) or not ser_name:
            return error(
                request,
                400,
                "invalid service name: up to 128 letters, digits, '_' or '-' (not first or last)",
                serName=ser_name[:140],
            )
        if self._tokens.current() is None:
            return self._token_problem(request)
        try:
            lookup = await self._discovery.lookup(ser_name)
        except MepError as e:
            if e.transient or e.status in (401, 403):
                return error(
                    request,
                    503,
                    "the MEP cannot be reached and nothing is cached",
                    serName=ser_name,
                    cause=str(e),
                )
            return error(
                request,
                502,
                "the MEP refused the discovery request",
                serName=ser_name,
                cause=str(e),
            )
        headers = {"Age": str(int(lookup.age)), "X_Cache": lookup.source.upper()}
        instances = lookup.instances or []
        if not instances:
            return error(request, 404, "service not found", serName=ser_name)
        if query_flag(request, "all"):
            return respond(request, 200, [_summary(i) for i in instances], **headers)
        for instance in instances:
            if instance.get("state") == "ACTIVE":
                return respond(request, 200, _endpoint(instance), **headers)
        return error(
            request,
            404,
            "no ACTIVE instance of the service",
            serName=ser_name,
            states=sorted({str(i.get("state")) for i in instances}),
        )

    json_errors(app)


def _endpoint(instance: dict[str, Any]) -> Any:
    """The original's answer: transportInfo.endpoint as the MEP returned it."""
    transport = instance.get("transportInfo") or {}
    endpoint = transport.get("endpoint") if isinstance(transport, dict) else None
    return endpoint if isinstance(endpoint, dict) else {}


def _summary(instance: dict[str, Any]) -> dict[str, Any]:
    return {
        "serInstanceId": instance.get("serInstanceId"),
        "state": instance.get("state"),
        "endpoint": _endpoint(instance),
    }
