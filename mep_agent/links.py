"""
The one place where a link the MEP hands back becomes a URL the agent uses: resolved
against the MEP's base URL (RFC 3986 section 5), and refused when it points anywhere but
the MEP itself, so that the token is never sent to another origin.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


class ForeignLink(ValueError):
    """A link to another origin (scheme, host or port) than the MEP's."""


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port filled in; ValueError if malformed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def resolve(base_url: str, api_root: str, href: str, under_root: bool) -> str:
    """
    The absolute URL for C{href}, a link from the MEP at C{base_url}.

    @param under_root: EdgeGallery's convention: an absolute path that does not start with
        C{api_root} lies under it (mepserver omits the gateway's route).
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
    if origin(absolute) != origin(base_url):
        raise ForeignLink(f"link to another origin than the MEP: {absolute[:120]}")
    return absolute
