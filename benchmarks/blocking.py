"""
What idle blocking discovery requests cost: a real `twistd mep-agent` against
`twistd mep-emulator` on 127.0.0.1, then N connections each holding
`GET /mep-agent/v1/endpoint/svc0?wait=300s` with the current index. Reports the agent's
resident memory and open descriptors before and with them, the MEP requests they caused,
and /token's rate (wrk, one connection, medians of rounds) before, with and after them;
then the same connections against a bare twisted.web resource that holds every request (the floor).
Run by hand (not in CI); bounded in time; ends only the processes it started.

    .venv/bin/python -m benchmarks.blocking [--waiters 10000] [--seconds 3] [--out blocking.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.perf import wrk
from benchmarks.soak import (
    Process,
    agent_env,
    request,
    resources,
    services_yaml,
    start_emulator,
    write_report,
)

HELD = (
    b"GET /mep-agent/v1/endpoint/svc0?wait=300s HTTP/1.1\r\nHost: a\r\n"
    b"X-Mep-Agent-Index: 1\r\n\r\n"
)
# The floor: a bare twisted.web resource that holds every request (NOT_DONE_YET).
FLOOR = """
from twisted.internet import reactor
from twisted.web import resource, server

held = []

class Hold(resource.Resource):
    isLeaf = True
    def render(self, request):
        held.append(request)
        return server.NOT_DONE_YET

port = reactor.listenTCP(0, server.Site(Hold()), interface="127.0.0.1", backlog=4096)
print(port.getHost().port, flush=True)
reactor.run()
"""


def hold(port: int, count: int, sockets: list[socket.socket]) -> selectors.BaseSelector:
    """Open C{count} connections, each sending one blocking query; a selector over them."""
    selector = selectors.DefaultSelector()
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(HELD)
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
        sockets.append(s)
    return selector


def settled_rss(pid: int, deadline: float = 30.0) -> tuple[float, int]:
    """(RSS, descriptors) once the RSS has not grown for a second (or at the deadline)."""
    end = time.monotonic() + deadline
    last = resources(pid)
    while time.monotonic() < end:
        time.sleep(1)
        now = resources(pid)
        if now[0] <= last[0]:
            return now
        last = now
    return last


def floor_rss_per_1000(count: int) -> float:
    """MiB per 1,000 requests a bare twisted.web resource holds, for the same client."""
    floor = subprocess.Popen([sys.executable, "-c", FLOOR], stdout=subprocess.PIPE, text=True)
    sockets: list[socket.socket] = []
    try:
        assert floor.stdout is not None
        port = int(floor.stdout.readline())
        before = settled_rss(floor.pid)[0]
        hold(port, count, sockets)
        with_them = settled_rss(floor.pid)[0]
        return round((with_them - before) / count * 1000, 2)
    finally:
        for s in sockets:
            s.close()
        floor.kill()
        floor.wait()


def token_rounds(port: int, seconds: int, rounds: int = 3) -> list[float]:
    """Requests per second of C{rounds} wrk runs on /token over one connection."""
    url = f"http://127.0.0.1:{port}/mep-agent/v1/token"
    return [wrk(url, 1, seconds)["rps"] for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=10000)
    parser.add_argument("--seconds", type=int, default=3, help="per wrk round on /token")
    parser.add_argument("--out", default="blocking.json")
    options = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = options.waiters + 200
    if hard < need:
        raise SystemExit(f"blocking: the open-files limit {hard} is below {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))  # inherited
    work = tempfile.mkdtemp(prefix="mep-blocking-")
    conf = os.path.join(work, "conf")
    os.makedirs(conf)
    services_yaml(os.path.join(conf, "app_instance_info.yaml"), 1, interval=0)
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    emulator = start_emulator(work, base)
    agent = None
    sockets: list[socket.socket] = []
    report: dict[str, object] = {"waiters": options.waiters}
    try:
        control = int(emulator.wait_for(rb"serving http://127.0.0.1:(\d+)").group(1))
        emulator.wait_for(rb"serving https://127.0.0.1:(\d+)")
        env = dict(base, **agent_env(os.path.join(work, "mep", "agent.env")))
        env.update(
            MEP_AGENT_CONF_DIR=conf,
            MEP_AGENT_LISTEN="tcp:0:interface=127.0.0.1",
            MEP_AGENT_OPS_LISTEN="none",
            MEP_AGENT_MAX_CONNECTIONS=str(options.waiters + 100),
            MEP_AGENT_MAX_CONNECTIONS_PER_PEER=str(options.waiters + 100),
        )
        agent = Process(["mep-agent"], env, work)
        api = int(agent.wait_for(rb"--listen listening on [0-9.]+:(\d+)").group(1))
        agent.wait_for(rb"confirmed READY", timeout=60)
        status, _ = request(api, "GET", "/mep-agent/v1/endpoint/svc0")
        assert status == 200, status
        token_rounds(api, 1, rounds=1)  # warm up
        quiet = token_rounds(api, options.seconds)
        rss_before, fds_before = resources(agent.proc.pid)
        _, raw = request(control, "GET", "/_emulator/state")
        discovery_before = sum(r["kind"] == "discovery" for r in json.loads(raw)["requests"])

        selector = hold(api, options.waiters, sockets)
        rss_with, fds_with = settled_rss(agent.proc.pid)  # the agent has taken them all
        answered = len(selector.select(timeout=0))
        loaded = token_rounds(api, options.seconds)
        _, raw = request(control, "GET", "/_emulator/state")
        discovery_with = sum(r["kind"] == "discovery" for r in json.loads(raw)["requests"])
        report.update(
            answered_early=answered,
            rss_mib_before=round(rss_before, 1),
            rss_mib_with=round(rss_with, 1),
            rss_mib_per_1000=round((rss_with - rss_before) / options.waiters * 1000, 2),
            fds_before=fds_before,
            fds_with=fds_with,
            mep_discovery_requests_caused=discovery_with - discovery_before,
        )
        for s in sockets:
            s.close()
        sockets.clear()
        settled_rss(agent.proc.pid)  # the agent has dropped them
        quiet += token_rounds(api, options.seconds)  # quiet before and after: the drift
        quiet_rps = statistics.median(quiet)
        loaded_rps = statistics.median(loaded)
        report.update(
            token_rps_quiet=round(quiet_rps),
            token_rps_with=round(loaded_rps),
            token_rps_with_to_quiet=round(loaded_rps / quiet_rps, 2),
        )
        report["floor_rss_mib_per_1000"] = floor_rss_per_1000(options.waiters)
    finally:
        for s in sockets:
            s.close()
        if agent is not None:
            agent.end()
        emulator.end()
    write_report(options.out, report)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


if __name__ == "__main__":
    main()
