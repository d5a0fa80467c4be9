"""
Soak: a real `twistd mep-agent` with 50 services against `twistd mep-emulator` on
127.0.0.1 for a fixed time, with MEP restarts, key rotations and random failures injected
through the emulator's control API, while the application API is polled with deadlines.
Run by hand (not in CI); bounded in time; it ends only the processes it started.

    .venv/bin/python -m benchmarks.soak [--minutes 10] [--out soak.json]

One fault at a time, every --fault-every seconds, none in the last 90 s. Reports resident
memory and open descriptors of the agent over time (growth from the first sample after
start-up), application requests that missed their deadline, unexpected 5xx answers of
/token, samples in which the MEP held suspended services, how many services are ACTIVE after
the quiet period, and the stop at the end (exit status, time, registrations left). Writes
JSON and prints a table.
"""

from __future__ import annotations

import argparse
import compileall
import http.client
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import yaml

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICES = 50
TOKEN_DEADLINE = 1.0  # /token never waits for the MEP
ENDPOINT_DEADLINE = 10.0 + 1.0 + 1.0  # --request-timeout + the agent's margin + slack
QUIET = 90.0  # no fault in the last seconds: the agent must be whole again by the end

# (weight, description, fault or control call): one is drawn every --fault-every seconds.
FAULTS: list[tuple[int, str, Any]] = [
    (3, "heartbeat 503 x50", {"kind": "heartbeat", "status": 503, "count": 50}),
    (2, "token 500 x3", {"kind": "token", "status": 500, "count": 3}),
    (2, "discovery slow 20 s", {"kind": "discovery", "delay": 20, "count": 3}),
    (2, "dropped connections x20", {"kind": "any", "drop": True, "count": 20}),
    (
        1,
        "discovery gzip bomb",
        {
            "kind": "discovery",
            "status": 200,
            "gzip": True,
            "raw": "[" + " " * (8 * 1024 * 1024) + "]",
        },
    ),
    (
        1,
        "discovery redirect",
        {
            "kind": "discovery",
            "status": 302,
            "raw": "",
            "headers": {"Location": "http://127.0.0.1:9/x"},
        },
    ),
    (2, "MEP restart (registrations lost)", "restart"),
    (2, "key rotation (tokens refused)", "rotate-key"),
]


def request(
    port: int, method: str, path: str, body: Any = None, timeout: float = 30
) -> tuple[int, bytes]:
    """One plain-HTTP request to 127.0.0.1 (the emulator's control API, the agent's APIs)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Process:
    """A twistd child whose output is collected by a thread; ended only by us, by PID."""

    def __init__(
        self, args: list[str], env: dict[str, str], cwd: str, path: str = CHECKOUT
    ) -> None:
        """@param path: the checkout the child imports (another one: an older agent)."""
        # The children import the checkout: compile it the way an install does, or with
        # PYTHONDONTWRITEBYTECODE (set on these machines) every spawn compiles it again.
        compileall.compile_dir(os.path.join(path, "mep_agent"), quiet=1)
        self.output = b""
        self.proc = subprocess.Popen(
            [sys.executable, TWISTD, "-n", "--pidfile=", *args],
            cwd=cwd,
            env=dict(env, PYTHONPATH=path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output += line

    def wait_for(self, pattern: bytes, timeout: float = 30) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"soak: {pattern!r} not seen:\n{self.output.decode()[-2000:]}")

    def end(self) -> int:
        """SIGTERM, SIGKILL after 15 s; the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def write_report(path: str, report: dict[str, Any], leave_out: tuple[str, ...] = ()) -> None:
    """Write C{report} as JSON to C{path} and print it as a two-column Markdown table."""
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print("| measure | value |\n| --- | --- |")
    for key, value in report.items():
        if key not in leave_out:
            print(f"| {key} | {value} |")


def services_yaml(path: str, count: int, interval: int = 60) -> None:
    """Write an app_instance_info.yaml with C{count} services svc0, svc1, ..."""
    services = [
        {
            "serName": f"svc{i}",
            "version": "1.0",
            "state": "ACTIVE",
            "serializer": "JSON",
            "livenessInterval": interval,
            "transportInfo": {
                "id": f"t{i}",
                "name": f"svc{i}",
                "type": "REST_HTTP",
                "protocol": "HTTP",
                "version": "1.1",
                "endpoint": {"uris": [f"http://svc{i}.local:80/"]},
            },
        }
        for i in range(count)
    ]
    with open(path, "w") as f:
        yaml.safe_dump({"serviceInfoPosts": services}, f)


