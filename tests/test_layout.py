"""
The tree keeps the design card: no private name of Twisted, treq or klein is used by the
agent (a release may remove any of them).
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

PACKAGE = Path(__file__).resolve().parent.parent / "mep_agent"
THIRD_PARTY = ("twisted", "treq", "klein", "werkzeug", "zope", "hyperlink", "OpenSSL")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_names(source: str) -> list[str]:
    """
    Private names imported from the libraries, and any private attribute read on another
    object than C{self} or C{cls} (the agent's own classes never do; a library's may go);
    C{os._exit} is public, documented.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(THIRD_PARTY):
            parts = (node.module or "").split(".") + [alias.name for alias in node.names]
            found += [f"{node.module}.{p}" for p in parts if p.startswith("_")]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls", "os")):
                found.append(f"{ast.unparse(owner)}.{node.attr}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(THIRD_PARTY) and "._" in alias.name:
                    found.append(alias.name)
    return found


class PublicApisTests(SynchronousTestCase):
    def test_no_private_library_names(self) -> None:
        """No module of the agent imports a private name from its libraries."""
        found = {
            str(path.relative_to(PACKAGE)): names
            for path in sorted(PACKAGE.rglob("*.py"))
            if (names := private_names(path.read_text()))
        }
        self.assertEqual(found, {})

    def test_the_check_sees_them(self) -> None:
        """The check above finds what the old http.py had (a control)."""
        old = (
            "from twisted.web.client import Agent, _HTTP11ClientFactory\n"
            "pool._factory = _HTTP11ClientFactory\n"
            "self._mine = request._disconnected\n"
        )
        self.assertEqual(
            private_names(old),
            ["twisted.web.client._HTTP11ClientFactory", "pool._factory", "request._disconnected"],
        )
