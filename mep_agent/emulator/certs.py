"""
Certificates for the emulator's HTTPS listener: a fresh CA and a server certificate
for a chosen name (default C{edgegallery}), written to a directory so that an agent can
be pointed at the CA file. trustme generates them (it exists for exactly this).
"""

from __future__ import annotations

import os

import trustme
from attrs import frozen
from twisted.internet.ssl import (
    AcceptableCiphers,
    CertificateOptions,
    PrivateCertificate,
    TLSVersion,
)


@frozen
class ServerCertificates:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def generate(server_names: list[str] | tuple[str, ...] = ("edgegallery",)) -> ServerCertificates:
    # RSA, as EdgeGallery's gateway certificate: the original agent's cipher suites
    # (ECDHE_RSA_*) cannot be negotiated with trustme's default ECDSA keys.
    ca = trustme.CA(organization_name="mep-emulator", key_type=trustme.KeyType.RSA)
    server = ca.issue_cert(*server_names, key_type=trustme.KeyType.RSA)
    return ServerCertificates(
        ca_pem=ca.cert_pem.bytes(),
        cert_pem=b"".join(blob.bytes() for blob in server.cert_chain_pems),
        key_pem=server.private_key_pem.bytes(),
    )


def write(certs: ServerCertificates, directory: str) -> dict[str, str]:
    """Write ca.crt, server.crt and server.key (0600) into directory; return the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for name, data in (
        ("ca.crt", certs.ca_pem),
        ("server.crt", certs.cert_pem),
        ("server.key", certs.key_pem),
    ):
        path = os.path.join(directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        paths[name] = path
    return paths


def server_options(
    certs: ServerCertificates,
    openssl_ciphers: str | None = None,
    maximum_tls: TLSVersion | None = None,
) -> CertificateOptions:
    """TLS options for the listener; ciphers and a maximum version serve the TLS tests."""
    private = PrivateCertificate.loadPEM(certs.key_pem + certs.cert_pem)
    kwargs: dict = {}
    if openssl_ciphers:
        kwargs["acceptableCiphers"] = AcceptableCiphers.fromOpenSSLCipherString(openssl_ciphers)
    if maximum_tls is not None:
        kwargs["lowerMaximumSecurityTo"] = maximum_tls
    return CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        raiseMinimumTo=TLSVersion.TLSv1_2,
        **kwargs,
    )
