"""
The HTTPS policy for talking to the MEP: trust only the CA_CERT file, check the MEP's
certificate for CA_CERT_DOMAIN_NAME (whatever address we connect to), TLS 1.2 or newer,
and only the configured TLS 1.2 cipher suites.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from attrs import frozen
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    AcceptableCiphers,
    Certificate,
    TLSVersion,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

# IANA names (what app_conf.yaml uses, as in the original) -> OpenSSL names. Only
# forward-secret AEAD suites: the CBC and static-RSA suites are refused on purpose.
# These apply to TLS 1.2; TLS 1.3 always uses OpenSSL's (AEAD-only) TLS 1.3 suites.
IANA_TO_OPENSSL: dict[str, str] = {
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# The original agent's only two suites, used when app_conf.yaml is absent.
DEFAULT_CIPHERS = (
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
)

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def pem_certificates(data: bytes) -> list[bytes]:
    """Every PEM certificate block in data, each checked to load; ValueError otherwise."""
    blocks = _PEM_CERTIFICATE.findall(data)
    if not blocks:
        raise ValueError("no PEM certificate in the file")
    for number, block in enumerate(blocks, 1):
        try:
            Certificate.loadPEM(block)
        except Exception as e:  # pyOpenSSL raises its own Error type with a list of reasons
            raise ValueError(f"certificate {number} in the file does not load ({e})") from None
    return blocks


@implementer(IPolicyForHTTPS)
@frozen
class MepTLSPolicy:
    """
    One client TLS configuration for the MEP: the agent connects to MEP_IP but expects the
    certificate of CA_CERT_DOMAIN_NAME. Another host (an OAuth 2.0 token endpoint) is
    verified with the same CA file, suites and minimum version, against its own name.
    """

    _creator: IOpenSSLClientConnectionCreator
    _mep_host: str | None = None
    _others: Any = None  # host -> creator, for hosts other than the MEP

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        """The MEP's creator for the MEP (whatever address dialled); a per-host one else."""
        host = hostname.decode("ascii", "replace").strip("[]")
        if self._others is None or self._mep_host is None or host == self._mep_host:
            return self._creator
        creator: IOpenSSLClientConnectionCreator = self._others(host)
        return creator


def client_policy(
    ca_pems: list[bytes] | tuple[bytes, ...],
    expected_name: str,
    ciphers: tuple[str, ...],
    mep_host: str | None = None,
) -> MepTLSPolicy:
    """
    The MEP TLS policy: CA_CERT's certificates, the expected name, the suites.

    @param mep_host: MEP_IP; connections to any other host expect that host's own name.
    """
    trust = trustRootFromCertificates([Certificate.loadPEM(pem) for pem in ca_pems])
    acceptable = AcceptableCiphers.fromOpenSSLCipherString(
        ":".join(IANA_TO_OPENSSL[name] for name in ciphers)
    )
    options = {"raiseMinimumTo": TLSVersion.TLSv1_2, "acceptableCiphers": acceptable}

    @functools.lru_cache(maxsize=16)
    def for_host(host: str) -> IOpenSSLClientConnectionCreator:
        return optionsForClientTLS(host, trustRoot=trust, extraCertificateOptions=dict(options))

    creator = optionsForClientTLS(
        expected_name, trustRoot=trust, extraCertificateOptions=dict(options)
    )
    return MepTLSPolicy(creator, mep_host, for_host)
