"""
mepauth and the Kong gateway, emulated: SDK-HMAC-SHA256 verification in mepauth's order
of checks (docs/protocol.md, "How mepauth answers"), the AK lock-out, and the bearer
tokens Mp1 calls carry.

The canonicalisation here is written independently of mep_agent.mp1.signing on purpose: if
both were one function, a bug in it would pass every test of agent against emulator.
Both are checked against the upstream vectors separately.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from urllib.parse import unquote

from attrs import define, field, frozen

AUTH_HEADER = re.compile(
    r"^SDK-HMAC-SHA256 Access=([\w=+/]{20}), SignedHeaders=([^, ]{28}), Signature=([^, ]{64})$",
    re.ASCII,
)
#: An access key mepauth accepts in the Authorization header.
ACCESS_KEY = re.compile(r"[A-Za-z0-9_=+/]{20}")
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")

LOCK_WINDOW = 300.0  # seconds in which bad signatures are counted
LOCK_AFTER = 3  # the third bad signature locks the AK
LOCK_DURATION = 900.0


def go_query_escape(text: str) -> str:
    """Go's url.QueryEscape, byte by byte."""
    out = []
    for byte in text.encode("utf-8"):
        if byte in _UNRESERVED:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _go_query_unescape(text: str) -> str:
    return unquote(text.replace("+", " "))


def server_canonical_request(request_uri: str, signed: list[tuple[str, str]]) -> str:
    """
    The canonical request as mepauth rebuilds it: method always POST, empty body,
    the received request-URI, and exactly the signed headers with their first value.
    """
    path, _, query = request_uri.partition("?")
    path = path.split("#", 1)[0]
    segments = []
    for raw in unquote(path).split("/"):
        if raw and raw not in (".", ".."):
            segments.append(go_query_escape(raw) + "/")
    uri = "/" + "".join(segments)
    pairs = []
    for part in query.split("&") if query else []:
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append(
            go_query_escape(_go_query_unescape(key))
            + "="
            + go_query_escape(_go_query_unescape(value))
        )
    pairs.sort()
    lines = sorted(f"{name.lower()}:{value.strip()}" for name, value in signed)
    names = sorted(name.lower() for name, _ in signed)
    return (
        "POST\n"
        + uri
        + "\n"
        + "&".join(pairs)
        + "\n"
        + "".join(line + "\n" for line in lines)
        + "\n"
        + ";".join(names)
        + "\n"
        + hashlib.sha256(b"").hexdigest()
    )


