"""
Command-line mistakes as one line. twistd answers a usage error by printing the whole
--help (about 180 lines for the agent) and only then the line that says what was wrong;
these Options end the process with that one line instead: the option named, the closest
real one when there is one, and where to find the rest.
"""

from __future__ import annotations

import difflib
import re

from twisted.python import usage

_UNKNOWN = re.compile(r"option (-{1,2}[^\s]+) not recognized")


def one_line(program: str, error: usage.UsageError, options: list[str]) -> str:
    """
    The line for C{error}: for an unknown option its name, a close match among
    C{options} (long names without dashes) if there is one, and "see --help".
    """
    message = str(error).rstrip(".")
    unknown = _UNKNOWN.fullmatch(message)
    if unknown is None:
        return f"{program}: {message}; see twistd {program} --help"
    given = unknown.group(1)
    close = difflib.get_close_matches(given.lstrip("-").split("=")[0], options, n=1)
    hint = f" (did you mean --{close[0]}?)" if close else ""
    return f"{program}: unknown option {given}{hint}; see twistd {program} --help"


class OneLineOptions(usage.Options):
    """usage.Options whose mistakes end the process with one line (see the module)."""

    program = "mep-agent"

    def parseOptions(self, options: list[str] | None = None) -> None:  # noqa: N802
        """Parse; SystemExit with one line (exit status 1) on a usage error."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            names = [name.rstrip("=") for name in self.longOpt]
            raise SystemExit(one_line(self.program, e, names)) from None
