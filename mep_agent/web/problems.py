"""
L{ApiProblem}: an answer the application API gives instead of a result, written as JSON in
one place (jsonweb); never carries a secret. L{problem_for} is where the core's domain
errors become such answers.
"""

from __future__ import annotations

from typing import Any

from mep_agent.core.errors import BadTerminationNotice, DiscoveryFailed, NoToken


class ApiProblem(Exception):
    """
    An application API answer other than success: C{status}, a message and JSON fields.
    Raised anywhere below a route and turned into a JSON body by C{handle_errors}.
    """

    #: Response headers the answer carries (e.g. WWW-Authenticate with a 401).
    headers: dict[str, str] = {}

    def __init__(self, status: int, message: str, **fields: Any) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.fields = fields


#: The core's errors that reach a route; each one's answer is decided in L{problem_for}.
DOMAIN_ERRORS: tuple[type[Exception], ...] = (NoToken, DiscoveryFailed, BadTerminationNotice)


def problem_for(error: Exception) -> ApiProblem:
    """The answer to an error that reached a route: the one place domain errors become HTTP."""
    if isinstance(error, ApiProblem):
        return error
    if isinstance(error, NoToken):
        if error.first:  # 412: nothing to serve yet, unlike a lapse of a token served before
            return ApiProblem(
                412, "no token yet: the agent has not obtained one from the MEP", state=error.state
            )
        return ApiProblem(503, f"no valid token: {error.reason}", state=error.state)
    if isinstance(error, DiscoveryFailed):
        if error.unavailable:
            message = "the MEP cannot be reached and nothing is cached"
            return ApiProblem(503, message, serName=error.name, cause=str(error.error))
        message = "the MEP refused the discovery request"
        return ApiProblem(502, message, serName=error.name, cause=str(error.error))
    if isinstance(error, BadTerminationNotice):
        return ApiProblem(400, error.problem)
    raise TypeError(f"not a domain error: {type(error).__name__}")
