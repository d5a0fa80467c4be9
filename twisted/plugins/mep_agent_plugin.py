"""twistd plugin drop-in: `twistd mep-agent`."""

from twisted.application.service import ServiceMaker

mep_agent = ServiceMaker(
    "mep-agent",
    "mep_agent.tap",
    "ETSI MEC sidecar: MEP token, service registration, API",
    "mep-agent",
)
