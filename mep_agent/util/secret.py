"""A string wrapper that keeps credentials out of reprs, str() and log output."""

from __future__ import annotations

from attrs import field, frozen


@frozen(repr=False)
class Secret:
    """
    A credential (AK, SK, app instance id, token) that must never be printed.

    The value is reachable only through L{reveal}, so every place that puts it on the
    wire is easy to find; formatting the object anywhere else shows C{<redacted>}.
    """

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """The value itself: only for putting it on the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__


def redact(text: str, secrets: list[Secret] | tuple[Secret, ...]) -> str:
    """Replace every occurrence of any secret's value in text (e.g. a MEP error body)."""
    for secret in secrets:
        value = secret.reveal()
        if value:
            text = text.replace(value, "<redacted>")
    return text
