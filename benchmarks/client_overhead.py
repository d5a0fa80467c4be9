"""
What treq costs per MEP exchange, in process: a heartbeat-shaped PUT through the agent's
MEP client (`mp1.http.MepHttp`: treq, prepared URLs, bounded reading) against the same PUT
through a bare `Agent.request` and `readBody`, both over treq's in-memory agent answering
from a twisted.web resource (the server's share is the same in both). Alternating rounds;
prints microseconds per exchange and the difference.

    .venv/bin/python -m benchmarks.client_overhead [--exchanges 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import ensureDeferred
from twisted.web.client import readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request

from mep_agent.mp1.http import BytesProducer, MepHttp, url_bytes

URL = (
    "https://127.0.0.1:8443/mep/mec_service_mgmt/v1/applications/"
    "891c2bba-f1f2-40bd-a97e-9bebbafcc964/services/5a1c07d4/liveness"
)
HEADERS = {"Authorization": "Bearer " + "t" * 40, "Content-Type": "application/json"}
BODY = b'{"state": "ACTIVE"}'


class Liveness(Resource):
    """Answers every PUT as a MEP answers a heartbeat."""

    isLeaf = True

    def render_PUT(self, request: Request) -> bytes:
        """The body read, a small JSON answer."""
        if request.content is not None:
            request.content.read()
        request.setHeader(b"Content-Type", b"application/json")
        return BODY


def through_treq(agent: RequestTraversalAgent, count: int) -> None:
    """C{count} exchanges through the agent's MEP client."""
    http = MepHttp(agent)
    for _ in range(count):
        d = ensureDeferred(http.exchange("PUT", URL, HEADERS, BODY, 1 << 20))
        agent.flush()
        assert d.called


def through_agent(agent: RequestTraversalAgent, count: int) -> None:
    """C{count} exchanges through a bare Agent.request and readBody."""
    headers = Headers({name: [value] for name, value in HEADERS.items()})
    for _ in range(count):
        d = agent.request(b"PUT", url_bytes(URL), headers, BytesProducer(BODY))
        d.addCallback(readBody)
        agent.flush()
        assert d.called


def per_exchange(way: Callable[[RequestTraversalAgent, int], None], count: int) -> float:
    """Microseconds per exchange, one round."""
    agent = RequestTraversalAgent(Liveness())
    way(agent, 200)  # warm up
    started = time.perf_counter()
    way(agent, count)
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exchanges", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    treq_us, agent_us = [], []
    for _ in range(options.rounds):
        treq_us.append(per_exchange(through_treq, options.exchanges))
        agent_us.append(per_exchange(through_agent, options.exchanges))
    treq_median, agent_median = statistics.median(treq_us), statistics.median(agent_us)
    print("| way | µs per exchange (median) |\n| --- | --- |")
    print(f"| MEP client (treq) | {treq_median:.1f} |")
    print(f"| bare Agent + readBody | {agent_median:.1f} |")
    print(f"| treq's share | {treq_median - agent_median:.1f} |")


if __name__ == "__main__":
    main()
