"""
The `mep-agent` command (the image's entry point): `twistd -n --pidfile= mep-agent [options]`,
with the stop signals taken before anything else is loaded. Until the reactor runs nothing
has been sent to the MEP, so a SIGTERM or SIGINT then ends the process at once with 0 (under
plain `twistd`, the agent takes them only once its options are parsed, after Python has
loaded Twisted and the agent: a few hundred milliseconds in which a stop signal kills it).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_at_once(signum: int, frame: FrameType | None) -> None:
    """A stop signal before the reactor runs: nothing to clean up, exit 0 now."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (RuntimeError, OSError, ValueError):
            # RuntimeError: the signal came in the middle of a write to this stream
            # ("reentrant call"); raised from here it would be swallowed by the code that
            # was writing, and the signal lost. What is not flushed is lost, not the exit.
            pass
    os._exit(0)


def exit_early_on_stop_signals() -> None:
    """
    From now until the reactor runs, SIGTERM and SIGINT end the process with 0 at once:
    nothing was sent to the MEP, so there is nothing to clean up (Kubernetes deleting a pod
    that has only just started must not see it "killed"). Under plain twistd the plugin's
    options call this once parsed (tap.py); exits.py takes the signals over at start-up.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, exit_at_once)


def main() -> None:
    """Take the stop signals, then run twistd with the agent's plugin in the foreground."""
    exit_early_on_stop_signals()
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "-n", "--pidfile=", "mep-agent", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
