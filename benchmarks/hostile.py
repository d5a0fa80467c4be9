"""
Hostile clients and files against a real `twistd mep-agent` (issue 19), run by hand and
bounded in time; it ends only the processes it started, and talks to 127.0.0.1 only (the
flooding peer is 127.0.0.2, another loopback address, so that it is a peer of its own).

    .venv/bin/python -m benchmarks.hostile [--seconds 30] [--out hostile.json]

1. Pipelining: one client sends `GET /mep-agent/v1/token` pipelined as fast as it can for
   --seconds and reads nothing. The agent's resident memory at the start, at its peak, and
   after the client left.
2. Slowloris: 1,100 connections to the ops port from 127.0.0.2, one byte a second each,
   reconnecting whenever dropped or refused, for --seconds; meanwhile `/livez` from a fresh
   connection from 127.0.0.1 every half second, with a 2 s deadline: answered, missed,
   slowest.
3. Alias bomb: a 1 KB "billion laughs" under implSpecificInfo, given to `--check` (exit
   status, lines of output, peak memory, time) and to the running agent at reload (refused,
   the agent's memory, /livez meanwhile).

Writes JSON and prints a table (the figures in docs/reliability.md come from here).
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time

from benchmarks.soak import (
    CHECKOUT,
    TWISTD,
    Process,
    agent_env,
    many_connections_beside_an_emulator,
    resources,
    write_report,
)

FLOOD_PEER = "127.0.0.2"
SLOWLORIS_CONNECTIONS = 1100
PROBE_DEADLINE = 2.0
BOMB_FILE = os.path.join(CHECKOUT, "tests", "data", "alias_bomb_app_instance_info.yaml")


def bomb_services() -> str:
    """app_instance_info.yaml with a YAML alias bomb inside implSpecificInfo."""
    with open(BOMB_FILE) as f:
        return f.read()


def probe(port: int) -> float | None:
    """Seconds /livez took from a fresh connection from 127.0.0.1, None past the deadline."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_DEADLINE)
    try:
        conn.request("GET", "/livez")
        ok = conn.getresponse().status == 200
    except OSError:
        return None
    finally:
        conn.close()
    took = time.monotonic() - started
    return took if ok and took <= PROBE_DEADLINE else None


def pipelining(pid: int, port: int, seconds: float) -> dict[str, float]:
    """One client pipelining /token without reading: the agent's RSS over it."""
    before = resources(pid)[0]
    peak = before
    request = b"GET /mep-agent/v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 256
    sent = dropped = 0
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sent += s.send(request)
        except BlockingIOError:
            time.sleep(0.05)  # the agent stopped reading: what back-pressure should do
        except OSError:  # the agent dropped the connection: come back, as an attacker would
            dropped += 1
            s.close()
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
        peak = max(peak, resources(pid)[0])
    s.close()
    time.sleep(2)
    return {
        "pipelining_rss_before_mib": round(before, 1),
        "pipelining_rss_peak_mib": round(peak, 1),
        "pipelining_rss_after_mib": round(resources(pid)[0], 1),
        "pipelining_requests_sent": sent // (len(request) // 256),
        "pipelining_connections_dropped_by_agent": dropped,
    }


