"""
The performance figures of the performance issue, measured side by side with their floors
in one run on 127.0.0.1. Run by hand (not in CI); bounded in time; it ends only the
processes it started. Needs `wrk` (Debian's package).

  * /token throughput and p99 at 1, 16 and 64 connections (wrk), against a bare
    twisted.web resource serving the same body in a process of its own (the floor), and a
    cached /endpoint at the same connections against /token;
  * spawn -> first token 200 and spawn -> 50 services registered (median of --spawns);
  * resident memory after registration, against a process that only imports the reactor,
    twisted.web server and client, pyOpenSSL and service_identity (the import floor);
  * heartbeats per interval and suspensions, 50 services at a 3 s interval, then again
    with every liveness answer delayed by 40 % of the interval;
  * CPU for 50 services at a 1 s interval, against a bare twisted.web Agent sending the
    same 50 PUTs a second over TLS (the client floor), and the TLS connections the MEP
    accepted.

Writes the figures as JSON to --out and prints them as a Markdown table.

    .venv/bin/python -m benchmarks.perf [--seconds 5] [--spawns 5] [--rounds 3] [--out perf.json]
        [--agent-env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.soak import Process, agent_env, request, resources, services_yaml, start_emulator

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
CLIENT_FLOOR = """
import os, sys, time
from twisted.internet import reactor, ssl, task
from twisted.web import resource, server
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.internet.defer import succeed
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

