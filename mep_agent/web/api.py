"""
The API for the co-located application (EdgeGallery's Go mep-agent's paths and shapes):

  GET /mep-agent/v1/token              the current MEP token, expires_in = seconds left
  GET /mep-agent/v1/endpoint/{serName} transportInfo.endpoint of the first ACTIVE instance
                                       (?all=true: every instance)
  GET /mep-agent/v1/termination        whether the platform announced a termination
                                       (?wait=30s: block until it does or the wait ends)
  POST /mep-agent/v1/termination/ack   the application is ready to go (termination.py)

Every answer is JSON. Status mapping (EdgeGallery's Go mep-agent answered 400 for all
discovery failures): token not yet obtained 412, no valid token (expired or refused, and
renewing fails) 503, invalid name 400, unknown service or no ACTIVE instance 404, MEP
unreachable with nothing cached 503, other MEP errors 502, missing/wrong API token 401,
unknown path 404, wrong method 405. Routes raise L{ApiProblem}s or the core's errors;
L{jsonweb.strict_routes} turns them into answers (web/problems.py).

One front door: the fast path (L{FastPath}) answers what it can from the same checks the
routes make (L{AgentAPI.token_answer}, L{AgentAPI.endpoint_query}); whatever they refuse
goes to the routes, which refuse it with the same rule.
"""

from __future__ import annotations

import hmac
import json
import math
import re
from collections import OrderedDict
from typing import Any

from attrs import frozen
from klein import Klein
from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request
from werkzeug.routing import PathConverter

from mep_agent.core.discovery import MAX_ENTRIES, CacheSource, DiscoveryCache, Lookup
from mep_agent.core.termination import Terminator
from mep_agent.core.token import TokenKeeper
from mep_agent.mp1.dialect import EDGEGALLERY, Dialect
from mep_agent.mp1.errors import NoToken
from mep_agent.mp1.records import ServiceInstance
from mep_agent.mp1.tokens import Token
from mep_agent.util.secret import Secret
from mep_agent.web.blocking import (
    INDEX_HEADER,
    DiscoveryWaits,
    TerminationWaits,
    parse_wait,
    request_index,
    when_gone,
)
from mep_agent.web.jsonweb import (
    JSONGuard,
    is_true,
    json_headers,
    problem_answer,
    query_value,
    query_values,
    strict_routes,
)
from mep_agent.web.metrics import ApiObserver
from mep_agent.web.problems import ApiProblem

TOKEN_PATH = b"/mep-agent/v1/token"
ENDPOINT_PREFIX = b"/mep-agent/v1/endpoint/"
TERMINATION_PATHS = (b"/mep-agent/v1/termination", b"/mep-agent/v1/termination/ack")
# A name the fast path may take as it is: no escapes, nothing werkzeug would decode.
_PLAIN_NAME = re.compile(rb"[A-Za-z0-9._~\-]{1,128}")
_FAST_QUERY = frozenset({"wait", "all"})
_CACHE_HEADER = {source: source.value.upper().encode() for source in CacheSource}


def api_route(path: bytes) -> str:
    """The C{route} label of a path (token, endpoint, termination, other): a bounded set."""
    if path == TOKEN_PATH:
        return "token"
    if path.startswith(ENDPOINT_PREFIX):
        return "endpoint"
    return "termination" if path in TERMINATION_PATHS else "other"


class FastPath(Resource):
    """
    The calls applications make most, answered without Klein's routing and Deferreds (two
    thirds of the time a request took, in the profile benchmarks/RESULTS.md reports):
    C{GET /token} from the body encoded for this token and second, C{GET /endpoint/{name}}
    from a fresh cache entry's encoded body, and a blocking C{?wait=} query parked in the
    waiting room until it can be answered. Everything else, every answer but a 200 and
    every parked query when it wakes, goes through Klein's routes.

    Every answer is counted (L{ApiObserver}): a fast 200 by one C{inc()} of a counter child
    made once, a routed answer when it is finished.
    """

    isLeaf = True

    def __init__(self, api: AgentAPI, routed: JSONGuard, observe: ApiObserver) -> None:
        super().__init__()
        self._api = api
        self._routed = routed
        self._observe = observe
        self._token_ok = observe.token_ok
        self._endpoint_ok = observe.endpoint_ok

    def render(self, request: Request) -> Any:
        """The answer at once, a parked query, or whatever the routes answer."""
        # The routes' own front door decides first what they would refuse (Host, path).
        if request.method == b"GET" and self._routed.refusal(request) is None:
            path = request.path
            if path == TOKEN_PATH:
                body = self._api.token_body(request)
                if body is not None:
                    json_headers(request, 200)
                    self._token_ok.inc()
                    return body
            elif path.startswith(ENDPOINT_PREFIX):
                answer = self._api.endpoint_fast(request, path[len(ENDPOINT_PREFIX) :], self)
                if answer is not None:
                    if answer is not NOT_DONE_YET:  # a parked query: counted once answered
                        if request.code == 200:
                            self._endpoint_ok.inc()
                        else:  # a 404 from the cache
                            self._observe.answered("endpoint", request.code)
                    return answer
        return self._counted(request, self._routed.render(request))

    def _counted(self, request: Request, body: Any) -> Any:
        """Count C{body}'s answer now, or once it is finished (NOT_DONE_YET); C{body}."""
        # Klein answers NOT_DONE_YET even when it has finished the request already.
        if body is NOT_DONE_YET and not request.finished:
            self._observe.when_answered(api_route(request.path), request)
        else:
            self._observe.answered(api_route(request.path), request.code)
        return body

    def answer_routed(self, request: Request) -> None:
        """Answer a parked query, now that it woke, through the routes (503 at stop)."""
        if request.finished:
            return  # answered already (a lost connection left the room: when_gone)
        if self._api.stopping:
            body = self._counted(request, problem_answer(request, AgentStopping()))
        else:
            body = self._counted(request, self._routed.render(request))
        if body is not NOT_DONE_YET:
            request.setHeader(b"Content-Length", b"%d" % len(body))
            request.write(body)
            request.finish()


