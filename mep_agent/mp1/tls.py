"""
The HTTPS policy for talking to the MEP: trust only the CA_CERT file, check the MEP's
certificate for CA_CERT_DOMAIN_NAME (whatever address we connect to), TLS 1.2 or newer,
and only the configured TLS 1.2 cipher suites.
"""

from __future__ import annotations

import collections
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

# IANA names (what app_conf.yaml uses, as in EdgeGallery's Go mep-agent) -> OpenSSL names. Only
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
# EdgeGallery's Go mep-agent's only two suites, used when app_conf.yaml is absent.
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


@implementer(IOpenSSLClientConnectionCreator)
class _Witness:
    """A connection creator that remembers its connections, to read what the peer sent."""

    def __init__(self, inner: IOpenSSLClientConnectionCreator, seen: Any) -> None:
        self._inner = inner
        self._seen = seen

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:  # noqa: N802, N803
        """The inner creator's connection, remembered (the last few only)."""
        connection = self._inner.clientConnectionForTLS(tlsProtocol)
        self._seen.append(connection)
        return connection


@implementer(IPolicyForHTTPS)
class DiagnosingPolicy:
    """
    The MEP TLS policy, remembering the last connections so that a failed verification
    can be explained with the certificate the MEP presented: its names and its issuer.
    """

    def __init__(self, policy: MepTLSPolicy, ca_path: str, expected_name: str) -> None:
        self._policy = policy
        self._ca_path = ca_path
        self._expected = expected_name
        self._seen: Any = collections.deque(maxlen=8)

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        """The policy's creator, remembering its connections."""
        return _Witness(self._policy.creatorForNetloc(hostname, port), self._seen)

    def presented(self) -> tuple[list[str], str] | None:
        """(names, issuer) of the certificate in the latest connection that got one."""
        for connection in reversed(self._seen):
            chain = connection.get_peer_cert_chain()
            if chain:
                return certificate_names(chain[0].to_cryptography())
        return None

    def explain(self, text: str) -> str | None:
        """One line saying what to check, when C{text} is a TLS verification failure."""
        if "certificate verify failed" in text:
            problem = f"does not chain to a CA in CA_CERT ({self._ca_path})"
        elif "VerificationError" in text or "DNSMismatch" in text or "IPAddressMismatch" in text:
            problem = f"does not carry the name CA_CERT_DOMAIN_NAME={self._expected}"
        else:
            return None
        seen = self.presented()
        shown = (
            f" (it names {', '.join(seen[0]) or 'nothing'}; issued by {seen[1]})" if seen else ""
        )
        return f"TLS: the MEP's certificate{shown} {problem}"


def certificate_names(certificate: Any) -> tuple[list[str], str]:
    """The DNS names and IP addresses a certificate carries (else its CN), and its issuer."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names: list[str] = []
    try:
        alternative = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        names = [str(n) for n in alternative.get_values_for_type(x509.DNSName)]
        names += [str(a) for a in alternative.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return names[:8], certificate.issuer.rfc4514_string()[:200]
