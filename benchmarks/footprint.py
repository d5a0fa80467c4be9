"""
Footprint and latency of a running agent, measured by hand (not in CI).

Starts `twistd mep-emulator` (liveness interval forced to 2 s, so 50 services beat about
33 times a second: ~2000x the load of the real MEP's 60 s) and `twistd mep-agent` with 50
services on 127.0.0.1, lets them run, then reports the agent's resident memory, its CPU use
over the measured window, the heartbeats the emulator counted, and the latency of the
app API's token and (cached) discovery endpoints over sequential requests.

    .venv/bin/python -m benchmarks.footprint [--seconds 30] [--requests 2000]

Write the output into benchmarks/RESULTS.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import yaml

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for(check: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("benchmark: condition not met in time")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def latencies(port: int, path: str, count: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, response.status
    conn.close()
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
        "requests_per_s": round(count / (sum(samples) / 1000), 1),
    }


def write_services(work: str, count: int) -> None:
    """C{count} services with a 2 s liveness interval in work/conf/app_instance_info.yaml."""
    os.makedirs(os.path.join(work, "conf"))
    services = [
        {
            "serName": f"svc{i}",
            "version": "1",
            "state": "ACTIVE",
            "serializer": "JSON",
            "livenessInterval": 2,
            "transportInfo": {
                "type": "REST_HTTP",
                "protocol": "HTTP",
                "endpoint": {"uris": [f"http://svc{i}.local/"]},
            },
        }
        for i in range(count)
    ]
    with open(os.path.join(work, "conf", "app_instance_info.yaml"), "w") as f:
        yaml.safe_dump({"serviceInfoPosts": services}, f)


def twistd(args: list[str], work: str, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    """A twistd process in the foreground, its output into C{log}."""
    return subprocess.Popen(
        [sys.executable, TWISTD, "-n", "--pidfile=", *args],
        cwd=work,
        env=env,
        stdout=log,
        stderr=log,
    )


def measure(
    agent: subprocess.Popen[bytes], control: int, api: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Beats and CPU over the window, memory, API latencies, and the stop."""
    time.sleep(2)  # let the first round of beats settle
    state = json.loads(get(control, "/_emulator/state")[1])
    beats_before = sum(s["heartbeats"] for s in state["services"])
    cpu_before, wall_before = cpu_seconds(agent.pid), time.monotonic()
    time.sleep(args.seconds)
    cpu_used = cpu_seconds(agent.pid) - cpu_before
    wall = time.monotonic() - wall_before
    state = json.loads(get(control, "/_emulator/state")[1])
    beats = sum(s["heartbeats"] for s in state["services"]) - beats_before
    result: dict[str, Any] = {
        "services": args.services,
        "window_s": round(wall, 1),
        "heartbeats_in_window": beats,
        "heartbeats_per_s": round(beats / wall, 1),
        "suspended_services": [s["serName"] for s in state["services"] if s["state"] != "ACTIVE"],
        "agent_cpu_percent_of_one_core": round(100 * cpu_used / wall, 1),
        "agent_rss_mib": round(rss_mib(agent.pid), 1),
        "token_endpoint": latencies(api, "/mep-agent/v1/token", args.requests),
        "discovery_cached": latencies(api, "/mep-agent/v1/endpoint/svc7", args.requests),
    }
    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=30)
    result["stop_seconds"] = round(time.monotonic() - started, 2)
    result["left_registered"] = len(json.loads(get(control, "/_emulator/state")[1])["services"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--services", type=int, default=50)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="mep-bench-")
    write_services(work, args.services)
    https, control, api, ops = (free_port() for _ in range(4))
    env = dict(os.environ, PYTHONPATH=CHECKOUT)
    log = open(os.path.join(work, "processes.log"), "wb")
    cert_dir = os.path.join(work, "mep")
    emulator = twistd(
        ["mep-emulator", "--port", str(https), "--http-port", str(control)]
        + ["--cert-dir", cert_dir, "--liveness-interval", "2"],
        work,
        env,
        log,
    )
    agent = None
    try:
        wait_for(lambda: get(control, "/_emulator/state")[0] == 200)
        agent_env = dict(
            env,
            MEP_IP="127.0.0.1",
            MEP_APIGW_PORT=str(https),
            CA_CERT=os.path.join(cert_dir, "ca.crt"),
            CA_CERT_DOMAIN_NAME="edgegallery",
            AK="QVUJMSUMgS0VZLS0tLS0",
            SK="DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc",
            APPINSTID="891c2bba-f1f2-40bd-a97e-9bebbafcc964",
            MEP_AGENT_LISTEN=f"tcp:{api}:interface=127.0.0.1",
            MEP_AGENT_OPS_LISTEN=f"tcp:{ops}:interface=127.0.0.1",
        )
        agent = twistd(["mep-agent"], work, agent_env, log)
        wait_for(lambda: get(ops, "/readyz")[0] == 200)
        print(json.dumps(measure(agent, control, api, args), indent=2))
    finally:
        for process in (agent, emulator):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    main()
