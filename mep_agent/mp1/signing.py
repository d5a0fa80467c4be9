"""
SDK-HMAC-SHA256 request signing, as EdgeGallery's mep-agent and mepauth compute it.

Pure functions: nothing here reads the clock or the network. The algorithm is described
in docs/protocol.md ("Signing the token request"); the reference vectors live in
tests/data/sign_vectors.json.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, quote_plus, unquote

ALGORITHM = "SDK-HMAC-SHA256"
SIGNED_HEADERS = ("content-type", "host", "x-sdk-date")
# mepauth rebuilds the request with an empty body, so the payload hash is always this one.
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def sdk_date(seconds: float) -> str:
    """
    Format a POSIX time as x-sdk-date (always UTC; EdgeGallery's Go mep-agent used local
    time + 'Z').
    """
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))


def _go_query_escape(text: str) -> str:
    # Go's url.QueryEscape: A-Za-z0-9 and -_.~ stay, space becomes '+', the rest %XX.
    return quote_plus(text, safe="-_.~")


def canonical_uri(path: str) -> str:
    """Decoded path segments, minus empty, '.' and '..', escaped, always ending in '/'."""
    segments = [s for s in unquote(path).split("/") if s not in ("", ".", "..")]
    return "/" + "".join(_go_query_escape(s) + "/" for s in segments)


def canonical_query(query: str) -> str:
    """The query string as the SDK signs it (sorted, escaped as Go does)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(sorted(f"{_go_query_escape(k)}={_go_query_escape(v)}" for k, v in pairs))


def canonical_request(
    method: str, request_target: str, headers: Mapping[str, Sequence[str]]
) -> str:
    """The six-part canonical request; headers maps lower-case names to their values."""
    # A request target is a path and a query, never an authority: urlsplit would read
    # "//x" as a host name. Split by hand, as the server does with its request-URI.
    path, _, query = request_target.split("#", 1)[0].partition("?")
    names = sorted(headers)
    header_lines = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in headers[name]))}\n" for name in names
    )
    return "\n".join(
        [
            method,
            canonical_uri(path),
            canonical_query(query),
            header_lines,
            ";".join(names),
            EMPTY_BODY_SHA256,
        ]
    )


def string_to_sign(date: str, canonical: str) -> str:
    """The SDK-HMAC-SHA256 string to sign."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{date}\n{digest}"


def signature(secret_key: str, date: str, canonical: str) -> str:
    """The hex HMAC-SHA256 of the string to sign with SK."""
    return hmac.new(
        secret_key.encode("utf-8"),
        string_to_sign(date, canonical).encode("utf-8"),
        hashlib.sha256,
    ).hexdigest()


def token_request_headers(
    access_key: str,
    secret_key: str,
    host: str,
    date: str,
    request_target: str = "/mep/token",
    content_type: str = "application/json",
) -> dict[str, str]:
    """
    The headers of a signed token request: Content-Type, Host, x-sdk-date, Authorization.

    C{host} must be exactly the Host header sent on the wire (with the port), because
    mepauth verifies the signature against the Host it receives.
    """
    signed = {"content-type": [content_type], "host": [host], "x-sdk-date": [date]}
    canonical = canonical_request("POST", request_target, signed)
    sig = signature(secret_key, date, canonical)
    return {
        "Content-Type": content_type,
        "Host": host,
        "x-sdk-date": date,
        "Authorization": (
            f"{ALGORITHM} Access={access_key}, "
            f"SignedHeaders={';'.join(SIGNED_HEADERS)}, Signature={sig}"
        ),
    }
