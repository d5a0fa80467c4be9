"""
What identifies the app to the MEP: AK/SK with the app instance id (EdgeGallery's mepauth),
or OAuth2 client credentials. Every value is a L{Secret}: it prints as <redacted>.
"""

from __future__ import annotations

from attrs import frozen

from mep_agent.util.secret import Secret


@frozen
class OAuth2Client:
    """RFC 6749 client credentials: where to ask, and who asks (secrets redacted)."""

    token_url: str
    client_id: Secret
    client_secret: Secret
    scope: str | None = None


@frozen
class Credentials:
    """What identifies this app to the MEP; every field prints as <redacted>."""

    access_key: Secret | None
    secret_key: Secret | None
    app_instance_id: Secret
    oauth2: OAuth2Client | None = None

    def all(self) -> tuple[Secret, ...]:
        """Every secret, for redaction."""
        secrets = [self.access_key, self.secret_key, self.app_instance_id]
        if self.oauth2 is not None:
            secrets += [self.oauth2.client_id, self.oauth2.client_secret]
        return tuple(s for s in secrets if s is not None)
