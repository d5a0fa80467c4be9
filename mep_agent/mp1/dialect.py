"""
The two platforms the agent talks to, each as one small object chosen once in the
configuration and handed to what needs it (docs/protocol.md, "MEC 011 v2.2.1 platforms").

EdgeGallery's MEP follows MEC 011 v2.1.1 with its own token endpoint and PUT liveness;
standard platforms follow MEC 011 v2.2.1 (docs/protocol.md). Where they differ: how the token is
had (by default), how strictly a ServiceInfoPost is validated, which service names
discovery accepts, how the MEP's links are written, and how late a heartbeat may be.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from attrs import frozen

# mepserver's serName rule (go-playground tags): discovery of anything else is a MEP 400.
_EDGEGALLERY_NAME = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9_-]{0,126}[a-zA-Z0-9])?")
# MEC 011's SerName is a plain string: any non-empty name without control characters.
_ETSI_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


def mepserver_grace(interval: int) -> float:
    """mepserver's heartbeat.go: suspended after interval + min(ceil(5 %), 5) seconds."""
    return float(min(math.ceil(0.05 * interval), 5))


def no_grace(interval: int) -> float:
    """MEC 011 gives no grace: the deadline is the interval itself."""
    return 0.0


@frozen
class Dialect:
    """What differs between the platforms; everything else is shared."""

    name: str
    #: EdgeGallery's mepserver writes links as paths without the gateway's root
    #: ("/mec_service_mgmt/v1/…" behind "/mep"): such a path lies under the API root.
    links_under_root: bool
    #: The app_instance_info.yaml rules: mepserver's (lenient) or ServiceInfoPost's.
    etsi_validation: bool
    #: The service names GET /mep-agent/v1/endpoint/{name} passes on to the MEP.
    discovery_name: re.Pattern[str]
    discovery_name_rule: str
    #: Seconds past its liveness interval before the MEP suspends a service: mepserver's
    #: rule, or none (MEC 011 names no grace, so none is assumed).
    liveness_grace: Callable[[int], float]
    #: Whether confirm_ready must complete before any other Mp1 call: MEC 011 v2.2.1
    #: platforms refuse every call before it; EdgeGallery's mepserver accepts it any time.
    ready_first: bool = False
    #: What a repair of only the state sends: the ServiceInfo the MEP holds with the state
    #: changed (MEC 011 v2.2.1 platforms refuse any other change), or the agent's own body
    #: (mepserver presents a service with the gateway's URI and empty fields, and refuses
    #: that presentation when it is sent back).
    restore_sends_held: bool = True
    #: Whether the platform deletes the app's services and subscriptions itself, at once,
    #: when it terminates the app (mepserver does, and fails MECM's termination when the app
    #: deleted one first): then the agent leaves them to it.
    deletes_at_termination: bool = False

    def default_auth(self, token_url: str | None) -> str:
        """--auth when it is not given."""
        if self.name == "edgegallery":
            return "aksk"
        return "oauth2" if token_url else "none"

    def valid_discovery_name(self, name: str) -> bool:
        """Whether discovery passes C{name} on to the MEP (else 400, the MEP not asked)."""
        return bool(self.discovery_name.fullmatch(name))


EDGEGALLERY = Dialect(
    "edgegallery",
    links_under_root=True,
    etsi_validation=False,
    discovery_name=_EDGEGALLERY_NAME,
    discovery_name_rule="up to 128 letters, digits, '_' or '-' (not first or last)",
    liveness_grace=mepserver_grace,
    restore_sends_held=False,
    deletes_at_termination=True,
)
ETSI = Dialect(
    "etsi",
    links_under_root=False,
    etsi_validation=True,
    discovery_name=_ETSI_NAME,
    discovery_name_rule="1 to 256 characters, no control characters",
    liveness_grace=no_grace,
    ready_first=True,
)
DIALECTS = {d.name: d for d in (EDGEGALLERY, ETSI)}
