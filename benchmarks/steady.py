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
from benchmarks.soak import request, resources, services_yaml, write_report

INTERVAL = 60
SAMPLE_EVERY = 30.0


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
        "samples": [],
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
        for path in ("/mep-agent/v1/token", "/mep-agent/v1/endpoint/svc0"):
            loads.append(
                subprocess.Popen(
                    [
                        "wrk",
                        "-t1",
                        f"-c{options.connections}",
                        f"-d{seconds}s",
                        f"http://127.0.0.1:{api}{path}",
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        started = time.monotonic()
        first = bench.state()
        beats_at_start = sum(s["heartbeats"] for s in first["services"])
        suspended = 0
        while time.monotonic() - started < seconds:
            time.sleep(SAMPLE_EVERY)
            state = bench.state()
            rss, fds = resources(agent.proc.pid)
            bad = sum(s["state"] == "SUSPENDED" for s in state["services"])
            suspended += bad
            report["samples"].append(
                {
                    "t": round(time.monotonic() - started),
                    "rss_mib": round(rss, 1),
                    "fds": fds,
                    "suspended": bad,
                    "tls_connections": state["connections"].get("https", 0),
                }
            )
        elapsed = time.monotonic() - started
        state = bench.state()
        beats = sum(s["heartbeats"] for s in state["services"]) - beats_at_start
        requests = 0
        for load in loads:
            out, _ = load.communicate(timeout=60)
            requests += int(out.split(" requests in ")[0].split()[-1])
        samples = report["samples"]
        warm = next((s for s in samples if s["t"] >= 60), samples[0])
        report.update(
            requests_served=requests,
            requests_per_second=round(requests / elapsed),
            rss_mib_after_1_min=warm["rss_mib"],
            rss_mib_end=samples[-1]["rss_mib"],
            rss_growth_mib=round(samples[-1]["rss_mib"] - warm["rss_mib"], 1),
            rss_max_mib=max(s["rss_mib"] for s in samples),
            fds_after_1_min=warm["fds"],
            fds_end=samples[-1]["fds"],
            beats_per_interval=round(beats / 50 / (elapsed / INTERVAL), 2),
            suspended_samples=suspended,
            tls_connections_total=state["connections"].get("https", 0),
            services_active=sum(s["state"] == "ACTIVE" for s in state["services"]),
        )
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
