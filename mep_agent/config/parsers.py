"""
How each setting's text becomes a value: the parsers the settings table names, the closed
choices as enums, and the conditions under which a setting is required. Every parser
takes the text and where it came from (an option or env variable, for the one-line
error), and raises L{ConfigError} naming it.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from mep_agent.config.errors import ConfigError
from mep_agent.mp1 import links
from mep_agent.mp1.dialect import DIALECTS, Dialect

#: text, where it came from -> the value.
Parser = Callable[[str, str], Any]

_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_HTTP_URL = re.compile(r"https?://[^\s/?#]+(/\S*)?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_API_ROOT = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class Choice(str, enum.Enum):
    """A closed choice: compares equal to its text and prints as it."""

    def __str__(self) -> str:
        return str(self.value)


class Protocol(Choice):
    """How the agent talks to the MEP."""

    HTTPS = "https"
    HTTP = "http"


class Auth(Choice):
    """How the agent gets its token."""

    AKSK = "aksk"
    OAUTH2 = "oauth2"
    NONE = "none"


class HeartbeatMethod(Choice):
    """auto: the method that goes with the liveness link; else forced."""

    AUTO = "auto"
    PUT = "PUT"
    PATCH = "PATCH"


class Termination(Choice):
    """Whether termination notices are subscribed to (with --notify-url)."""

    AUTO = "auto"
    OFF = "off"


class LogFormat(Choice):
    """twistd's text lines or one JSON object per line."""

    TEXT = "text"
    JSON = "json"


class LogLevel(Choice):
    """The least severe level written."""

    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class Condition(enum.Enum):
    """When a setting is required; the text is what --help and the README say."""

    ALWAYS = ""
    WITH_AKSK = "with --auth aksk"
    WITH_OAUTH2 = "with --auth oauth2"
    WITH_HTTPS = "with https"

    def applies(self, auth: str, protocol: str) -> bool:
        """Whether the setting is required with this --auth and protocol."""
        return (
            self is Condition.ALWAYS
            or (self is Condition.WITH_HTTPS and protocol == Protocol.HTTPS)
            or (self is Condition.WITH_AKSK and auth == Auth.AKSK)
            or (self is Condition.WITH_OAUTH2 and auth == Auth.OAUTH2)
        )


def choice(kind: type[Choice]) -> Parser:
    """A parser for one of C{kind}'s values (case-insensitive)."""
    by_text = {member.value.lower(): member for member in kind}

    def parse(text: str, where: str) -> Choice:
        member = by_text.get(text.strip().lower())
        if member is None:
            *first, last = (m.value for m in kind)
            raise ConfigError(where, f"{text[:20]!r} must be {', '.join(first)} or {last}")
        return member

    return parse


def dialect(text: str, where: str) -> Dialect:
    """edgegallery or etsi."""
    found = DIALECTS.get(text.strip().lower())
    if found is None:
        raise ConfigError(where, f"{text[:20]!r} must be edgegallery or etsi")
    return found


def boolean(text: str, where: str) -> bool:
    """true/false (also 1/0, yes/no, on/off)."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(where, f"{text[:20]!r} must be true or false")


def seconds(minimum: float, maximum: float) -> Parser:
    """A parser for a number of seconds within [minimum, maximum]."""
    return _number(minimum, maximum, "seconds")


def rate(minimum: float, maximum: float) -> Parser:
    """A parser for a number of requests a second within [minimum, maximum]."""
    return _number(minimum, maximum, "requests a second")


def _number(minimum: float, maximum: float, unit: str) -> Parser:
    def parse(text: str, where: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(where, f"{text[:20]!r} must be a number of {unit}") from None
        if not minimum <= value <= maximum:
            raise ConfigError(where, f"must be between {minimum:g} and {maximum:g} {unit}")
        return value

    return parse


def integer(minimum: int, maximum: int) -> Parser:
    """A parser for a whole number within [minimum, maximum]."""

    def parse(text: str, where: str) -> int:
        value = text.strip()
        if not value.isdigit() or not minimum <= int(value) <= maximum:
            raise ConfigError(
                where, f"{value[:20]!r} must be a whole number from {minimum} to {maximum}"
            )
        return int(value)

    return parse


def host(text: str, where: str) -> str:
    """An IP address (normalised) or a DNS host name."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None:
        labels = text.rstrip(".").split(".")
        if len(text) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
            raise ConfigError(where, f"{text[:60]!r} is neither an IP address nor a host name")
        return text
    if address.is_multicast or address.is_unspecified or str(address) == "255.255.255.255":
        raise ConfigError(where, f"{text} is not a unicast address")
    return str(address)


def port(text: str, where: str) -> int:
    """A TCP port, 1 to 65535."""
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise ConfigError(where, f"{text[:20]!r} must be a port number from 1 to 65535")
    return int(text)


def url(text: str, where: str) -> str:
    """An http(s) URL."""
    if not _HTTP_URL.fullmatch(text):
        raise ConfigError(where, f"{text[:60]!r} must be an http(s) URL")
    return text


def api_root(text: str, where: str) -> str:
    """A path such as /mep, without the trailing slash ('/' for none)."""
    root = text.rstrip("/")
    if root and not _API_ROOT.fullmatch(root):
        raise ConfigError(where, f"{root[:60]!r} must be a path such as /mep (or / for none)")
    return root


def public_origins(text: str, where: str) -> tuple[links.Origin, ...]:
    """Comma-separated public origins of the MEP (--mep-public-url)."""
    found = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            found.append(links.public_origin(item))
        except ValueError as e:
            raise ConfigError(where, f"{item.strip()[:60]!r} {e}") from None
    return tuple(found)


def listener(text: str, where: str) -> str:
    """
    A strports description (checked when the listener is made). Never empty: the loader
    takes an empty value for unset, and the default applies.
    """
    return text


def ops_listener(text: str, where: str) -> str | None:
    """A strports description, or 'none' (None: off); never empty (L{listener})."""
    return None if text.lower() == "none" else text


def text(value: str, where: str) -> str:
    """Any text, as given."""
    return value
