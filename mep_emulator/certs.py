"""
Certificates for the emulator's HTTPS listener: a fresh CA and a server certificate for
chosen names (default C{edgegallery}), written to a directory so that an agent can be
pointed at the CA file. Made with C{cryptography} directly (pyOpenSSL's own dependency).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any, cast

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion

VALIDITY = datetime.timedelta(days=3650)


@frozen
class ServerCertificates:
    """PEM bytes of the CA certificate, the server certificate and its key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _key() -> rsa.RSAPrivateKey:
    # RSA, as EdgeGallery's gateway certificate: EdgeGallery's Go mep-agent's cipher suites
    # (ECDHE_RSA_*) cannot be negotiated with an ECDSA key.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mep-emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alternative_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def generate(server_names: list[str] | tuple[str, ...] = ("edgegallery",)) -> ServerCertificates:
    """A new CA and a server certificate for C{server_names}, signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    ca_key = _key()
    ca_name = _name("mep-emulator CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = _key()
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(server_names[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([_alternative_name(n) for n in server_names]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ServerCertificates(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=server.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
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
    minimum_tls: TLSVersion = TLSVersion.TLSv1_2,
) -> CertificateOptions:
    """TLS options for the listener; ciphers and other versions serve the TLS tests."""
    key = serialization.load_pem_private_key(certs.key_pem, password=None)
    certificate = x509.load_pem_x509_certificate(certs.cert_pem)
    kwargs: dict[str, object] = {}
    if openssl_ciphers:
        kwargs["acceptableCiphers"] = AcceptableCiphers.fromOpenSSLCipherString(openssl_ciphers)
    if maximum_tls is not None:
        kwargs["lowerMaximumSecurityTo"] = maximum_tls
    if minimum_tls < TLSVersion.TLSv1_2:
        kwargs["insecurelyLowerMinimumTo"] = minimum_tls
    else:
        kwargs["raiseMinimumTo"] = minimum_tls
    # cryptography's objects: pyOpenSSL's own types are deprecated there, though
    # Twisted's annotations still name them.
    options: Any = CertificateOptions
    return cast(CertificateOptions, options(privateKey=key, certificate=certificate, **kwargs))
