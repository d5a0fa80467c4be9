"""
What idle blocking discovery requests cost: a real `twistd mep-agent` against
`twistd mep-emulator` on 127.0.0.1, then N connections each holding
`GET /mep-agent/v1/endpoint/svc0?wait=300s` with the current index. Reports the agent's
resident memory and open descriptors before and with them, the MEP requests they caused,
and the /token latency (sequential, keep-alive) without and with them.
Run by hand (not in CI); bounded in time; ends only the processes it started.

    .venv/bin/python benchmarks/blocking.py [--waiters 10000] [--out blocking.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soak import (  # noqa: E402 (a sibling script)
    Process,
    agent_env,
    request,
    resources,
    services_yaml,
    start_emulator,
    write_report,
)


def token_latency(port: int, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("GET", "/mep-agent/v1/token")
            conn.getresponse().read()
            times.append(time.perf_counter() - started)
    finally:
        conn.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=2000)
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
        )
        agent = Process(["mep-agent"], env, work)
        api = int(agent.wait_for(rb"--listen listening on [0-9.]+:(\d+)").group(1))
        agent.wait_for(rb"confirmed READY", timeout=60)
        status, _ = request(api, "GET", "/mep-agent/v1/endpoint/svc0")
        assert status == 200, status
        token_latency(api, 200)  # warm up
        quiet = token_latency(api, options.requests)
        rss_before, fds_before = resources(agent.proc.pid)
        _, raw = request(control, "GET", "/_emulator/state")
        discovery_before = sum(r["kind"] == "discovery" for r in json.loads(raw)["requests"])

        held = (
            b"GET /mep-agent/v1/endpoint/svc0?wait=300s HTTP/1.1\r\nHost: a\r\n"
            b"X-Mep-Agent-Index: 1\r\n\r\n"
        )
        selector = selectors.DefaultSelector()
        for _ in range(options.waiters):
            s = socket.create_connection(("127.0.0.1", api))
            s.sendall(held)
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ)
            sockets.append(s)
        time.sleep(3)  # let the agent take them all
        answered = len(selector.select(timeout=0))
        rss_with, fds_with = resources(agent.proc.pid)
        loaded = token_latency(api, options.requests)
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
            token_p50_ms_quiet=round(statistics.median(quiet) * 1000, 3),
            token_p50_ms_with=round(statistics.median(loaded) * 1000, 3),
            token_rps_quiet=round(len(quiet) / sum(quiet)),
            token_rps_with=round(len(loaded) / sum(loaded)),
        )
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
