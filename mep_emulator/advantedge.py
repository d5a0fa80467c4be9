"""
What the ETSI face does differently with the setting C{platform: advantedge}: InterDigital
AdvantEDGE 1.9.2's answers where they depart from MEC 011 v2.2.1 (meep-app-enablement,
release 1.9.2, and what it answered on the interop kit). The face (etsi.py) decides when;
this module holds the texts, the shapes and the Go decoder's error messages.
"""

from __future__ import annotations

import json
from typing import Any

#: AppTerminationNotification.maxGracefulTimeout: hard-coded (app-support.go,
#: DEFAULT_GRACEFUL_TIMEOUT); the grace period asked of the sandbox is ignored.
GRACEFUL_TIMEOUT = 10
#: Every call for an app instance the platform does not know, a terminated one included.
APP_NOT_FOUND = "App Instance not found"
#: confirm_termination with no termination pending: a 400 (MEC 011 says 409).
UNEXPECTED_CONFIRMATION = "Unexpected App Confirmation Termination Notification"
#: The app-support subscription list names the kind in "rel" (v1.1.1's member).
SUBSCRIPTION_KIND_MEMBER = "rel"


def problem_details(status: int, detail: str) -> dict[str, Any]:
    """Its ProblemDetails: errHandlerProblemDetails sets status and detail, nothing else."""
    return {"status": status, "detail": detail}


class GoJsonError(ValueError):
    """A body Go's json.Decoder refuses; the message is its error text."""


def decode(raw: bytes) -> Any:
    """
    The first JSON value of C{raw}, as Go's C{json.NewDecoder(r.Body).Decode} reads every
    request body in AdvantEDGE (anything after it is never read); GoJsonError with the
    decoder's message otherwise, which AdvantEDGE answers as a 500's detail. The messages of
    syntax errors are the decoder's (checked against Go's encoding/json in the tests); a
    value of the wrong type is left to the face's own validation.
    """
    text = raw.decode("utf-8", "replace")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise GoJsonError("EOF")
    try:
        value, _ = json.JSONDecoder(parse_constant=_constant).raw_decode(text, start)
    except _Constant as e:
        # Python reads NaN and Infinity; Go stops at their first letter.
        where = "in numeric literal" if e.name.startswith("-") else _VALUE
        raise GoJsonError(f"invalid character {_quote(e.name.lstrip('-')[0])} {where}") from None
    except json.JSONDecodeError as e:
        raise GoJsonError(_message(text, e)) from None
    return value


_VALUE = "looking for beginning of value"
_LITERALS = ("true", "false", "null")


class _Constant(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _constant(name: str) -> Any:
    raise _Constant(name)


def _message(text: str, error: json.JSONDecodeError) -> str:
    """Go's message for the syntax error Python found at C{error.pos}."""
    pos, msg = error.pos, error.msg
    if msg.startswith("Unterminated string") or pos >= len(text):
        return "unexpected EOF"
    if msg == "Invalid \\escape":  # Python points at the backslash, Go at what follows
        return f"invalid character {_quote(text[pos + 1])} in string escape code"
    if msg == "Invalid \\uXXXX escape":  # Python points at the u
        for c in text[pos + 1 : pos + 5]:
            if c not in "0123456789abcdefABCDEF":
                return f"invalid character {_quote(c)} in \\u hexadecimal character escape"
        return "unexpected EOF"
    c = text[pos]
    if msg == "Invalid control character at":
        return f"invalid character {_quote(c)} in string literal"
    if msg.startswith("Expecting property name"):
        return f"invalid character {_quote(c)} looking for beginning of object key string"
    if msg == "Expecting ':' delimiter":
        return f"invalid character {_quote(c)} after object key"
    if msg == "Expecting ',' delimiter":
        inside = "object key:value pair" if _container(text, pos) == "{" else "array element"
        return f"invalid character {_quote(c)} after {inside}"
    if c == "-":  # a minus sign without digits
        if pos + 1 >= len(text):
            return "unexpected EOF"
        return f"invalid character {_quote(text[pos + 1])} in numeric literal"
    for literal in _LITERALS:
        if c == literal[0]:
            for i, expected in enumerate(literal):
                if pos + i >= len(text):
                    return "unexpected EOF"
                if text[pos + i] != expected:
                    bad = _quote(text[pos + i])
                    return f"invalid character {bad} in literal {literal} (expecting '{expected}')"
    return f"invalid character {_quote(c)} {_VALUE}"


def _container(text: str, pos: int) -> str:
    """The innermost bracket open at C{pos} ("{" or "["), strings skipped."""
    stack: list[str] = []
    in_string = escaped = False
    for c in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            stack.append(c)
        elif c in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _quote(c: str) -> str:
    """
    Go's quoteChar: the offending byte in single quotes, escaped as strconv.Quote does. Go
    looks at bytes: a character beyond ASCII shows as the rune of its first UTF-8 byte.
    """
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    c = chr(c.encode("utf-8", "replace")[0])
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    escapes.update({"\v": "\\v", "\\": "\\\\"})
    if c in escapes:
        return f"'{escapes[c]}'"
    if c.isprintable():
        return f"'{c}'"
    return f"'\\x{ord(c):02x}'" if ord(c) < 0x80 else f"'\\u{ord(c):04x}'"
