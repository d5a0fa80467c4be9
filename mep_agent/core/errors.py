"""The core's own errors, which the web side maps to HTTP answers."""

from __future__ import annotations

from mep_agent.web.problems import ApiProblem


class TokenUnavailable(ApiProblem):
    """No valid token within the caller's deadline: 412 before the first one, else 503."""

    def __init__(self, first: bool, state: str, reason: str) -> None:
        if first:
            super().__init__(
                412, "no token yet: the agent has not obtained one from the MEP", state=state
            )
        else:
            super().__init__(503, f"no valid token: {reason}", state=state)
        self.first = first
        self.reason = reason
