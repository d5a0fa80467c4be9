"""
The one place where a link the MEP hands back becomes a URL the agent uses: resolved
against the MEP's base URL (RFC 3986 section 5), and refused when it points anywhere but
the MEP itself, so that the token is never sent to another origin.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


class ForeignLink(ValueError):
    """A link to another origin (scheme, host or port) than the MEP's."""


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port filled in; ValueError if malformed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


Origin = tuple[str, str, "int | None"]


def resolve(
    base_url: str,
    api_root: str,
    href: str,
    under_root: bool,
    public_origins: frozenset[Origin] = frozenset(),
) -> str:
    """
    The absolute URL for C{href}, a link from the MEP at C{base_url}.

    @param under_root: EdgeGallery's convention: an absolute path that does not start with
        C{api_root} lies under it (mepserver omits the gateway's route).
    @param public_origins: the origins the MEP calls its own (--mep-public-url: a platform
        builds its links from its public URL, which the sidecar may not dial); a link to
        one of them is followed on C{base_url}'s origin, with the same TLS checks.
    @raise ForeignLink: the link points to another origin.
    @raise ValueError: the link is not a usable URI reference.
    """
    if not href or any(c in href for c in "\x00\r\n\t "):
        raise ValueError(f"unusable link {href[:80]!r}")
    parts = urlsplit(href)
    if not parts.scheme and not parts.netloc and href.startswith("/") and under_root:
        if api_root and not (href == api_root or href.startswith(api_root + "/")):
            href = api_root + href
    absolute = urljoin(base_url + "/", href)
    found = origin(absolute)
    if found == origin(base_url):
        return absolute
    if found not in public_origins:
        raise ForeignLink(f"link to another origin than the MEP: {absolute[:120]}")
    parts, base = urlsplit(absolute), urlsplit(base_url)
    return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))


def public_origin(url: str) -> Origin:
    """The origin of a --mep-public-url value; ValueError unless it is just an origin."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError("must be an http(s) URL such as https://mep.example.com:8443")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError("must be an origin only (scheme, host and port), without a path")
    return origin(url.strip())