class ParkedQueries(Service):
    """
    In the listeners' stage, so stopped first: when the agent stops, every parked blocking
    query is answered at once with a JSON 503 (L{AgentStopping}), before the listeners'
    connections go with the process.
    """

    name = "parked-queries"

    def __init__(self, api: AgentAPI) -> None:
        self._api = api

    def stopService(self) -> None:
        """Answer the parked queries now."""
        super().stopService()
        self._api.close()


class AgentStopping(ApiProblem):
    """The agent is stopping: a parked query is answered, not left to the closing socket."""

    headers = {"Retry-After": "1"}

    def __init__(self) -> None:
        super().__init__(503, "the agent is stopping")


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


class NoEndpoint(ApiProblem):
    """
    ACTIVE instances exist, but the MEP says of none where to reach it (a transportId it
    cannot resolve, or a transport it dropped): never a 200 with an empty endpoint.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            502, "the MEP gives no endpoint for any ACTIVE instance of the service", serName=name
        )


class AnyName(PathConverter):
    """werkzeug's path converter, also matching control characters (answered 400)."""

    regex = "(?s:[^/].*?)"


@frozen
class EndpointQuery:
    """A checked GET /endpoint/{name}: the name, ?all, and ?wait= with the index header."""

    name: str
    every: bool
    wait: float | None  # seconds; None: answer at once
    index: int


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
        terminator: Terminator | None = None,
        observe: ApiObserver | None = None,
    ) -> None:
        """@param observe: counts the answers (None: into a registry nobody reads)."""
        self._observe = observe or ApiObserver(CollectorRegistry())
        self._dialect = dialect
        self._terminator = terminator
        self.discovery_waits = DiscoveryWaits(discovery, clock)
        self._termination_waits = (
            TerminationWaits(terminator, clock) if terminator is not None else None
        )
        self._tokens = tokens
        self._discovery = discovery
        self._clock = clock
        self._api_token = api_token
        self._token_body: tuple[Token, int, bytes] | None = None
        self.stopping = False
        # (name, all) -> (the instances encoded, their JSON): an answer is encoded once.
        self._endpoint_bodies: OrderedDict[
            tuple[str, bool], tuple[tuple[ServiceInstance, ...], bytes]
        ] = OrderedDict()

    def resource(self) -> IResource:
        """The resource to serve."""
        return FastPath(self, JSONGuard(self.app.resource()), self._observe)

    def close(self) -> None:
        """The agent is stopping: every parked blocking query is answered 503 now."""
        self.stopping = True
        self.discovery_waits.close()
        if self._termination_waits is not None:
            self._termination_waits.close()

    def endpoint_fast(self, request: Request, raw_name: bytes, front: FastPath) -> Any:
        """
        For L{FastPath}: the body of a 200 from a fresh cache entry, NOT_DONE_YET for a
        blocking query parked until its name changes or its wait ends, or None when the
        routes must answer (an escaped name, another query, a cache miss, any refusal).
        """
        query = query_values(request)
        if not _FAST_QUERY.issuperset(query) or _PLAIN_NAME.fullmatch(raw_name) is None:
            return None
        try:
            checked = self.endpoint_query(request, raw_name.decode("ascii"), query)
        except ApiProblem:
            return None  # the route refuses it, with the same rule
        if checked.wait is not None and not self.stopping:  # stopping: answered at once
            waiter = self.discovery_waits.park(
                checked.name, checked.index, checked.wait, front.answer_routed, request
            )
            if waiter is not None:
                when_gone(request, waiter.leave)
                return NOT_DONE_YET
        lookup = self._discovery.fresh(checked.name)
        if lookup is None:
            return None
        try:
            return self._endpoint_answer(request, checked.name, lookup, checked.every)
        except ApiProblem as e:  # not found, from the cache
            return problem_answer(request, e)

    def endpoint_query(self, request: IRequest, name: str, query: dict[str, str]) -> EndpointQuery:
        """
        The checks of GET /endpoint/{name}, whichever door it came in by: the API token,
        the name against the MEP's rules, ?wait= and the index header; an ApiProblem when
        one fails.
        """
        self._authorize(request)
        if not self._dialect.valid_discovery_name(name):
            raise BadServiceName(name, self._dialect.discovery_name_rule)
        wait = query.get("wait")
        if wait is None:
            return EndpointQuery(name, is_true(query.get("all")), None, 0)
        return EndpointQuery(
            name, is_true(query.get("all")), parse_wait(wait), request_index(request)
        )

    def _endpoint_answer(self, request: IRequest, name: str, lookup: Lookup, every: bool) -> bytes:
        """The 200 for C{lookup} (every instance, or the first ACTIVE one's endpoint)."""
        instances = lookup.instances or ()
        key = (name, every)
        known = self._endpoint_bodies.get(key)
        body = known[1] if known is not None and known[0] is instances else None
        if body is None:  # not this answer's 200 yet: check it
            if not instances:
                raise ServiceNotFound(name)
            if not every and not any(i.state == "ACTIVE" for i in instances):
                raise ServiceNotFound(name, sorted({str(i.state) for i in instances}))
            if not every and not any(i.state == "ACTIVE" and i.has_endpoint for i in instances):
                raise NoEndpoint(name)
        json_headers(request, 200)
        request.setHeader(b"Age", b"%d" % lookup.age)
        request.setHeader(b"X-Cache", _CACHE_HEADER[lookup.source])
        request.setHeader(INDEX_HEADER, b"%d" % self._discovery.index(name))
        if body is not None:
            return body
        if every:
            body = json.dumps([i.summary() for i in instances]).encode()
        else:
            active = next(i for i in instances if i.state == "ACTIVE" and i.has_endpoint)
            body = json.dumps(active.endpoint).encode()
        self._endpoint_bodies[key] = (instances, body)
        self._endpoint_bodies.move_to_end(key)
        while len(self._endpoint_bodies) > 2 * MAX_ENTRIES:
            self._endpoint_bodies.popitem(last=False)
        return body

    def token_body(self, request: IRequest) -> bytes | None:
        """
        For L{FastPath}: the 200 body of GET /mep-agent/v1/token, or None when the answer
        is not a 200 (the route gives it, from the same checks).
        """
        try:
            return self.token_answer(request)
        except (ApiProblem, NoToken):
            return None

    def token_answer(self, request: IRequest) -> bytes:
        """
        The checks and the body of GET /token, whichever door it came in by: Unauthorized,
        NoToken (412 or 503), or the token encoded once per token and second.
        """
        self._authorize(request)
        return self._encoded(self._tokens.require())

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

    def _authorized(self, request: IRequest) -> bool:
        if self._api_token is None:
            return True
        given = request.getHeader(b"authorization") or b""
        expected = f"Bearer {self._api_token.reveal()}".encode("latin-1", "replace")
        return hmac.compare_digest(given, expected)

    def _authorize(self, request: IRequest) -> None:
        if not self._authorized(request):
            raise Unauthorized()

    @app.route("/mep-agent/v1/token", methods=["GET"])
    def token(self, request: IRequest) -> bytes:
        """The current token and the seconds it has left."""
        body = self.token_answer(request)
        json_headers(request, 200)
        return body

    def _termination(self) -> Terminator:
        if self._terminator is None:
            raise ApiProblem(
                404, "termination notices are not handled (--termination off or no --notify-url)"
            )
        return self._terminator

    @app.route("/mep-agent/v1/termination", methods=["GET"])
    async def termination(self, request: IRequest) -> bytes:
        """Whether a termination was announced; ?wait= blocks until one is (or it ends)."""
        self._authorize(request)
        terminator = self._termination()
        wait = query_value(request, "wait")
        if wait is not None and terminator.notice is None and not self.stopping:
            assert self._termination_waits is not None  # made with the terminator
            await self._termination_waits.wait(parse_wait(wait))
        json_headers(request, 200)
        return json.dumps(terminator.view()).encode()

    @app.route("/mep-agent/v1/termination/ack", methods=["POST"])
    def termination_ack(self, request: IRequest) -> bytes:
        """The application acknowledges the termination (204), or none is under way (409)."""
        self._authorize(request)
        if not self._termination().acknowledge():
            raise ApiProblem(409, "no termination is under way")
        request.setResponseCode(204)
        return b""

    @app.route("/mep-agent/v1/endpoint/<name:ser_name>", methods=["GET"])
    async def endpoint(self, request: IRequest, ser_name: str) -> bytes:
        """
        The endpoint of the first ACTIVE instance of C{ser_name} (or every instance). A
        blocking query (C{?wait=}) waits in front of the routes (L{FastPath}) and comes
        here, checked again, when it wakes or when it need not wait.
        """
        checked = self.endpoint_query(request, ser_name, query_values(request))
        lookup = await self._discovery.lookup(ser_name)
        return self._endpoint_answer(request, ser_name, lookup, checked.every)
