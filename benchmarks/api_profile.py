"""
Where a GET /mep-agent/v1/token (or a cached GET /mep-agent/v1/endpoint/svc0) spends its
time inside the agent, without the network: the request bytes go through the API listener's
real protocol stack (HardenedSite, the API resource) on a StringTransport, with a token
that never expires and a cache entry that stays fresh. Prints microseconds per request and,
with --profile, cProfile's top functions. Run by hand.

    .venv/bin/python -m benchmarks.api_profile [--path token|endpoint] [--requests 5000]
        [--profile] [--out api_profile.json]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from benchmarks.soak import write_report
from mep_agent.core.discovery import DiscoveryCache
from mep_agent.mp1.records import Discovered, ServiceInstance
from mep_agent.mp1.tokens import Token
from mep_agent.util.secret import Secret
from mep_agent.web.api import AgentAPI
from mep_agent.web.site import serve

REQUESTS = {
    "token": b"GET /mep-agent/v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "endpoint": b"GET /mep-agent/v1/endpoint/svc0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


class FixedTokens:
    """The part of TokenKeeper the API reads, with one token valid for an hour."""

    def __init__(self) -> None:
        self.token = Token(Secret("t" * 64), "Bearer", 3600, 0.0)

    def current(self) -> Token:
        return self.token

    def require(self) -> Token:
        return self.token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=sorted(REQUESTS), default="token")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", default="api_profile.json")
    options = parser.parse_args()
    clock = Clock()
    request = REQUESTS[options.path]

    async def unused(name: str) -> Discovered:
        raise AssertionError("the entry is always fresh")

    cache = DiscoveryCache(unused, clock)
    instance = ServiceInstance("a" * 32, "ACTIVE", {"uris": ["http://svc0.local:80/"]})
    cache._store("svc0", Discovered((instance,), 200))
    api = AgentAPI(FixedTokens(), cache, clock)  # type: ignore[arg-type]
    factory = serve(api.resource(), clock)
    factory.doStart()
    protocol = factory.buildProtocol(("127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)

    def run(n: int) -> None:
        for _ in range(n):
            protocol.dataReceived(request)
            transport.clear()

    run(200)  # warm up
    assert transport.value() == b"", "answers are cleared"
    protocol.dataReceived(request)
    assert transport.value().startswith(b"HTTP/1.1 200 "), transport.value()[:200]
    transport.clear()
    started = time.perf_counter()
    run(options.requests)
    elapsed = time.perf_counter() - started
    write_report(
        options.out,
        {
            "path": options.path,
            "requests": options.requests,
            "us_per_request": round(elapsed / options.requests * 1e6, 1),
        },
    )
    if options.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, options.requests)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(
            int(os.environ.get("TOP", "15"))
        )


if __name__ == "__main__":
    main()
