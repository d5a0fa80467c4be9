"""
Every refusal is an answer (issue 26), against a real `twistd mep-agent`, run by hand and
bounded in time; it ends only the processes it started, and talks to 127.0.0.1 only (from
127.0.0.1, the application's address, and from 127.0.0.2, another peer).

    .venv/bin/python -m benchmarks.refusals [--connections 2000] [--header-timeout 60]
        [--out refusals.json]

1. Flood: --connections concurrent `GET /mep-agent/v1/token` from 127.0.0.1, all opened at
   once and kept open until every one has an answer or the deadline passed: answered 200,
   answered 503 with a JSON body and Retry-After, answered otherwise, closed without an
   answer, no answer within the deadline; and what a /token from 127.0.0.2 gets meanwhile.
   The agent runs with --header-timeout 60 (default here) so that the connections answered
   200 stay open through the flood: at the agent's 5 s it drops them while connections
   whose SYN the full listen backlog (50) dropped are still being retried by the kernel
   (1, 3, 7, 15 s ...), and those late ones then find a free place and get a 200.
2. Requests the HTTP parser refuses, one connection each (a URL over 16 KB, a header over
   16 KB, 20 KB of headers, 10,000 headers, garbage bytes, Content-Length together with
   Transfer-Encoding): what came back (status and Content-Type) or "closed, no answer".

Writes JSON and prints a table (the figures in docs/reliability.md come from here).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import socket
import time
from typing import Any

from benchmarks.soak import many_connections_beside_an_emulator, start_agent, write_report

OTHER_PEER = "127.0.0.2"  # another loopback address: a peer of its own, as in hostile.py
FLOOD_DEADLINE = 60.0  # seconds for every flood connection to get its answer or lose it
ANSWER_DEADLINE = 8.0  # seconds for a refused request's answer (the header deadline is 5)
TOKEN = b"GET /mep-agent/v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HEAD = b"GET /mep-agent/v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def headers(count: int, size: int) -> bytes:
    """A /token request with C{count} extra headers of C{size} bytes' value each."""
    return HEAD + b"".join(b"X-%d: %s\r\n" % (n, b"a" * size) for n in range(count)) + b"\r\n"


MALFORMED = {
    "url_20kb": b"GET /mep-agent/v1/token?" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
    "header_20kb": headers(1, 20000),
    "headers_20kb_in_100": headers(100, 200),
    "headers_10000": headers(10000, 1),
    "garbage": random.Random(26).randbytes(1000).replace(b"\n", b"") + b"\r\n\r\n",
    "content_length_and_chunked": b"POST /mep-agent/v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


def answer_of(raw: bytes) -> tuple[int, dict[str, str], bytes] | None:
    """(status, lower-case headers, body) of a complete answer in C{raw}, or None."""
    head, found, body = raw.partition(b"\r\n\r\n")
    if not found:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if len(body) < length:
        return None
    return int(lines[0].split()[1]), headers, body[:length]


def kind(raw: bytes, ended: bool) -> str:
    """What a flood connection got: 200, 503 JSON, other, closed without an answer, none."""
    answer = answer_of(raw)
    if answer is None:
        return "closed_without_answer" if ended else "no_answer_within_deadline"
    status, headers, body = answer
    if status == 200:
        return "answered_200"
    if status == 503 and headers.get("content-type") == "application/json":
        json.loads(body)
        if headers.get("retry-after"):
            return "answered_503_json_retry_after"
    return f"answered_{status}_other"


def open_flood(port: int, count: int, selector: selectors.BaseSelector) -> list[socket.socket]:
    """C{count} connections to the API being opened, each to send TOKEN once writable."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        selector.register(s, selectors.EVENT_WRITE, b"")
        sockets.append(s)
    return sockets


def flood(port: int, count: int) -> dict[str, Any]:
    """C{count} concurrent /token requests, one per connection, all kept open: the outcomes."""
    selector = selectors.DefaultSelector()
    sockets = open_flood(port, count, selector)
    outcomes: dict[socket.socket, str] = {}
    started = time.monotonic()
    while len(outcomes) < count and time.monotonic() - started < FLOOD_DEADLINE:
        for key, events in selector.select(timeout=0.1):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if events & selectors.EVENT_WRITE:
                error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    outcomes[s] = "connect_failed"
                    selector.unregister(s)
                    continue
                s.send(TOKEN)
                selector.modify(s, selectors.EVENT_READ, b"")
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            raw = key.data + data
            if not data or answer_of(raw) is not None:
                outcomes[s] = kind(raw, ended=not data)
                selector.unregister(s)
            else:
                selector.modify(s, selectors.EVENT_READ, raw)
    took = time.monotonic() - started
    for key in list(selector.get_map().values()):
        outcomes[key.fileobj] = kind(key.data, ended=False)  # type: ignore[index]
    other = other_peer(port)  # while the flood's connections are still open
    for s in sockets:
        s.close()
    report: dict[str, Any] = {"flood_connections": count, "flood_seconds": round(took, 2)}
    report["another_peer_meanwhile"] = other
    for outcome in sorted(set(outcomes.values())):
        report[f"flood_{outcome}"] = sum(o == outcome for o in outcomes.values())
    return report


def other_peer(port: int) -> str:
    """What a /token from OTHER_PEER gets (the kubelet is a peer of its own), or why none."""
    s = socket.create_connection(("127.0.0.1", port), ANSWER_DEADLINE, (OTHER_PEER, 0))
    received = b""
    try:
        s.sendall(TOKEN)
        while answer_of(received) is None and (data := s.recv(65536)):
            received += data
    except OSError as e:
        return f"no answer ({type(e).__name__})"
    finally:
        s.close()
    answer = answer_of(received)
    return "closed, no answer" if answer is None else str(answer[0])


def refused(port: int, raw: bytes) -> str:
    """What the agent answers to C{raw} on a fresh connection: status and type, or nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_DEADLINE)
    received = b""
    try:
        try:
            s.sendall(raw)
        except OSError:
            pass  # the agent answered and closed before reading it all: read what it wrote
        while answer_of(received) is None:
            data = s.recv(65536)
            if not data:
                break
            received += data
    except OSError as e:
        if not received:
            return f"no answer ({type(e).__name__})"
    finally:
        s.close()
    answer = answer_of(received)
    if answer is None:
        return "closed, no answer"
    status, headers, body = answer
    return f"{status} {headers.get('content-type', 'no Content-Type')} {body[:80]!r}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--header-timeout", default="60", help="the agent's, in seconds")
    parser.add_argument("--out", default="refusals.json")
    options = parser.parse_args()
    work, conf, base, emulator = many_connections_beside_an_emulator("mep-refusals-")
    agent = None
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores",
        "date": time.ctime(),
        "header_timeout_s": options.header_timeout,
    }
    try:
        emulator.wait_for(rb"serving https://127.0.0.1:(\d+)")
        env = dict(base, MEP_AGENT_HEADER_TIMEOUT=options.header_timeout)
        agent, api, _ = start_agent(work, env, conf)
        report.update(flood(api, options.connections))
        for name, raw in MALFORMED.items():
            report[name] = refused(api, raw)
        report["tracebacks_in_agent_log"] = agent.output.count(b"Traceback")
    finally:
        if agent is not None:
            agent.end()
        emulator.end()
    write_report(options.out, report)


if __name__ == "__main__":
    main()
