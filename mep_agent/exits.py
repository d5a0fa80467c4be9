"""
The process's exit status under twistd, which has no public way to set one.

- SIGTERM and SIGINT stop the agent cleanly (it deregisters) and exit 0. twistd would
  re-raise the signal after a stop and so report "killed", so the agent takes those two
  signals itself (with signal.signal; no private reactor state) in the reactor's start-up,
  right after the reactor has installed its own handlers. From the first start-up trigger
  until then the two signals are blocked, not lost: one sent in that gap waits and reaches
  the agent's handler, a clean stop (nothing has been sent to the MEP yet, so it is quick).
  Before the reactor starts (while twistd parses the options, the configuration is read and
  the service tree is built) a stop signal ends the process at once with 0
  (run.py, L{mep_agent.run.exit_early_on_stop_signals}).
- A second signal while stopping exits at once (128 + signal): an operator who insists
  must not wait for the deregistration deadline.
- A signal handler does no buffered I/O: Python runs it between two bytecodes of the main
  thread, possibly inside a write to stdout, where a flush raises "reentrant call" and the
  exception, caught by whatever code was writing (the log publisher), loses the signal.
- SIGHUP re-reads app_instance_info.yaml (the hot reload).
- A one-shot failure exits 1: after the reactor has shut down completely, with the
  output flushed, through os._exit — the only way to hand twistd's caller a status.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.logger import Logger

from mep_agent.run import STOP_SIGNALS


class ProcessExit:
    """Owns the process's exit status; the one place that ends the process."""

    log = Logger()

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.code = 0

    def finish(self, code: int) -> None:
        """Stop the agent (cleanly) and exit with C{code}."""
        self.code = code
        self._reactor.stop()

    def set_code(self, code: int) -> None:
        """Exit with C{code} when the stop under way is done."""
        self.code = code

    def install(self, on_hangup: Callable[[], object] | None = None) -> None:
        """
        Take the stop signals once running; exit with the code after the shutdown.

        @param on_hangup: what SIGHUP does (re-read app_instance_info.yaml), if anything.
        """
        self._reactor.addSystemEventTrigger("before", "startup", self._hold_stop_signals)
        # "during": after the reactor's own trigger of that phase (registered when it was
        # built), which installs its SIGTERM handler, and before anything runs on the loop.
        self._reactor.addSystemEventTrigger("during", "startup", self._take_stop_signals)
        if on_hangup is not None:
            # The handler runs between reactor iterations; the work is scheduled on it.
            def hangup(signum: int, frame: FrameType | None) -> None:
                self._reactor.callFromThread(on_hangup)

            self._reactor.callWhenRunning(signal.signal, signal.SIGHUP, hangup)
        self._reactor.addSystemEventTrigger("before", "shutdown", self._second_signal_exits)
        self._reactor.addSystemEventTrigger("after", "shutdown", self._exit_with_code)

    def _hold_stop_signals(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def _take_stop_signals(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._stop)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # one waiting arrives now

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        # A normal stop, logged at info on the reactor (not written to stderr, which twistd
        # logs at error level) once the handler has returned.
        self._reactor.callFromThread(self._stopping, signum)

    def _stopping(self, signum: int) -> None:
        self.log.info("signal {signal}; stopping", signal=signum, event="agent.stopping")
        self._reactor.stop()

    def _second_signal_exits(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._exit_now)

    def _exit_now(self, signum: int, frame: FrameType | None) -> None:
        os.write(2, f"mep-agent: signal {signum} during shutdown; exiting now\n".encode())
        os._exit(128 + signum)

    def _exit_with_code(self) -> None:
        if self.code:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(self.code)
