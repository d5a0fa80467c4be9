"""mep-agent: a Twisted sidecar that connects one application to an ETSI MEC platform (MEP)."""

__version__ = "0.1.0"
