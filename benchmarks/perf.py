"""
The performance figures of the performance issue, measured side by side with their floors
in one run on 127.0.0.1. Run by hand (not in CI); bounded in time; it ends only the
processes it started. Needs `wrk` (Debian's package).

  * /token throughput and p99 at 1, 16 and 64 connections (wrk), against a bare
    twisted.web resource serving the same body in a process of its own (the floor);
  * spawn -> first token 200 and spawn -> 50 services registered (median of --spawns);
  * resident memory after registration, against a process that only imports the reactor,
    twisted.web server and client, pyOpenSSL and service_identity (the import floor);
  * heartbeats per interval and suspensions, 50 services at a 3 s interval;
  * CPU for 50 services at a 1 s interval, and the TLS connections the MEP accepted.

Writes the figures as JSON to --out and prints them as a Markdown table.

    .venv/bin/python benchmarks/perf.py [--seconds 5] [--spawns 5] [--out perf.json]
        [--agent-env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soak import Process, agent_env, request, resources, start_emulator  # noqa: E402 (a sibling script)

FLOOR = """
import sys
from twisted.internet import reactor
from twisted.web import resource, server

BODY = sys.argv[1].encode()

class Token(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return BODY

port = reactor.listenTCP(0, server.Site(Token()), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""
IMPORT_FLOOR = """
import os, time
from twisted.internet import reactor
import twisted.web.server, twisted.web.client
import OpenSSL.SSL, service_identity
print(os.getpid(), flush=True)
time.sleep(30)
"""


def wrk(url: str, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1" if connections < 4 else "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def services_yaml(path: str, count: int) -> None:
    services = [
        {
            "serName": f"svc{i}",
            "version": "1",
            "state": "ACTIVE",
            "serializer": "JSON",
            "livenessInterval": 60,
            "transportInfo": {
                "type": "REST_HTTP",
                "protocol": "HTTP",
                "endpoint": {"uris": [f"http://svc{i}.local/"]},
            },
        }
        for i in range(count)
    ]
    with open(path, "w") as f:
        yaml.safe_dump({"serviceInfoPosts": services}, f)


class Bench:
    def __init__(self, work: str, base: dict[str, str], agent_extra: dict[str, str]) -> None:
        self.work = work
        self.base = base
        self.agent_extra = agent_extra
        self.emulator: Process | None = None
        self.control = 0

    def start_emulator(self, interval: int) -> None:
        self.stop_emulator()
        self.emulator = start_emulator(self.work, self.base, "--liveness-interval", str(interval))
        self.control = int(self.emulator.wait_for(rb"serving http://127.0.0.1:(\d+)").group(1))
        self.emulator.wait_for(rb"serving https://")

    def stop_emulator(self) -> None:
        if self.emulator is not None:
            self.emulator.end()
            self.emulator = None

    def state(self) -> dict[str, Any]:
        _, raw = request(self.control, "GET", "/_emulator/state")
        state: dict[str, Any] = json.loads(raw)
        return state

    def agent(self) -> tuple[Process, int]:
        env = dict(self.base, **agent_env(os.path.join(self.work, "mep", "agent.env")))
        env.update(
            MEP_AGENT_CONF_DIR=os.path.join(self.work, "conf"),
            MEP_AGENT_LISTEN="tcp:0:interface=127.0.0.1",
            MEP_AGENT_OPS_LISTEN="none",
        )
        env.update(self.agent_extra)
        agent = Process(["mep-agent"], env, self.work)
        api = int(agent.wait_for(rb"--listen listening on [0-9.]+:(\d+)").group(1))
        return agent, api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--spawns", type=int, default=5)
    parser.add_argument("--out", default="perf.json")
    parser.add_argument(
        "--agent-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra environment variable for the agent (e.g. MEP_AGENT_ACCESS_LOG=true)",
    )
    options = parser.parse_args()
    work = tempfile.mkdtemp(prefix="mep-perf-")
    os.makedirs(os.path.join(work, "conf"))
    services_yaml(os.path.join(work, "conf", "app_instance_info.yaml"), 50)
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    bench = Bench(work, base, dict(item.split("=", 1) for item in options.agent_env))
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "throughput": {}}
    floor = None
    try:
        bench.start_emulator(60)
        # -- spawn -> first token, spawn -> 50 registered ------------------------------
        to_token, to_registered = [], []
        for _ in range(options.spawns):
            request(bench.control, "POST", "/_emulator/restart")
            started = time.monotonic()
            agent, api = bench.agent()
            while request(api, "GET", "/mep-agent/v1/token")[0] != 200:
                time.sleep(0.005)
            to_token.append(time.monotonic() - started)
            while len(bench.state()["services"]) < 50:
                time.sleep(0.01)
            to_registered.append(time.monotonic() - started)
            agent.end()
        report["spawn_to_token_s"] = round(statistics.median(to_token), 3)
        report["spawn_to_50_registered_s"] = round(statistics.median(to_registered), 3)

        # -- memory and /token throughput ------------------------------------------------
        request(bench.control, "POST", "/_emulator/restart")
        agent, api = bench.agent()
        agent.wait_for(rb"confirmed READY", timeout=60)
        time.sleep(1)
        report["agent_rss_mib"] = round(resources(agent.proc.pid)[0], 1)
        imports = subprocess.Popen(
            [sys.executable, "-c", IMPORT_FLOOR], stdout=subprocess.PIPE, text=True
        )
        assert imports.stdout is not None
        pid = int(imports.stdout.readline())
        time.sleep(0.5)
        report["import_floor_rss_mib"] = round(resources(pid)[0], 1)
        imports.kill()
        imports.wait()
        report["rss_ratio"] = round(report["agent_rss_mib"] / report["import_floor_rss_mib"], 2)

        _, body = request(api, "GET", "/mep-agent/v1/token")
        floor = subprocess.Popen(
            [sys.executable, "-c", FLOOR, body.decode()], stdout=subprocess.PIPE, text=True
        )
        assert floor.stdout is not None
        floor_port = int(floor.stdout.readline())
        for connections in (1, 16, 64):
            floor_run = wrk(f"http://127.0.0.1:{floor_port}/", connections, options.seconds)
            agent_run = wrk(
                f"http://127.0.0.1:{api}/mep-agent/v1/token", connections, options.seconds
            )
            report["throughput"][connections] = {
                "agent": agent_run,
                "floor": floor_run,
                "ratio": round(agent_run["rps"] / floor_run["rps"], 2),
                "p99_ratio": round(agent_run["p99_ms"] / max(floor_run["p99_ms"], 0.001), 2),
            }
        agent.end()

        # -- heartbeats per interval (3 s) and CPU at 1 s --------------------------------
        for interval, seconds in ((3, 30), (1, 20)):
            bench.start_emulator(interval)
            agent, api = bench.agent()
            agent.wait_for(rb"confirmed READY", timeout=60)
            time.sleep(interval + 1)  # the steady state: past every service's first beat
            before = {s["serInstanceId"]: s["heartbeats"] for s in bench.state()["services"]}
            connections_before = bench.state()["connections"].get("https", 0)
            cpu_before = cpu_seconds(agent.proc.pid)
            suspended = 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                suspended += sum(s["state"] == "SUSPENDED" for s in bench.state()["services"])
                time.sleep(0.5)
            state = bench.state()
            beats = sum(
                s["heartbeats"] - before.get(s["serInstanceId"], 0) for s in state["services"]
            )
            report[f"interval_{interval}s"] = {
                "beats_per_interval": round(beats / 50 / (seconds / interval), 2),
                "suspended_samples": suspended,
                "cpu_percent": round(
                    (cpu_seconds(agent.proc.pid) - cpu_before) / seconds * 100, 1
                ),
                "tls_connections": state["connections"].get("https", 0) - connections_before,
                # since the emulator started: token, 50 registrations, every beat
                "tls_connections_total": state["connections"].get("https", 0),
            }
            agent.end()
    finally:
        if floor is not None:
            floor.kill()
            floor.wait()
        bench.stop_emulator()
    with open(options.out, "w") as f:
        json.dump(report, f, indent=2)
    print(table(report))


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table: each figure, and its ratio to the floor where one is."""
    rows = ["| measure | agent | floor | ratio |", "| --- | --- | --- | --- |"]
    for connections, run in report["throughput"].items():
        agent, floor = run["agent"], run["floor"]
        rows.append(
            f"| /token, {connections} connections | {agent['rps']:.0f} req/s, p99 "
            f"{agent['p99_ms']} ms | {floor['rps']:.0f} req/s, p99 {floor['p99_ms']} ms | "
            f"{run['ratio']} (p99 {run['p99_ratio']}) |"
        )
    rows.append(f"| spawn → first token 200 | {report['spawn_to_token_s']} s | | |")
    rows.append(f"| spawn → 50 registered | {report['spawn_to_50_registered_s']} s | | |")
    rows.append(
        f"| resident memory | {report['agent_rss_mib']} MiB | "
        f"{report['import_floor_rss_mib']} MiB | {report['rss_ratio']} |"
    )
    for key in ("interval_3s", "interval_1s"):
        beats = report.get(key)
        if beats:
            rows.append(
                f"| {key}: beats per interval, SUSPENDED samples, CPU, new / all TLS "
                f"connections | {beats['beats_per_interval']}, {beats['suspended_samples']}, "
                f"{beats['cpu_percent']} %, {beats['tls_connections']} / "
                f"{beats['tls_connections_total']} | | |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
