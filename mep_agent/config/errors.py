"""The one error a user's configuration can cause: L{ConfigError}, one line naming the setting."""

from __future__ import annotations


class ConfigError(Exception):
    """
    Bad configuration. C{str(error)} is the whole message shown to the operator:
    the setting or YAML path, then the problem. It never contains a secret value.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem
