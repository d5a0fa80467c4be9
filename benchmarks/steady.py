"""
The steady state under load, for the performance issue's long-run figures: 50 services at
the real 60 s liveness interval while wrk loads `/token` and a cached `/endpoint` for the
whole run. Samples the agent's resident memory and descriptors every 30 s and reports their
growth after the first minute; heartbeats per interval; samples with a SUSPENDED service;
the TLS connections the emulator accepted (handshakes) over the whole run, start included.
Run by hand (not in CI); bounded in time; it ends only the processes it started. Needs wrk.

    .venv/bin/python -m benchmarks.steady [--minutes 10] [--connections 4] [--out steady.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from typing import Any

from benchmarks.perf import Bench
from benchmarks.soak import Process, request, resources, services_yaml, write_report

INTERVAL = 60
SAMPLE_EVERY = 30.0


def start_load(api: int, connections: int, seconds: int) -> list[subprocess.Popen[str]]:
    """Two wrk processes, on /token and on a cached /endpoint, for C{seconds}."""
    loads = []
    for path in ("/mep-agent/v1/token", "/mep-agent/v1/endpoint/svc0"):
        url = f"http://127.0.0.1:{api}{path}"
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
        loads.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    return loads


def watch(bench: Bench, agent: Process, seconds: int) -> tuple[list[dict[str, Any]], int, float]:
    """Samples every SAMPLE_EVERY s for C{seconds}: (samples, beats, seconds elapsed)."""
    samples = []
    started = time.monotonic()
    beats_at_start = sum(s["heartbeats"] for s in bench.state()["services"])
    while time.monotonic() - started < seconds:
        time.sleep(SAMPLE_EVERY)
        state = bench.state()
        rss, fds = resources(agent.proc.pid)
        samples.append(
            {
                "t": round(time.monotonic() - started),
                "rss_mib": round(rss, 1),
                "fds": fds,
                "suspended": sum(s["state"] == "SUSPENDED" for s in state["services"]),
                "tls_connections": state["connections"].get("https", 0),
            }
        )
    beats = sum(s["heartbeats"] for s in bench.state()["services"]) - beats_at_start
    return samples, beats, time.monotonic() - started


def summary(
    samples: list[dict[str, Any]], beats: int, elapsed: float, requests: int, state: Any
) -> dict[str, Any]:
    """The figures of the run: growth after the first minute, beats, suspensions."""
    warm = next((s for s in samples if s["t"] >= 60), samples[0])
    return dict(
        requests_served=requests,
        requests_per_second=round(requests / elapsed),
        rss_mib_after_1_min=warm["rss_mib"],
        rss_mib_end=samples[-1]["rss_mib"],
        rss_growth_mib=round(samples[-1]["rss_mib"] - warm["rss_mib"], 1),
        rss_max_mib=max(s["rss_mib"] for s in samples),
        fds_after_1_min=warm["fds"],
        fds_end=samples[-1]["fds"],
        beats_per_interval=round(beats / 50 / (elapsed / INTERVAL), 2),
        suspended_samples=sum(s["suspended"] for s in samples),
        tls_connections_total=state["connections"].get("https", 0),
        services_active=sum(s["state"] == "ACTIVE" for s in state["services"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--connections", type=int, default=4, help="per wrk (two of them)")
    parser.add_argument("--out", default="steady.json")
    options = parser.parse_args()
    work = tempfile.mkdtemp(prefix="mep-steady-")
    os.makedirs(os.path.join(work, "conf"))
    services_yaml(os.path.join(work, "conf", "app_instance_info.yaml"), 50)
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    bench = Bench(work, base, {})
    seconds = int(options.minutes * 60)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "minutes": options.minutes,
        "interval_s": INTERVAL,
    }
    loads: list[subprocess.Popen[str]] = []
    agent = None
    try:
        bench.start_emulator(INTERVAL)
        agent, api = bench.agent()
        agent.wait_for(rb"confirmed READY", timeout=60)
        while len(bench.state()["services"]) < 50:
            time.sleep(0.1)
        assert request(api, "GET", "/mep-agent/v1/endpoint/svc0")[0] == 200
        loads = start_load(api, options.connections, seconds)
        samples, beats, elapsed = watch(bench, agent, seconds)
        requests = 0
        for load in loads:
            out, _ = load.communicate(timeout=60)
            requests += int(out.split(" requests in ")[0].split()[-1])
        report["samples"] = samples
        report.update(summary(samples, beats, elapsed, requests, bench.state()))
    finally:
        for load in loads:
            if load.poll() is None:
                load.kill()
                load.wait()
        if agent is not None:
            agent.end()
        bench.stop_emulator()
    write_report(options.out, report, leave_out=("samples",))


if __name__ == "__main__":
    main()