def start_emulator(work: str, base: dict[str, str], *extra: str) -> Process:
    """The emulator on ports the system picks, its certificates and agent.env in work/mep."""
    command = ["mep-emulator", "--port", "auto", "--http-port", "auto"]
    return Process([*command, "--cert-dir", os.path.join(work, "mep"), *extra], base, work)


def many_connections_beside_an_emulator(
    prefix: str,
) -> tuple[str, str, dict[str, str], Process]:
    """
    For a benchmark that opens thousands of connections: the file limit raised (to 8,192
    at most), a work directory, its conf/ with two services, and the emulator started.
    Returns the work directory, the conf directory, the base environment and the emulator.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    work = tempfile.mkdtemp(prefix=prefix)
    conf = os.path.join(work, "conf")
    os.makedirs(conf)
    services_yaml(os.path.join(conf, "app_instance_info.yaml"), 2)
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return work, conf, base, start_emulator(work, base)


def agent_env(path: str) -> dict[str, str]:
    """The variables of the emulator's agent.env (lines "export NAME=value")."""
    env = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.removeprefix("export ").strip().partition("=")
            env[key] = value
    return env


def resources(pid: int) -> tuple[float, int]:
    """(resident MiB, open descriptors) of a process."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    """The agent under faults and application polling; the counters the report is made of."""

    def __init__(
        self, rng: random.Random, agent: Process, api: int, ops: int, control: int
    ) -> None:
        self.rng = rng
        self.agent = agent
        self.api, self.ops, self.control = api, ops, control
        self.faults: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.polls = self.misses = self.token_5xx = self.suspended_samples = 0
        self.latencies: dict[str, list[float]] = {"token": [], "endpoint": []}

    def run(self, minutes: float, fault_every: float) -> None:
        """Faults every C{fault_every} s (none in the last QUIET s), a sample every 10 s."""
        end = time.monotonic() + minutes * 60
        next_fault = time.monotonic() + fault_every
        next_sample = time.monotonic()
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_fault and now < end - QUIET:
                self.fault(round(end - now))
                next_fault = now + fault_every
            if now >= next_sample:
                self.sample()
                next_sample = now + 10
            self.poll()
            time.sleep(0.5)

    def fault(self, seconds_left: int) -> None:
        """
        One fault at a time: what an earlier one left queued is cleared first (the
        emulator's faults count requests, and a backing-off agent would otherwise meet an
        ever longer queue of them).
        """
        request(self.control, "DELETE", "/_emulator/faults")
        _, name, fault = self.rng.choices(FAULTS, [w for w, _, _ in FAULTS])[0]
        if isinstance(fault, str):
            request(self.control, "POST", f"/_emulator/{fault}")
        else:
            request(self.control, "POST", "/_emulator/faults", fault)
        self.faults.append({"at": seconds_left, "fault": name})

    def sample(self) -> None:
        """The agent's memory and descriptors, and what the MEP holds."""
        rss, fds = resources(self.agent.proc.pid)
        state = json.loads(request(self.control, "GET", "/_emulator/state")[1])
        suspended = sum(s["state"] == "SUSPENDED" for s in state["services"])
        self.suspended_samples += bool(suspended)
        self.samples.append(
            {
                "rss_mib": round(rss, 1),
                "fds": fds,
                "registered": len(state["services"]),
                "suspended": suspended,
            }
        )

    def poll(self) -> None:
        """The application asks for the token and for one endpoint, each with a deadline."""
        endpoint = f"/mep-agent/v1/endpoint/svc{self.rng.randrange(SERVICES)}"
        for kind, path, deadline in (
            ("token", "/mep-agent/v1/token", TOKEN_DEADLINE),
            ("endpoint", endpoint, ENDPOINT_DEADLINE),
        ):
            started = time.monotonic()
            try:
                status, _ = request(self.api, "GET", path, timeout=deadline + 5)
            except OSError:
                status = 0
            took = time.monotonic() - started
            self.polls += 1
            self.latencies[kind].append(took)
            if took > deadline or status == 0 or status == 500:
                self.misses += 1
            if kind == "token" and status >= 500 and status != 503:
                self.token_5xx += 1

    def finish(self) -> dict[str, Any]:
        """Faults off, then SIGTERM: what recovered, what was left, what it cost."""
        request(self.control, "DELETE", "/_emulator/faults")
        state = json.loads(request(self.control, "GET", "/_emulator/state")[1])
        recovered = sum(s["state"] == "ACTIVE" for s in state["services"])
        livez, _ = request(self.ops, "GET", "/livez")
        started = time.monotonic()
        os.kill(self.agent.proc.pid, signal.SIGTERM)
        code = self.agent.proc.wait(30)
        stop_seconds = time.monotonic() - started
        left = len(json.loads(request(self.control, "GET", "/_emulator/state")[1])["services"])
        first, last = self.samples[1], self.samples[-1]
        tokens = sorted(self.latencies["token"])
        return dict(
            faults=self.faults,
            samples=self.samples,
            livez_at_end=livez,
            active_after_quiet_period=recovered,
            polls=self.polls,
            deadline_misses=self.misses,
            token_unexpected_5xx=self.token_5xx,
            samples_with_suspended_services=self.suspended_samples,
            rss_growth_mib=round(last["rss_mib"] - first["rss_mib"], 1),
            fd_growth=last["fds"] - first["fds"],
            max_rss_mib=max(s["rss_mib"] for s in self.samples),
            token_p99_ms=round(tokens[int(len(tokens) * 0.99)] * 1000, 2),
            endpoint_max_s=round(max(self.latencies["endpoint"]), 2),
            stop_exit_status=code,
            stop_seconds=round(stop_seconds, 2),
            registrations_left=left,
            tracebacks_in_agent_log=self.agent.output.count(b"Traceback"),
            unhandled_errors_in_agent_log=self.agent.output.count(b"Unhandled"),
        )


