"""The error a user's mistake in configuration becomes: one line, naming what is wrong."""


class ConfigError(Exception):
    """
    Bad configuration. C{str(error)} is the whole message shown to the operator:
    the setting or YAML path, then the problem. It never contains a secret value.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem
