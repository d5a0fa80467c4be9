"""
Where a GET /mep-agent/v1/token spends its time inside the agent, without the network: the
request bytes go through the API listener's real protocol stack (ThrottlingFactory,
HardenedSite, the API resource) on a StringTransport, with a token that never expires.
Prints microseconds per request and, with --profile, cProfile's top functions. Run by hand.

    .venv/bin/python benchmarks/token_profile.py [--requests 5000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet.task import Clock  # noqa: E402 (after the path above)
from twisted.internet.testing import StringTransport  # noqa: E402

from mep_agent.api import AgentAPI  # noqa: E402
from mep_agent.mep import Token  # noqa: E402
from mep_agent.secret import Secret  # noqa: E402
from mep_agent.site import serve  # noqa: E402

REQUEST = b"GET /mep-agent/v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


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
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    clock = Clock()
    api = AgentAPI(FixedTokens(), None, clock)  # type: ignore[arg-type]
    factory = serve(api.resource(), clock)
    factory.doStart()
    protocol = factory.buildProtocol(("127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)

    def run(n: int) -> None:
        for _ in range(n):
            protocol.dataReceived(REQUEST)
            transport.clear()

    run(200)  # warm up
    started = time.perf_counter()
    run(options.requests)
    elapsed = time.perf_counter() - started
    print(f"{elapsed / options.requests * 1e6:.1f} us per request")
    if options.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, options.requests)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)


if __name__ == "__main__":
    main()
