"""
L{MepAuth}: asks the MEP for a token (EdgeGallery's mepauth signed with AK/SK, or OAuth2
client credentials; docs/protocol.md), and checks the answer.
"""

from __future__ import annotations

import base64
import math
from typing import Any
from urllib.parse import quote, urlencode

from mep_agent.mp1 import signing
from mep_agent.mp1.gate import Pace
from mep_agent.mp1.tokens import Token
from mep_agent.mp1.wire import MepWire
from mep_agent.util.secret import Secret

MIN_LIFETIME = 1  # expires_in is clamped into [MIN_LIFETIME, MAX_LIFETIME] seconds
MAX_LIFETIME = 24 * 3600


def lifetime(value: Any) -> int:
    """
    C{expires_in} as whole seconds within [MIN_LIFETIME, MAX_LIFETIME]; ValueError when
    it is not a positive finite number (or a string of digits, as EdgeGallery's docs show).
    """
    if isinstance(value, str) and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expires_in is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expires_in is not finite")
    if value <= 0:
        raise ValueError("expires_in is not positive")
    return int(max(MIN_LIFETIME, min(MAX_LIFETIME, value)))


class MepAuth:
    """Asks the MEP for tokens; the token keeper's only way to the MEP."""

    def __init__(self, wire: MepWire, api_root: str = "/mep") -> None:
        self._wire = wire
        self._root = api_root

    async def fetch_token(self, urgent_until: float | None = None) -> Token:
        """
        POST <api root>/token signed with AK/SK (EdgeGallery's mepauth); C{urgent_until}:
        a caller that cannot wait needs it by then (the request goes before the others).
        """
        access_key = self._wire.credentials.access_key
        secret_key = self._wire.credentials.secret_key
        assert access_key is not None and secret_key is not None  # config requires them
        headers = signing.token_request_headers(
            access_key.reveal(),
            secret_key.reveal(),
            self._wire.host,
            signing.sdk_date(self._wire.clock.seconds()),
            f"{self._root}/token",
        )
        _, body, _ = await self._wire.call(
            "token", "POST", f"{self._root}/token", (200,), headers, pace=Pace(urgent_until)
        )
        return self._token("token", body)

    async def fetch_oauth2_token(self, urgent_until: float | None = None) -> Token:
        """RFC 6749 section 4.4: client credentials, the client authenticated with Basic."""
        client = self._wire.credentials.oauth2
        assert client is not None  # config requires it with --auth oauth2
        form = {"grant_type": "client_credentials"}
        if client.scope:
            form["scope"] = client.scope
        # Section 2.3.1: id and secret are form-encoded, then joined for Basic.
        basic = base64.b64encode(
            f"{quote(client.client_id.reveal(), safe='')}:"
            f"{quote(client.client_secret.reveal(), safe='')}".encode()
        ).decode()
        headers = {
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        _, body, _ = await self._wire.call(
            "token",
            "POST",
            client.token_url,
            (200,),
            headers,
            urlencode(form).encode(),
            pace=Pace(urgent_until),
        )
        return self._token("token", body)

    def no_token(self) -> Token:
        """--auth none: a token that sends no Authorization header (valid for a day)."""
        return Token(Secret(""), "Bearer", MAX_LIFETIME, self._wire.clock.seconds())

    def _token(self, operation: str, body: Any) -> Token:
        try:
            access = body["access_token"]
            expires_in = lifetime(body["expires_in"])
            token_type = body.get("token_type", "Bearer")
            if not isinstance(access, str) or not access or not isinstance(token_type, str):
                raise ValueError("access_token or token_type is not a string")
            if len(access) > 16384:
                raise ValueError("access_token is longer than 16384 characters")
        except (KeyError, TypeError, AttributeError):
            raise self._wire.unexpected(
                operation, 200, "answer without access_token/expires_in"
            ) from None
        except ValueError as e:
            raise self._wire.unexpected(operation, 200, f"bad token answer: {e}") from None
        return Token(Secret(access), token_type, expires_in, self._wire.clock.seconds())
