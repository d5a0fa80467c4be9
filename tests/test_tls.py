"""
Integration tests of mep_agent.mp1.tls: real TLS handshakes on 127.0.0.1 between the agent's
HTTP client and a server with generated certificates.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.trial.unittest import TestCase
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import Site

from mep_agent.mp1 import http, tls
from mep_emulator import certs

# The global reactor is typed as its smallest interface; these tests use its TCP/TLS side.
reactor: Any = _reactor


async def get(client: http.MepHttp, url: str) -> bytes:
    """GET C{url} within 5 s: the body."""
    response = await client.request("GET", url, {}).addTimeout(5, reactor)
    return await http.read_body(response, 1000)


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: object) -> bytes:
        return b"hello"


def lower_security_level(creator: object) -> None:
    """
    Let OpenSSL's security level allow TLS 1.0/1.1 in a client context (reached through
    Twisted's internals: test-only), so that only a minimum version can refuse them.
    """
    options = creator._createConnection.__self__  # type: ignore[attr-defined]
    options.getContext().set_cipher_list(b"DEFAULT:@SECLEVEL=0")


class HandshakeTests(TestCase):
    """Each test starts one HTTPS listener on 127.0.0.1 and connects the agent's client."""

    def setUp(self) -> None:
        self.server_certs = certs.generate(["edgegallery"])

    def listen(self, options: CertificateOptions) -> int:
        port = reactor.listenSSL(0, Site(Hello()), options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return number

    def tls11_server(self) -> CertificateOptions:
        """A server that speaks TLS 1.0 and 1.1 only, at OpenSSL's lowest security level."""
        options = certs.server_options(
            self.server_certs, minimum_tls=TLSVersion.TLSv1_0, maximum_tls=TLSVersion.TLSv1_1
        )
        options.getContext().set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        return options

    def client(
        self,
        ca_pems: list[bytes],
        name: str = "edgegallery",
        ciphers: tuple[str, ...] = tls.DEFAULT_CIPHERS,
    ) -> http.MepHttp:
        agent, pool = http.pooled_agent(reactor, tls.client_policy(ca_pems, name, ciphers), 5)
        self.addCleanup(pool.closeCachedConnections)
        return http.MepHttp(agent)

    async def get(self, client: http.MepHttp, port: int) -> bytes:
        return await get(client, f"https://127.0.0.1:{port}/")

    async def test_right_ca_and_name(self) -> None:
        """The right CA and name give a working HTTPS request to an address."""
        port = self.listen(certs.server_options(self.server_certs))
        body = await self.get(self.client([self.server_certs.ca_pem]), port)
        self.assertEqual(body, b"hello")

    async def test_every_ca_in_file_trusted(self) -> None:
        """A CA anywhere in a multi-certificate CA file is trusted."""
        other = certs.generate().ca_pem
        port = self.listen(certs.server_options(self.server_certs))
        pems = tls.pem_certificates(other + self.server_certs.ca_pem)
        self.assertEqual(len(pems), 2)
        self.assertEqual(await self.get(self.client(pems), port), b"hello")

    async def test_unknown_ca_fails(self) -> None:
        """A certificate from another CA is refused."""
        port = self.listen(certs.server_options(self.server_certs))
        with self.assertRaises(Exception) as caught:
            await self.get(self.client([certs.generate().ca_pem]), port)
        self.assertIn("certificate verify failed", str(caught.exception))

    async def test_wrong_name_fails(self) -> None:
        """A certificate for another name is refused although the CA is right."""
        port = self.listen(certs.server_options(self.server_certs))
        with self.assertRaises(Exception) as caught:
            await self.get(self.client([self.server_certs.ca_pem], name="mep.example"), port)
        self.assertIn("VerificationError", repr(caught.exception))

    async def test_no_shared_cipher_fails(self) -> None:
        """A TLS 1.2 server offering none of the configured suites is refused."""
        options = certs.server_options(
            self.server_certs, "ECDHE-RSA-CHACHA20-POLY1305", maximum_tls=TLSVersion.TLSv1_2
        )
        port = self.listen(options)
        with self.assertRaises(Exception) as caught:
            await self.get(self.client([self.server_certs.ca_pem]), port)
        self.assertIn("handshake failure", str(caught.exception))

    async def test_tls12_with_shared_cipher(self) -> None:
        """A TLS 1.2-only server with a configured suite works (the cipher list is used)."""
        options = certs.server_options(
            self.server_certs, "ECDHE-RSA-CHACHA20-POLY1305", maximum_tls=TLSVersion.TLSv1_2
        )
        port = self.listen(options)
        client = self.client(
            [self.server_certs.ca_pem], ciphers=("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",)
        )
        self.assertEqual(await self.get(client, port), b"hello")

    async def test_old_tls_refused(self) -> None:
        """A server that speaks at most TLS 1.1 is refused, by the agent's own minimum."""
        port = self.listen(self.tls11_server())
        policy = tls.client_policy([self.server_certs.ca_pem], "edgegallery", tls.DEFAULT_CIPHERS)
        # A client context that OpenSSL's security level would let speak TLS 1.1: only
        # the minimum version the agent sets can refuse the server now.
        lower_security_level(policy.creatorForNetloc(b"127.0.0.1", port))
        agent, pool = http.pooled_agent(reactor, policy, 5)
        self.addCleanup(pool.closeCachedConnections)
        with self.assertRaises(ResponseNeverReceived) as caught:
            await self.get(http.MepHttp(agent), port)
        self.assertIn("SSL", repr(caught.exception))

    async def test_tls11_possible_without_the_minimum(self) -> None:
        """The check above can fail: the same client without the minimum speaks TLS 1.1."""
        from twisted.internet.ssl import Certificate as TwistedCertificate
        from twisted.internet.ssl import optionsForClientTLS, trustRootFromCertificates

        port = self.listen(self.tls11_server())
        creator = optionsForClientTLS(
            "edgegallery",
            trustRoot=trustRootFromCertificates(
                [TwistedCertificate.loadPEM(self.server_certs.ca_pem)]
            ),
            extraCertificateOptions={"insecurelyLowerMinimumTo": TLSVersion.TLSv1_0},
        )
        lower_security_level(creator)
        agent, pool = http.pooled_agent(reactor, tls.MepTLSPolicy(creator), 5)
        self.addCleanup(pool.closeCachedConnections)
        self.assertEqual(await self.get(http.MepHttp(agent), port), b"hello")


class DiagnosisTests(TestCase):
    """TLS failures explained with the setting to check and what the MEP presented."""

    def setUp(self) -> None:
        self.server_certs = certs.generate(["edgegallery"])

    async def failure(self, ca_pems: list[bytes], name: str) -> tuple[str, tls.DiagnosingPolicy]:
        port = reactor.listenSSL(
            0, Site(Hello()), certs.server_options(self.server_certs), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        policy = tls.DiagnosingPolicy(
            tls.client_policy(ca_pems, name, tls.DEFAULT_CIPHERS), "/etc/mep/ca.crt", name
        )
        agent, pool = http.pooled_agent(reactor, policy, 5)
        self.addCleanup(pool.closeCachedConnections)
        client = http.MepHttp(agent)
        try:
            await get(client, f"https://127.0.0.1:{port.getHost().port}/")
        except Exception as e:
            return repr(e), policy
        raise AssertionError("the handshake succeeded")

    async def test_unknown_ca_explained(self) -> None:
        """Another CA: names CA_CERT's file, the certificate's names and its issuer."""
        text, policy = await self.failure([certs.generate().ca_pem], "edgegallery")
        advice = policy.explain(text)
        assert advice is not None
        self.assertIn("does not chain to a CA in CA_CERT (/etc/mep/ca.crt)", advice)
        self.assertIn("it names edgegallery; issued by CN=mep-emulator CA", advice)

    async def test_wrong_name_explained(self) -> None:
        """A wrong CA_CERT_DOMAIN_NAME: names the setting and the names the MEP carries."""
        text, policy = await self.failure([self.server_certs.ca_pem], "mep.example")
        advice = policy.explain(text)
        assert advice is not None
        self.assertIn("does not carry the name CA_CERT_DOMAIN_NAME=mep.example", advice)
        self.assertIn("it names edgegallery", advice)

    def test_other_hosts_verified_against_their_own_name(self) -> None:
        """A token endpoint on another host gets the same CA and suites, its own name."""
        policy = tls.client_policy(
            [self.server_certs.ca_pem], "edgegallery", tls.DEFAULT_CIPHERS, "10.0.0.1"
        )
        mep = policy.creatorForNetloc(b"10.0.0.1", 8443)
        other = policy.creatorForNetloc(b"auth.example", 443)
        self.assertIsNot(mep, other)
        self.assertEqual(other._hostnameASCII, "auth.example")  # type: ignore[attr-defined]
        self.assertEqual(mep._hostnameASCII, "edgegallery")  # type: ignore[attr-defined]
        self.assertIs(policy.creatorForNetloc(b"auth.example", 443), other)
