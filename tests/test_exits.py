"""
The stop signals' handlers (mep_agent/exits.py, mep_agent/run.py): a signal is never lost,
whatever the main thread was doing when it came, and the agent's handler is the one in place
from the moment the reactor installs its own.
"""

from __future__ import annotations

import io
import os
import signal
from typing import Any

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from mep_agent import exits, run


class Exited(Exception):
    """What the patched os._exit raises instead of ending the test run."""


class MidWrite(io.StringIO):
    """A stream the signal interrupted in the middle of a write, as CPython reports it."""

    def write(self, text: str) -> int:
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stdout>'>")

    def flush(self) -> None:
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stdout>'>")


class SignalHandlerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.exit_codes: list[int] = []
        self.written: list[tuple[int, bytes]] = []

        def fake_exit(code: int) -> None:
            self.exit_codes.append(code)
            raise Exited()

        self.patch(os, "_exit", fake_exit)

        def fake_write(fd: int, data: bytes) -> int:
            self.written.append((fd, data))
            return len(data)

        self.patch(os, "write", fake_write)

    def test_early_stop_exits_when_interrupting_a_write(self) -> None:
        """
        A stop signal that comes while stdout is being written still exits 0: the flush's
        "reentrant call" does not escape the handler (the writer would swallow it and the
        signal would be lost: the agent went on and registered).
        """
        self.patch(run.sys, "stdout", MidWrite())
        self.patch(run.sys, "stderr", MidWrite())
        self.assertRaises(Exited, run.exit_at_once, signal.SIGTERM, None)
        self.assertEqual(self.exit_codes, [0])

    def test_second_signal_exits_when_interrupting_a_write(self) -> None:
        """A second stop signal during the shutdown exits 143 with its line, mid-write or not."""
        self.patch(exits.sys, "stderr", MidWrite())
        process_exit = exits.ProcessExit(MemoryReactor())
        self.assertRaises(Exited, process_exit._exit_now, signal.SIGTERM, None)
        self.assertEqual(self.exit_codes, [128 + signal.SIGTERM])
        self.assertEqual(
            self.written, [(2, b"mep-agent: signal 15 during shutdown; exiting now\n")]
        )


class StartupOrderTests(SynchronousTestCase):
    """
    Where in the reactor's start-up the agent takes the stop signals: the reactor's own
    handler is installed by its first "during startup" trigger; the agent's must follow it
    in the same phase, with the signals held from the first "before startup" trigger.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.masks: list[tuple[int, frozenset[int]]] = []
        self.handlers: dict[int, Any] = {}

        def fake_sigmask(how: int, signals: Any) -> set[int]:
            self.masks.append((how, frozenset(signals)))
            return set()

        self.patch(exits.signal, "pthread_sigmask", fake_sigmask)
        self.patch(exits.signal, "signal", lambda num, h: self.handlers.__setitem__(num, h))
        exits.ProcessExit(self.reactor).install()

    def triggers(self, phase: str) -> list[Any]:
        return [f for (f, args, kw) in self.reactor.triggers.get(phase, {}).get("startup", [])]

    def test_held_before_the_services_start(self) -> None:
        """The first before-startup trigger blocks SIGINT and SIGTERM."""
        (hold,) = self.triggers("before")
        hold()
        stop = frozenset({signal.SIGINT, signal.SIGTERM})
        self.assertEqual(self.masks, [(signal.SIG_BLOCK, stop)])

    def test_taken_in_the_during_phase_then_released(self) -> None:
        """
        The agent's handlers are in place during start-up (not after it), and only then are
        the signals unblocked: one that waited reaches the agent's clean stop.
        """
        (take,) = self.triggers("during")
        self.assertEqual(self.triggers("after"), [])
        take()
        process_exit_stop = self.handlers[signal.SIGTERM]
        self.assertEqual(self.handlers[signal.SIGINT], process_exit_stop)
        self.assertEqual(process_exit_stop.__name__, "_stop")
        stop = frozenset({signal.SIGINT, signal.SIGTERM})
        self.assertEqual(self.masks, [(signal.SIG_UNBLOCK, stop)])
