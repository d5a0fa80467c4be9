"""
What one agent asks of a MEP that refuses it (issue 24): real processes on 127.0.0.1, the
emulator from this checkout (EdgeGallery face, Kong's limit of 1,000 Mp1 requests a minute,
no Retry-After, as EdgeGallery configures it) and the agent from --agent (this checkout by
default; any other checkout of the project, e.g. an older one, to compare). Run by hand.

    .venv/bin/python -m benchmarks.storm [--agent PATH] [--scenario refused-repair|chaos]
                                         [--seconds 120] [--out storm.json]

Scenarios:

* refused-repair: two services beating (the MEP imposes 60 s); a third party sets one
  INACTIVE and the platform refuses updates (501). Counted: the agent's requests in the
  first ten seconds after its first 409 and per minute, the 429s, how long the other service
  stayed SUSPENDED, and what SIGTERM left at the MEP.
* chaos: half of the Mp1 answers are refusals (400, 403, 404, 409, 429, 500-503, Retry-After
  on half the 429s and 503s) for 60 s, then the MEP is healthy again for 30 s; then SIGTERM.
  Counted: requests per minute during and after, instances and subscriptions the MEP holds
  30 s after (wanted: one of each), and what SIGTERM left.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

from benchmarks.soak import (
    CHECKOUT,
    Process,
    agent_env,
    request,
    services_yaml,
    start_emulator,
    write_report,
)

SERVICES = ("svc0", "svc1")


def state(http: int) -> dict[str, Any]:
    code, raw = request(http, "GET", "/_emulator/state")
    assert code == 200
    result: dict[str, Any] = json.loads(raw)
    return result


def total(counts: dict[str, int], status: str | None = None) -> int:
    """Requests in C{counts} ("kind status" keys), of C{status} when given."""
    return sum(n for key, n in counts.items() if status is None or key.endswith(f" {status}"))


def start(work: str, agent_path: str) -> tuple[Process, Process, int]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    emulator = start_emulator(work, base, "--rate-limit", "1000")
    http = int(emulator.wait_for(rb"serving http://127.0.0.1:(\d+)").group(1))
    conf = os.path.join(work, "conf")
    os.makedirs(conf, exist_ok=True)
    services_yaml(os.path.join(conf, "app_instance_info.yaml"), len(SERVICES))
    env = agent_env(os.path.join(work, "mep", "agent.env"))
    env.update(
        MEP_AGENT_CONF_DIR=conf,
        MEP_AGENT_LISTEN="tcp:0:interface=127.0.0.1",
        MEP_AGENT_OPS_LISTEN="tcp:0:interface=127.0.0.1",
        MEP_AGENT_NOTIFY_URL="http://127.0.0.1:9/mep-agent/v1/notifications",
    )
    agent = Process(["mep-agent"], dict(base, **env), work, path=agent_path)
    deadline = time.monotonic() + 30
    while len(state(http)["services"]) < len(SERVICES):
        if time.monotonic() > deadline:
            raise SystemExit(f"storm: not registered:\n{agent.output.decode()[-2000:]}")
        time.sleep(0.2)
    return emulator, agent, http


def refused_repair(http: int, seconds: float) -> dict[str, Any]:
    services = state(http)["services"]
    victim = services[0]["serInstanceId"]
    request(http, "POST", "/_emulator/settings", {"refuse_updates": 501})
    request(http, "POST", f"/_emulator/services/{victim}/state", {"state": "INACTIVE"})
    started = time.monotonic()
    first_409 = None
    at_409 = 0
    suspended = 0.0
    while time.monotonic() - started < seconds:
        now = state(http)
        counts = now["request_counts"]
        if first_409 is None and counts.get("heartbeat 409"):
            first_409, at_409 = time.monotonic(), total(counts)
        if first_409 is not None and time.monotonic() - first_409 <= 10:
            in_ten = total(counts) - at_409
        if any(s["state"] == "SUSPENDED" for s in now["services"]):
            suspended += 1.0
        time.sleep(1.0)
    counts = state(http)["request_counts"]
    minutes = (time.monotonic() - started) / 60
    return {
        "requests in the 10 s after the first 409": in_ten if first_409 else None,
        "requests per minute": round(total(counts) / minutes, 1),
        "429 answers": total(counts, "429"),
        "seconds a service was SUSPENDED (sampled)": suspended,
        "counts": counts,
    }


def chaos(http: int, seconds: float) -> dict[str, Any]:
    before = total(state(http)["request_counts"])
    request(http, "POST", "/_emulator/settings", {"chaos": 0.5})
    time.sleep(seconds)
    request(http, "POST", "/_emulator/settings", {"chaos": 0.0})
    during = total(state(http)["request_counts"]) - before
    time.sleep(30)
    now = state(http)
    after = total(now["request_counts"]) - before - during
    names = sorted(s["serName"] for s in now["services"])
    return {
        "requests per minute, chaos": round(during / (seconds / 60), 1),
        "requests per minute, 30 s after": round(after / 0.5, 1),
        "instances 30 s after (wanted: one each)": names,
        "subscriptions 30 s after (wanted: 1)": len(now["subscriptions"]),
        "429 answers": total(now["request_counts"], "429"),
        "counts": now["request_counts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", default=CHECKOUT, help="the checkout the agent runs from")
    scenarios = ["refused-repair", "chaos"]
    parser.add_argument("--scenario", choices=scenarios, default=scenarios[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--out", default="storm.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        emulator, agent, http = start(work, os.path.abspath(args.agent))
        try:
            run = refused_repair if args.scenario == "refused-repair" else chaos
            report = run(http, args.seconds)
            code = agent.end()
            left = state(http)
            report["exit status"] = code
            report["left after SIGTERM"] = {
                "services": len(left["services"]),
                "subscriptions": len(left["subscriptions"]),
            }
        finally:
            agent.end()
            emulator.end()
    report = {"agent": args.agent, "scenario": args.scenario, **report}
    write_report(args.out, report, leave_out=("counts",))


if __name__ == "__main__":
    main()
