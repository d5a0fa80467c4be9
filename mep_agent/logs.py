"""
How the agent's log is written: twistd's text lines (the default), or one JSON object per
line (NDJSON, for log collectors) with C{time} (RFC 3339, UTC), C{level}, C{event} (the
stable name), C{message} (formatted), C{system} and the event's own fields. Events never
carry a credential (the tests check), so nothing here needs to redact.

Chosen with --log-format/--log-level (MEP_AGENT_LOG_FORMAT, MEP_AGENT_LOG_LEVEL), which
install L{observer} as twistd's logger; C{twistd --logger mep_agent.logs.json_observer}
also works.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from zope.interface import implementer

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}
_OMIT = {"log_logger", "log_source", "log_format", "log_trace", "log_io"}


def event_json(event: LogEvent) -> str:
    """One event as one line of JSON."""
    level = event.get("log_level")
    out: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0), timezone.utc).isoformat(
            timespec="milliseconds"
        ),
        "level": level.name if isinstance(level, type(LogLevel.info)) else "info",
        "event": event.get("event"),
        "message": formatEvent(event),
        "system": event.get("log_system") or event.get("log_namespace"),
    }
    failure = event.get("log_failure")
    if failure is not None:
        out["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if key.startswith("log_") or key in _OMIT or key in out or key == "event":
            continue
        out[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
    return json.dumps(out, default=str)


@implementer(ILogObserver)
class JSONLines:
    """Writes each event as one line of JSON (no RFC 7464 record separator)."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: LogEvent) -> None:
        """Write one line."""
        self._out.write(event_json(event) + "\n")
        self._out.flush()


def observer(log_format: str, level: str, out: IO[str] | None = None) -> ILogObserver:
    """The observer for a format ('text' or 'json') that passes C{level} and above."""
    stream = out or sys.stdout
    inner: ILogObserver = (
        JSONLines(stream) if log_format == "json" else textFileLogObserver(stream)
    )
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    return FilteringLogObserver(inner, [predicate])


def factory_name(log_format: str, level: str) -> str:
    """The name twistd --logger takes for a format and level (one of those below)."""
    return f"{__name__}.{log_format}_{level}"


def _factory(log_format: str, level: str) -> Callable[[], ILogObserver]:
    def make() -> ILogObserver:
        return observer(log_format, level)

    make.__doc__ = f"{log_format} lines at level {level} and above, on stdout."
    return make


# twistd's --logger takes the dotted name of a factory: one for each format and level.
for _format in ("text", "json"):
    for _level in LEVELS:
        globals()[f"{_format}_{_level}"] = _factory(_format, _level)


def json_observer() -> ILogObserver:
    """JSON lines at level info on stdout (C{twistd --logger mep_agent.logs.json_observer})."""
    return observer("json", "info")
