"""JSON from the network, parsed with bounds: nesting depth, and only standard JSON."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


def _no_constants(name: str) -> Any:
    # json accepts NaN, Infinity and -Infinity by default; JSON does not.
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse C{raw}; ValueError when it is not JSON or nests deeper than C{max_depth}."""
    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    if depth(value) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return value


def depth(value: Any) -> int:
    """How deeply lists and objects nest in C{value} (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest
