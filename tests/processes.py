"""Real twistd processes for the integration tests: spawned, watched, always ended."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
#: The image's entry point: twistd with the stop signals taken first (mep_agent/run.py).
MEP_AGENT = os.path.join(os.path.dirname(sys.executable), "mep-agent")
# The code under test is this checkout's, also when an older copy is installed.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TwistdProcess(ProcessProtocol):
    """`twistd -n --pidfile= <plugin> args` with its output kept."""

    def __init__(self, plugin: str, args: list[str], env: dict[str, str], cwd: str) -> None:
        self.output = b""
        self._watchers: list[tuple[re.Pattern[bytes], Deferred[re.Match[bytes]]]] = []
        self.ended: Deferred[int] = Deferred()
        self.exit_code: int | None = None
        if plugin == "mep-agent-command":
            argv = [sys.executable, MEP_AGENT, *args]
        else:
            argv = [sys.executable, TWISTD, "-n", "--pidfile=", plugin, *args]
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        base["PYTHONPATH"] = CHECKOUT
        self.transport = reactor.spawnProcess(
            self, sys.executable, argv, env=dict(base, **env), path=cwd
        )

    def outReceived(self, data: bytes) -> None:
        self.output += data
        for watcher in list(self._watchers):
            match = watcher[0].search(self.output)
            if match:
                self._watchers.remove(watcher)
                watcher[1].callback(match)

    async def wait_for(self, pattern: bytes, timeout: float = 20) -> re.Match[bytes]:
        """The first match of C{pattern} in the output, as soon as it is written."""
        compiled = re.compile(pattern)
        match = compiled.search(self.output)
        if match:
            return match
        d: Deferred[re.Match[bytes]] = Deferred()
        self._watchers.append((compiled, d))
        d.addTimeout(timeout, reactor)
        try:
            return await d
        except Exception:
            raise AssertionError(
                f"{pattern!r} not in the output within {timeout}s:\n"
                + self.output.decode("utf-8", "replace")[-2000:]
            ) from None

    async def port(self, setting: bytes) -> int:
        """The port a listener bound, from the agent's "listening on" log line."""
        match = await self.wait_for(setting + rb" listening on [0-9.]+:(\d+)")
        return int(match.group(1))

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        for _, watcher in self._watchers:
            watcher.errback(AssertionError("the process ended"))
        self._watchers = []
        if isinstance(reason.value, ProcessDone):
            self.exit_code = 0
        elif isinstance(reason.value, ProcessTerminated):
            self.exit_code = (
                reason.value.exitCode
                if reason.value.exitCode is not None
                else -reason.value.signal
            )
        self.ended.callback(self.exit_code if self.exit_code is not None else -1)

    async def exited(self, timeout: float = 30) -> int:
        """The exit status, once it ends within C{timeout} seconds (else its output)."""
        if not self.running:
            return self.exit_code if self.exit_code is not None else -1
        d: Deferred[int] = Deferred()

        def ended(code: int) -> int:
            if not d.called:  # not timed out
                d.callback(code)
            return code

        self.ended.addCallback(ended)
        d.addTimeout(timeout, reactor)
        try:
            return await d
        except Exception:
            raise AssertionError(
                f"the process did not end within {timeout}s:\n"
                + self.output.decode("utf-8", "replace")[-3000:]
            ) from None

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def signal(self, name: str) -> None:
        if self.running and self.transport is not None:
            try:
                self.transport.signalProcess(name)
            except ProcessExitedAlready:
                pass  # it ended on its own; processEnded is on its way

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 15 s; only ever this process we started."""
        if not self.running:
            return self.exit_code
        self.signal("TERM")
        killer = reactor.callLater(15, self.signal, "KILL")
        code = await self.ended
        if killer.active():
            killer.cancel()
        return code


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.2
) -> Any:
    """Await check() until it returns something truthy, at most timeout seconds."""
    waited = 0.0
    last_error: Exception | None = None
    while waited < timeout:
        try:
            result = await check()
            if result:
                return result
        except Exception as e:  # the server may not listen yet
            last_error = e
        await deferLater(reactor, interval, lambda: None)
        waited += interval
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_error})")


def _client() -> HTTPClient:
    # No connection pool: every test ends with no connection left open.
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


async def get_json(url: str) -> tuple[int, Any]:
    response = await _client().get(url, timeout=5)
    raw = await response.content()
    return response.code, json.loads(raw) if raw else None


async def post_json(url: str, body: Any = None) -> int:
    response = await _client().post(url, json=body, timeout=5)
    await response.content()
    code: int = response.code
    return code


__all__ = ["TwistdProcess", "eventually", "get_json", "post_json", "signal"]