def server_signature(secret_key: str, date: str, canonical: str) -> str:
    """mepauth's HMAC-SHA256 of the string to sign, hex."""
    hashed = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join(("SDK-HMAC-SHA256", date, hashed))
    return hmac.new(secret_key.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def valid_sdk_date(value: str) -> bool:
    """Whether C{value} has mepauth's x-sdk-date format."""
    match = _DATE.match(value)
    if not match:
        return False
    try:
        time.strptime(value[:-1], "%Y%m%dT%H%M%S")
    except ValueError:
        return False
    return True


@frozen
class App:
    """
    One application instance known to the MEP, with its AK/SK and the requiredServices
    mepauth keeps beside them (None: every service, as EdgeGallery's ["service-discovery"]).
    """

    access_key: str
    secret_key: str = field(repr=False)
    app_instance_id: str
    required_services: tuple[str, ...] | None = None

    def may_discover(self, name: str) -> bool:
        """
        Whether mepserver's discovery answers this app instances of C{name}: only names in
        its requiredServices, unless one of them holds "service-discovery" (mepserver tests
        the stored JSON text for that substring; mepserver/mp1/plan_svc_discover.go,
        Mp1CvtSrvAuthenDiscover).
        """
        required = self.required_services
        if required is None or any("service-discovery" in r for r in required):
            return True
        return name in required


@frozen
class AuthOutcome:
    """What the token endpoint answers: an HTTP status and a JSON body."""

    status: int
    body: object
    app: App | None = None


@define
class _FailureCount:
    window_start: float
    count: int


@define
class Lockout:
    """mepauth's block list: LOCK_AFTER bad signatures in LOCK_WINDOW lock for LOCK_DURATION."""

    _failures: dict[str, _FailureCount] = field(factory=dict)
    _locked_until: dict[str, float] = field(factory=dict)

    def is_locked(self, access_key: str, now: float) -> bool:
        """Whether the AK is locked now (an expired lock is lifted)."""
        until = self._locked_until.get(access_key)
        if until is None:
            return False
        if now >= until:
            del self._locked_until[access_key]
            return False
        return True

    def record_failure(self, access_key: str, now: float) -> None:
        """Count a refused signature; the third within the window locks the AK."""
        entry = self._failures.get(access_key)
        if entry is None or now - entry.window_start > LOCK_WINDOW:
            entry = self._failures[access_key] = _FailureCount(now, 0)
        entry.count += 1
        if entry.count >= LOCK_AFTER:
            self._locked_until[access_key] = now + LOCK_DURATION
            del self._failures[access_key]

    def clear(self, access_key: str) -> None:
        """A good signature clears the AK's count."""
        self._failures.pop(access_key, None)

    def unlock_all(self) -> None:
        """Lift every lock and count."""
        self._failures.clear()
        self._locked_until.clear()


def verify_token_request(
    apps: dict[str, App],
    lockout: Lockout,
    now: float,
    header: Callable[[str], str | None],
    request_uri: str,
) -> AuthOutcome:
    """mepauth's TokenController.Post, in its order of checks."""
    match = AUTH_HEADER.match(header("authorization") or "")
    if not match:
        return AuthOutcome(400, "Bad auth header format")
    access_key, signed_names, given = match.groups()
    date = header("x-sdk-date") or ""
    if not valid_sdk_date(date):
        return AuthOutcome(400, "Bad x-sdk-time format")
    if lockout.is_locked(access_key, now):
        return AuthOutcome(403, "Access is locked.")
    app = apps.get(access_key)
    if app is None:
        return AuthOutcome(401, "Invalid access or signature.")
    signed = [(name, header(name) or "") for name in signed_names.split(";") if name != "host"]
    signed.append(("host", header("host") or ""))
    expected = server_signature(
        app.secret_key, date, server_canonical_request(request_uri, signed)
    )
    if not hmac.compare_digest(expected, given):
        lockout.record_failure(access_key, now)
        return AuthOutcome(401, "Invalid access or signature.")
    lockout.clear(access_key)
    return AuthOutcome(200, None, app)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@frozen
class TokenCheck:
    """The gateway's verdict on a bearer token: an error (status, body) or the app id."""

    status: int
    body: object
    app_instance_id: str | None = None


@define
class TokenIssuer:
    """
    Mints JWT-shaped tokens (claims exp, iss, sub = app instance id, clientip) signed
    with a per-emulator key, and checks them the way Kong's jwt plugin answers.
    """

    key: bytes = field(factory=lambda: secrets.token_bytes(32), repr=False)
    issuer: str = "mepauth"

    def rotate(self) -> None:
        """Sign with a new key from now on: earlier tokens fail with "Invalid signature"."""
        self.key = secrets.token_bytes(32)

    def mint(self, app_instance_id: str, now: float, lifetime: int) -> str:
        """A new token for the app, valid for C{lifetime} seconds."""
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "exp": int(now) + lifetime,
            "iss": self.issuer,
            "sub": app_instance_id,
            "clientip": "127.0.0.1",
            "jti": secrets.token_hex(8),
        }
        payload = _b64(json.dumps(claims).encode())
        signature = hmac.new(self.key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def check(self, authorization: str | None, now: float) -> TokenCheck:
        """Kong's verdict on an Authorization header."""
        match = re.match(r"\s*[Bb]earer\s+(.+)", authorization or "")
        if not match:
            return TokenCheck(401, {"message": "Unauthorized"})
        parts = match.group(1).strip().split(".")
        try:
            header_b64, payload_b64, signature_b64 = parts
            claims = json.loads(_unb64(payload_b64))
            signature = _unb64(signature_b64)
        except (ValueError, TypeError):
            return TokenCheck(401, {"message": "Bad token; invalid JSON"})
        if not isinstance(claims, dict) or "iss" not in claims:
            return TokenCheck(401, {"message": "No mandatory 'iss' in claims"})
        if claims["iss"] != self.issuer:
            return TokenCheck(403, {"message": "No credentials found for given 'iss'"})
        expected = hmac.new(self.key, f"{header_b64}.{payload_b64}".encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.digest(), signature):
            return TokenCheck(403, {"message": "Invalid signature"})
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
            return TokenCheck(401, {"exp": "token expired"})
        return TokenCheck(200, None, str(claims.get("sub")))
