"""
A small validator vocabulary for YAML documents: each check takes (path, value) and returns
the normalised value or raises ConfigError naming the YAML path, e.g.
C{serviceInfoPosts[1].serName: must match ^[a-zA-Z0-9][a-zA-Z0-9_-]*[a-zA-Z0-9]$}.

Why not jsonschema: its messages name JSON pointers and schema keywords, not the setting
an operator must fix, and the MEP's rules (mepserver's go-playground tags) are few.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from mep_agent.config.errors import ConfigError

Check = Callable[[str, Any], Any]

_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def text(max_len: int, pattern: str | None = None) -> Check:
    """A string of at most C{max_len} characters matching C{pattern}."""
    regex = re.compile(pattern) if pattern else None

    def check(path: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, not {_kind(value)}")
        if len(value) > max_len:
            raise ConfigError(path, f"must be at most {max_len} characters, has {len(value)}")
        if regex and not regex.fullmatch(value):
            raise ConfigError(path, f"{value[:40]!r} must match {pattern}")
        return value

    return check


def one_of(*choices: str) -> Check:
    """One of the given strings."""

    def check(path: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(path, f"{str(value)[:40]!r} must be one of {', '.join(choices)}")
        return value

    return check


def integer(minimum: int, maximum: int | None = None) -> Check:
    """An integer (not a boolean) within [minimum, maximum]."""

    def check(path: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be an integer, not {_kind(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(path, f"must be {bound}, is {value}")
        return value

    return check


def boolean(path: str, value: Any) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, not {_kind(value)}")
    return value


def uri(path: str, value: Any) -> str:
    """An absolute URI or an absolute path, as Go's url.ParseRequestURI accepts them."""
    checked: str = text(2048)(path, value)
    if _CONTROL_OR_SPACE.search(checked) or not (
        _URI_SCHEME.match(checked) or checked.startswith("/")
    ):
        raise ConfigError(path, f"{checked[:40]!r} must be an absolute URI or an absolute path")
    return checked


def anything(path: str, value: Any) -> Any:
    """Any value, unchecked (implementation-specific fields)."""
    return value


def mapping_of_anything(path: str, value: Any) -> dict[str, Any]:
    """A mapping with string keys, values unchecked."""
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be a mapping, not {_kind(value)}")
    return value


def list_of(item: Check, min_items: int = 0, max_items: int | None = None) -> Check:
    """A list of C{item}s, with bounds on its length."""

    def check(path: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ConfigError(path, f"must be a list, not {_kind(value)}")
        if len(value) < min_items:
            raise ConfigError(path, f"must have at least {min_items} entries")
        if max_items is not None and len(value) > max_items:
            raise ConfigError(path, f"must have at most {max_items} entries, has {len(value)}")
        return [item(f"{path}[{i}]", v) for i, v in enumerate(value)]

    return check


def record(
    fields: Mapping[str, Check],
    required: frozenset[str] = frozenset(),
    aliases: Mapping[str, str] | None = None,
) -> Check:
    """
    A mapping with known keys. Unknown keys are errors (a typo must not be dropped
    silently); a null value counts as absent; C{aliases} maps an accepted spelling to
    the key sent to the MEP (e.g. EdgeGallery's Go mep-agent's C{links} for C{_links}).
    """
    aliases = aliases or {}

    def check(path: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be a mapping, not {_kind(value)}")
        out: dict[str, Any] = {}
        spelled: dict[str, str] = {}  # key -> the spelling it was given in
        for raw_key, item in value.items():
            key = aliases.get(raw_key, raw_key)
            where = f"{path}.{raw_key}" if path else str(raw_key)
            if key not in fields:
                known = ", ".join(sorted(fields))
                raise ConfigError(where, f"unknown key (known keys: {known})")
            if key in spelled:
                raise ConfigError(where, f"given twice (also as {spelled[key]})")
            spelled[key] = str(raw_key)
            if item is not None:
                out[key] = fields[key](where, item)
        for key in sorted(required - out.keys()):
            raise ConfigError(f"{path}.{key}" if path else key, "is required")
        return out

    return check
