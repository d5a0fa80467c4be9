"""
Structured logging for twistd: C{twistd --logger mep_agent.logs.json_observer ...}
writes one JSON object per event (with named fields such as event, ser_name, status)
to stdout, for log collectors. Without it, twistd's usual text lines are written.
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def json_observer() -> ILogObserver:
    """One JSON object per event on stdout (twistd --logger)."""
    return jsonFileLogObserver(sys.stdout)
