"""
The token seam between the Mp1 client and whoever keeps the token: L{Token}, and the
L{TokenSource} protocol the client takes (the core's token keeper provides it).
"""

from __future__ import annotations

from typing import Protocol

from attrs import frozen

from mep_agent.mp1.errors import MepError
from mep_agent.util.secret import Secret


@frozen
class Token:
    """A bearer token from the MEP; the value prints as <redacted>."""

    access_token: Secret
    token_type: str
    expires_in: int
    obtained_at: float

    @property
    def expires_at(self) -> float:
        """When the MEP stops accepting it (clock seconds)."""
        return self.obtained_at + self.expires_in

    def authorization(self) -> str | None:
        """The Authorization header value (None with --auth none: no header at all)."""
        value = self.access_token.reveal()
        # mepauth answers "Bearer"; Kong matches [Bb]earer, so normalise the case.
        return f"Bearer {value}" if value else None


class TokenSource(Protocol):
    """
    Where the Mp1 client gets its token (the core's token keeper): a valid one within
    C{timeout} seconds (L{mep_agent.mp1.errors.NoToken} otherwise), and told when the MEP
    refused one, which is then never used again.
    """

    async def get(self, timeout: float, hurry: bool = False) -> Token:
        """A valid token within C{timeout}; C{hurry}: the caller cannot wait a backoff."""
        ...

    def invalidate(self, token: Token, error: MepError) -> None:
        """The MEP refused C{token}."""
        ...