def slowloris(port: int, seconds: float) -> dict[str, float]:
    """1,100 one-byte-a-second connections from FLOOD_PEER while /livez is probed."""
    selector = selectors.DefaultSelector()
    open_: dict[socket.socket, int] = {}
    refused = 0

    def connect() -> None:
        nonlocal refused
        s = socket.socket()
        s.bind((FLOOD_PEER, 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            refused += 1
            s.close()
            return
        open_[s] = 0
        selector.register(s, selectors.EVENT_READ)

    for _ in range(SLOWLORIS_CONNECTIONS):
        connect()
    head = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-a: " + b"a" * 10000
    answered, missed, slowest = 0, 0, 0.0
    end = time.monotonic() + seconds
    next_byte = next_probe = time.monotonic()
    while time.monotonic() < end:
        for key, _ in selector.select(timeout=0.05):  # dropped by the agent: reconnect
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                gone = s.recv(4096) == b""
            except OSError:
                gone = True
            if gone:
                selector.unregister(s)
                del open_[s]
                s.close()
                refused += 1
                connect()
        now = time.monotonic()
        if now >= next_byte:
            next_byte = now + 1
            for s in list(open_):
                try:
                    s.send(head[open_[s] : open_[s] + 1])
                    open_[s] += 1
                except OSError:
                    pass
        if now >= next_probe:
            next_probe = now + 0.5
            took = probe(port)
            if took is None:
                missed += 1
            else:
                answered += 1
                slowest = max(slowest, took)
    for s in open_:
        s.close()
    return {
        "slowloris_connections": SLOWLORIS_CONNECTIONS,
        "slowloris_drops_and_refusals": refused,
        "livez_answered_within_2s": answered,
        "livez_missed": missed,
        "livez_slowest_s": round(slowest, 3),
    }


def check_bomb(work: str, env: dict[str, str]) -> dict[str, object]:
    """--check with the bomb: exit status, output lines, the child's peak RSS, time."""
    conf = os.path.join(work, "bomb")
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(conf, "app_instance_info.yaml"), "w") as f:
        f.write(bomb_services())
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, TWISTD, "-n", "--pidfile=", "mep-agent", "--check"],
            env=dict(env, MEP_AGENT_CONF_DIR=conf, PYTHONPATH=CHECKOUT),
            cwd=work,
            capture_output=True,
            timeout=60,
        )
        code: object = done.returncode
        output = (done.stdout + done.stderr).decode().strip().splitlines()
    except subprocess.TimeoutExpired as e:  # killed by subprocess.run
        code = "did not end within 60 s (killed)"
        output = ((e.stdout or b"") + (e.stderr or b"")).decode().strip().splitlines()
    took = time.monotonic() - started
    return {
        "bomb_file_bytes": len(bomb_services()),
        "bomb_check_exit": code,
        "bomb_check_lines": len(output),
        "bomb_check_line": output[0][-120:] if output else "",
        "bomb_check_peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
        "bomb_check_seconds": round(took, 2),
    }


def reload_bomb(agent: Process, conf: str, ops: int) -> dict[str, object]:
    """The bomb written over the running agent's file, then SIGHUP: refused, still alive."""
    before = resources(agent.proc.pid)[0]
    with open(os.path.join(conf, "app_instance_info.yaml"), "w") as f:
        f.write(bomb_services())
    os.kill(agent.proc.pid, signal.SIGHUP)
    peak, live = before, 0
    for _ in range(10):  # five seconds of /livez, as a kubelet would probe
        time.sleep(0.5)
        peak = max(peak, resources(agent.proc.pid)[0])
        live += probe(ops) is not None
    time.sleep(1.5)  # a reload is applied (or refused) once two reads a second apart agree
    return {
        "bomb_reload_refused": b"expands to more than" in agent.output,
        "bomb_reload_rss_before_mib": round(before, 1),
        "bomb_reload_rss_peak_mib": round(peak, 1),
        "bomb_reload_livez_answered_of_10": live,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--out", default="hostile.json")
    options = parser.parse_args()
    work, conf, base, emulator = many_connections_beside_an_emulator("mep-hostile-")
    agent = None
    report: dict[str, object] = {"machine": f"{os.cpu_count()} cores", "date": time.ctime()}
    try:
        emulator.wait_for(rb"serving https://127.0.0.1:(\d+)")
        env = dict(base, **agent_env(os.path.join(work, "mep", "agent.env")))
        env.update(
            MEP_AGENT_CONF_DIR=conf,
            MEP_AGENT_LISTEN="tcp:0:interface=127.0.0.1",
            MEP_AGENT_OPS_LISTEN="tcp:0:interface=127.0.0.1",
            MEP_AGENT_RELOAD_INTERVAL="0",
        )
        report.update(check_bomb(work, env))
        agent = Process(["mep-agent"], env, work)
        api = int(agent.wait_for(rb"--listen listening on [0-9.]+:(\d+)").group(1))
        ops = int(agent.wait_for(rb"--ops-listen listening on [0-9.]+:(\d+)").group(1))
        agent.wait_for(rb"confirmed READY")
        report.update(pipelining(agent.proc.pid, api, options.seconds))
        report.update(slowloris(ops, options.seconds))
        report.update(reload_bomb(agent, conf, ops))
        report["agent_rss_end_mib"] = round(resources(agent.proc.pid)[0], 1)
    finally:
        if agent is not None:
            agent.end()
        emulator.end()
    write_report(options.out, report)


if __name__ == "__main__":
    main()