def start_agent(work: str, base: dict[str, str], conf: str) -> tuple[Process, int, int]:
    """The agent against the emulator in C{work}: (process, API port, ops port), READY."""
    env = dict(base, **agent_env(os.path.join(work, "mep", "agent.env")))
    env.update(
        MEP_AGENT_CONF_DIR=conf,
        MEP_AGENT_LISTEN="tcp:0:interface=127.0.0.1",
        MEP_AGENT_OPS_LISTEN="tcp:0:interface=127.0.0.1",
    )
    agent = Process(["mep-agent"], env, work)
    api = int(agent.wait_for(rb"--listen listening on [0-9.]+:(\d+)").group(1))
    ops = int(agent.wait_for(rb"--ops-listen listening on [0-9.]+:(\d+)").group(1))
    agent.wait_for(rb"confirmed READY", timeout=60)
    return agent, api, ops


REPORTED = (
    "minutes",
    "livez_at_end",
    "active_after_quiet_period",
    "polls",
    "deadline_misses",
    "token_unexpected_5xx",
    "samples_with_suspended_services",
    "rss_growth_mib",
    "max_rss_mib",
    "fd_growth",
    "token_p99_ms",
    "endpoint_max_s",
    "stop_exit_status",
    "stop_seconds",
    "registrations_left",
    "tracebacks_in_agent_log",
    "unhandled_errors_in_agent_log",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--fault-every", type=float, default=20)
    parser.add_argument("--out", default="soak.json")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", help="write the agent's log here at the end")
    options = parser.parse_args()
    work = tempfile.mkdtemp(prefix="mep-soak-")
    conf = os.path.join(work, "conf")
    os.makedirs(conf)
    services_yaml(os.path.join(conf, "app_instance_info.yaml"), SERVICES)
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    emulator = start_emulator(work, base, "--liveness-interval", "4", "--token-lifetime", "120")
    agent: Process | None = None
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "minutes": options.minutes,
    }
    try:
        emulator.wait_for(rb"serving https://127.0.0.1:(\d+)")
        control = int(emulator.wait_for(rb"serving http://127.0.0.1:(\d+)").group(1))
        agent, api, ops = start_agent(work, base, conf)
        soak = Soak(random.Random(options.seed), agent, api, ops, control)
        soak.run(options.minutes, options.fault_every)
        report.update(soak.finish())
    finally:
        if agent is not None:
            agent.end()
            if options.log:
                with open(options.log, "wb") as f:
                    f.write(agent.output)
        emulator.end()
    with open(options.out, "w") as f:
        json.dump(report, f, indent=2)
    print("| measure | value |\n| --- | --- |")
    for key in REPORTED:
        print(f"| {key} | {report.get(key)} |")
    print(f"| faults injected | {len(report.get('faults', []))} |")


if __name__ == "__main__":
    main()
