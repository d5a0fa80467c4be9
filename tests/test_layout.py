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


# The layers, lowest first: a module may import its own layer and those below it only.
LAYERS = ("util", "mp1", "config", "core", "web", "")


def layer_of(module: str) -> str:
    """The layer of a module of the agent ('' for the process glue at the top)."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in LAYERS else ""


def upward_imports() -> list[str]:
    """Every import of the agent that goes to a higher layer, or to the emulator."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                target = node.module
            elif isinstance(node, ast.Import):
                target = node.names[0].name
            else:
                continue
            if target.startswith("mep_emulator"):
                found.append(f"{module} -> {target}")
            elif target.startswith("mep_agent") and LAYERS.index(layer_of(target)) > LAYERS.index(
                layer_of(module)
            ):
                found.append(f"{module} -> {target}")
    return found


class LayerTests(SynchronousTestCase):
    def test_imports_only_downwards(self) -> None:
        """util < mp1 < config < core < web < the top; the agent never imports the emulator."""
        self.assertEqual(upward_imports(), [])

    def test_layer_of(self) -> None:
        """The check above places modules as the layout says (a control)."""
        self.assertEqual(layer_of("mep_agent.web.api"), "web")
        self.assertEqual(layer_of("mep_agent.util"), "util")
        self.assertEqual(layer_of("mep_agent.agent"), "")
        self.assertGreater(LAYERS.index(layer_of("mep_agent.core.token")), LAYERS.index("mp1"))

    def test_layers_known(self) -> None:
        """Every subpackage is one of the layers (a new one must be placed)."""
        packages = {p.parent.name for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
        self.assertEqual(packages, set(LAYERS) - {""})


MAX_FUNCTION_LINES = 80


def long_functions(root: Path) -> list[str]:
    """Every function or method under C{root} longer than MAX_FUNCTION_LINES lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(root.parent)}:{node.name} ({length})")
    return found


class ShortFunctionTests(SynchronousTestCase):
    def test_no_function_over_80_lines(self) -> None:
        """The agent, the emulator, the benchmarks and the tests: no function over 80 lines."""
        checkout = PACKAGE.parent
        found = []
        for name in ("mep_agent", "mep_emulator", "benchmarks", "tests"):
            found += long_functions(checkout / name)
        self.assertEqual(found, [])

    def test_the_check_sees_them(self) -> None:
        """A function of 81 lines is found (a control)."""
        root = Path(self.mktemp()) / "pkg"
        root.mkdir(parents=True)
        body = "".join(f"    x{n} = {n}\n" for n in range(80))
        (root / "m.py").write_text(f"def long() -> None:\n{body}")
        self.assertEqual(long_functions(root), ["pkg/m.py:long (81)"])
