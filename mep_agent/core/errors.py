"""
The core's domain errors. They say what went wrong in the agent's terms; the web side
decides what HTTP answer each one is (web/problems.py), in one place.
"""

from __future__ import annotations

from mep_agent.mp1.errors import MepError, NoToken, Verdict

__all__ = ["BadTerminationNotice", "DiscoveryFailed", "NoToken"]


class DiscoveryFailed(Exception):
    """
    A discovery that could not be answered and had nothing cached to serve instead:
    C{unavailable} when the MEP could not answer (no answer, 5xx, a refused token: try
    later), else the MEP refused the request or answered outside the protocol.
    """

    def __init__(self, name: str, error: MepError) -> None:
        super().__init__(f"discovery of {name}: {error}")
        self.name = name
        self.error = error
        self.unavailable = error.verdict in (Verdict.TRANSIENT, Verdict.TOKEN_REFUSED)


class BadTerminationNotice(Exception):
    """A termination notice the agent cannot act on (what is wrong with it, in words)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