certs, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if sys.argv[4] == "server":
    class Liveness(resource.Resource):
        isLeaf = True
        def render_PUT(self, request):
            request.content.read()
            request.setHeader(b"Content-Type", b"application/json")
            return b'{"state": "ACTIVE"}'
    key = open(os.path.join(certs, "server.key")).read()
    cert = open(os.path.join(certs, "server.crt")).read()
    options = ssl.PrivateCertificate.loadPEM(key + cert).options()
    port = reactor.listenSSL(0, server.Site(Liveness()), options, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()
    raise SystemExit
port = int(sys.argv[4])
ca = ssl.Certificate.loadPEM(open(os.path.join(certs, "ca.crt")).read())

@implementer(IPolicyForHTTPS)
class Policy:
    def creatorForNetloc(self, hostname, port):
        return ssl.optionsForClientTLS(sys.argv[5], trustRoot=ca)

class Body:
    length = 19
    def __init__(self): pass
    def startProducing(self, consumer):
        consumer.write(b'{"state": "ACTIVE"}')
        return succeed(None)
    def pauseProducing(self): pass
    def resumeProducing(self): pass
    def stopProducing(self): pass

pool = HTTPConnectionPool(reactor)
agent = Agent(reactor, Policy(), pool=pool)
url = b"https://127.0.0.1:%d/liveness" % port
headers = Headers({b"Content-Type": [b"application/json"]})

answered = []

def beat():
    d = agent.request(b"PUT", url, headers, Body()).addCallback(readBody)
    d.addCallback(answered.append)

def cpu():
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

start = []
def mark():
    start[:] = [cpu(), time.monotonic(), len(answered)]
def report():
    used = (cpu() - start[0]) / (time.monotonic() - start[1]) * 100
    print(round(used, 1), len(answered) - start[2], flush=True)
    reactor.stop()
task.LoopingCall(beat).start(1 / rate)
reactor.callLater(2, mark)
reactor.callLater(2 + seconds, report)
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


def client_floor_cpu(certs: str, name: str, rate: int, seconds: int) -> float:
    """CPU % of a bare twisted.web Agent sending C{rate} PUTs a second over TLS."""
    server = subprocess.Popen(
        [sys.executable, "-c", CLIENT_FLOOR, certs, "0", "0", "server"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        out = subprocess.run(
            [sys.executable, "-c", CLIENT_FLOOR, certs, str(rate), str(seconds), port, name],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
        used, answered = out.split()
        assert int(answered) >= rate * seconds * 0.9, f"the client floor got {answered} answers"
        return float(used)
    finally:
        server.kill()
        server.wait()


def spawn_import_floor() -> float:
    """Seconds from spawning a process to its having imported the import floor."""
    started = time.monotonic()
    imports = subprocess.Popen(
        [sys.executable, "-c", IMPORT_FLOOR], stdout=subprocess.PIPE, text=True
    )
    assert imports.stdout is not None
    imports.stdout.readline()
    elapsed = time.monotonic() - started
    imports.kill()
    imports.wait()
    return elapsed


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def token_status(port: int) -> int:
    """GET /token's status, 0 while nothing listens on the port yet."""
    try:
        return request(port, "GET", "/mep-agent/v1/token", timeout=5)[0]
    except ConnectionRefusedError:
        return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        self.interval = interval
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

    def agent(self, port: int = 0) -> tuple[Process, int]:
        """An agent; its API port is C{port}, or the one it reports listening on."""
        env = dict(self.base, **agent_env(os.path.join(self.work, "mep", "agent.env")))
        env.update(
            MEP_AGENT_CONF_DIR=os.path.join(self.work, "conf"),
            MEP_AGENT_LISTEN=f"tcp:{port}:interface=127.0.0.1",
            MEP_AGENT_OPS_LISTEN="none",
        )
        env.update(self.agent_extra)
        agent = Process(["mep-agent"], env, self.work)
        if port:
            return agent, port
        api = int(agent.wait_for(rb"--listen listening on [0-9.]+:(\d+)").group(1))
        return agent, api


def spawn_figures(bench: Bench, spawns: int) -> dict[str, float]:
    """spawn -> first token 200 and spawn -> 50 registered (medians), with the spawn floor."""
    to_token, to_registered = [], []
    for _ in range(spawns):
        request(bench.control, "POST", "/_emulator/restart")
        port = free_port()
        started = time.monotonic()
        agent, api = bench.agent(port)  # polled every 5 ms from the spawn on
        while token_status(api) != 200:
            time.sleep(0.005)
        to_token.append(time.monotonic() - started)
        while len(bench.state()["services"]) < 50:
            time.sleep(0.01)
        to_registered.append(time.monotonic() - started)
        agent.end()
    return {
        "spawn_to_token_s": round(statistics.median(to_token), 3),
        "spawn_to_50_registered_s": round(statistics.median(to_registered), 3),
        "spawn_import_floor_s": round(
            statistics.median(spawn_import_floor() for _ in range(spawns)), 3
        ),
    }


def memory_figures(agent: Process) -> dict[str, float]:
    """Resident memory after registration, against the import-only floor."""
    report = {"agent_rss_mib": round(resources(agent.proc.pid)[0], 1)}
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
    return report


def throughput_figures(api: int, floor_port: int, options: argparse.Namespace) -> dict[Any, Any]:
    """/token and a cached /endpoint against the floor, at 1, 16 and 64 connections."""
    endpoint = f"http://127.0.0.1:{api}/mep-agent/v1/endpoint/svc0"
    assert request(api, "GET", "/mep-agent/v1/endpoint/svc0")[0] == 200
    urls = {
        "floor": f"http://127.0.0.1:{floor_port}/",
        "agent": f"http://127.0.0.1:{api}/mep-agent/v1/token",
        "endpoint": endpoint,
    }
    figures: dict[Any, Any] = {}
    for connections in (1, 16, 64):
        # Alternating rounds, medians: one 5 s run moves by ±20 % on this machine.
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        for _ in range(options.rounds):
            for name, url in urls.items():
                runs[name].append(wrk(url, connections, options.seconds))
        floor_run, agent_run, endpoint_run = (
            {
                key: round(statistics.median(run[key] for run in runs[name]), 3)
                for key in ("rps", "p99_ms")
            }
            for name in urls
        )
        figures[connections] = {
            "agent": agent_run,
            "floor": floor_run,
            "endpoint": endpoint_run,
            "ratio": round(agent_run["rps"] / floor_run["rps"], 2),
            "p99_ratio": round(agent_run["p99_ms"] / max(floor_run["p99_ms"], 0.001), 2),
            "endpoint_to_token": round(endpoint_run["rps"] / agent_run["rps"], 2),
        }
    return figures


def heartbeat_figures(bench: Bench, interval: int, seconds: int, slow: bool) -> dict[str, Any]:
    """Beats per interval, suspensions, CPU and TLS connections for 50 services."""
    bench.start_emulator(interval)
    if slow:  # every liveness answer takes 40 % of the interval
        fault = {"kind": "heartbeat", "delay": 0.4 * interval, "count": 100000}
        request(bench.control, "POST", "/_emulator/faults", fault)
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
    beats = sum(s["heartbeats"] - before.get(s["serInstanceId"], 0) for s in state["services"])
    figures = {
        "beats_per_interval": round(beats / 50 / (seconds / interval), 2),
        "suspended_samples": suspended,
        "cpu_percent": round((cpu_seconds(agent.proc.pid) - cpu_before) / seconds * 100, 1),
        "tls_connections": state["connections"].get("https", 0) - connections_before,
        # since the emulator started: token, 50 registrations, every beat
        "tls_connections_total": state["connections"].get("https", 0),
    }
    agent.end()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--spawns", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per figure (median)")
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
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M")}
    floor = None
    try:
        bench.start_emulator(60)
        report.update(spawn_figures(bench, options.spawns))
        request(bench.control, "POST", "/_emulator/restart")
        agent, api = bench.agent()
        agent.wait_for(rb"confirmed READY", timeout=60)
        time.sleep(1)
        report.update(memory_figures(agent))
        _, body = request(api, "GET", "/mep-agent/v1/token")
        floor = subprocess.Popen(
            [sys.executable, "-c", FLOOR, body.decode()], stdout=subprocess.PIPE, text=True
        )
        assert floor.stdout is not None
        report["throughput"] = throughput_figures(api, int(floor.stdout.readline()), options)
        agent.end()
        for interval, seconds, slow in ((3, 30, False), (3, 30, True), (1, 20, False)):
            name = f"interval_{interval}s" + ("_slow" if slow else "")
            report[name] = heartbeat_figures(bench, interval, seconds, slow)
        names = agent_env(os.path.join(work, "mep", "agent.env"))
        report["client_floor_cpu_percent"] = client_floor_cpu(
            os.path.join(work, "mep"), names["CA_CERT_DOMAIN_NAME"], 50, 20
        )
        report["cpu_ratio"] = round(
            report["interval_1s"]["cpu_percent"] / max(report["client_floor_cpu_percent"], 0.1), 2
        )
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
    for connections, run in report["throughput"].items():
        endpoint = run["endpoint"]
        rows.append(
            f"| cached /endpoint, {connections} connections | {endpoint['rps']:.0f} req/s, "
            f"p99 {endpoint['p99_ms']} ms | (/token above) | {run['endpoint_to_token']} of "
            "/token |"
        )
    rows.append(
        f"| spawn → first token 200 | {report['spawn_to_token_s']} s | "
        f"{report['spawn_import_floor_s']} s (spawn → import floor imported) | |"
    )
    rows.append(f"| spawn → 50 registered | {report['spawn_to_50_registered_s']} s | | |")
    rows.append(
        f"| resident memory | {report['agent_rss_mib']} MiB | "
        f"{report['import_floor_rss_mib']} MiB | {report['rss_ratio']} |"
    )
    for key in ("interval_3s", "interval_3s_slow", "interval_1s"):
        beats = report.get(key)
        if beats:
            floor = ratio = ""
            if key == "interval_1s" and "client_floor_cpu_percent" in report:
                floor = f"{report['client_floor_cpu_percent']} % (bare Agent, 50 PUT/s)"
                ratio = f"CPU {report['cpu_ratio']}"
            rows.append(
                f"| {key}: beats per interval, SUSPENDED samples, CPU, new / all TLS "
                f"connections | {beats['beats_per_interval']}, {beats['suspended_samples']}, "
                f"{beats['cpu_percent']} %, {beats['tls_connections']} / "
                f"{beats['tls_connections_total']} | {floor} | {ratio} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
