"""
Tests that the documentation says what the code does: the README stays a short front door
whose set-up commands are the ones CI runs, and docs/ holds the reference as the code
defines it (the settings table, the log events, the emulator's options) with links that lead
somewhere.
"""

import os
import re
from typing import Any, cast

from twisted.trial.unittest import SynchronousTestCase

from mep_agent.config.settings import SETTINGS
from mep_agent.config.settings_table import markdown_table, with_table

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(CHECKOUT, "README.md")
DOCS = os.path.join(CHECKOUT, "docs")
CI = os.path.join(CHECKOUT, ".ci", "run")
README_LIMIT = 15_000  # bytes: a front door, not the reference


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def markdown_files() -> list[str]:
    docs = sorted(os.path.join(DOCS, n) for n in os.listdir(DOCS) if n.endswith(".md"))
    return [README, *docs]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of C{text} (duplicates numbered)."""
    found: set[str] = set()
    for line in prose_lines(text):
        heading = re.match(r"#{1,6} (.+)", line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def links(text: str) -> list[str]:
    """The targets of the markdown links of C{text} (not in code blocks or spans)."""
    targets = []
    for line in prose_lines(text):
        line = re.sub(r"`[^`]*`", "", line)
        targets += re.findall(r"\]\(([^)\s]+)\)", line)
    return targets


def setup_commands(readme: str) -> list[str]:
    """The commands of the README's "Set-up: two commands" section, in order."""
    section = readme.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+)\n```", section)


class ReadmeTests(SynchronousTestCase):
    def test_short(self) -> None:
        """The README is a front door of at most 15,000 bytes; the reference is in docs/."""
        size = os.path.getsize(README)
        self.assertLessEqual(size, README_LIMIT, f"README.md is {size} bytes")

    def test_setup_commands_are_what_ci_runs(self) -> None:
        """The README's two set-up commands are the ones .ci/run runs, word for word."""
        ci = read(CI)
        demo = re.search(r'^readme_demo="(.+)"$', ci, re.MULTILINE)
        tests = re.search(r'^readme_tests="(.+)"$', ci, re.MULTILINE)
        assert demo is not None and tests is not None, ".ci/run names no README commands"
        self.assertEqual(setup_commands(read(README)), [demo.group(1), tests.group(1)])
        runs = [line for line in ci.splitlines() if not line.lstrip().startswith("#")]
        self.assertTrue(any('bash -c "$readme_tests"' in line for line in runs))
        self.assertTrue(any('bash -c "$readme_demo"' in line for line in runs))

    def test_links_the_reference(self) -> None:
        """The README links every page of docs/."""
        targets = {
            os.path.normpath(os.path.join(CHECKOUT, t.split("#")[0])) for t in links(read(README))
        }
        for path in markdown_files()[1:]:
            self.assertIn(path, targets, f"README.md does not link {os.path.relpath(path)}")


class ConfigurationTests(SynchronousTestCase):
    path = os.path.join(DOCS, "configuration.md")

    def test_settings_table_current(self) -> None:
        """docs/configuration.md holds the settings table as settings.py generates it."""
        document = read(self.path)
        self.assertEqual(
            with_table(document),
            document,
            "stale: run python -m mep_agent.config.settings_table --write docs/configuration.md",
        )
        self.assertIn(markdown_table(), document)

    def test_every_setting(self) -> None:
        """Every option and environment variable is named there, with its default."""
        document = read(self.path)
        for setting in SETTINGS:
            self.assertIn(f"`--{setting.option}`", document)
            if setting.env:
                self.assertIn(f"`{setting.env}`", document)
            if setting.default is not None:
                self.assertIn(f"`{setting.default}`", document)

    def test_stale_table_is_found(self) -> None:
        """A table that differs from the code is replaced: the check above would fail."""
        document = read(self.path)
        stale = document.replace("| `--mep-port` | `MEP_APIGW_PORT` | `8443` |", "| x |")
        self.assertNotEqual(stale, document)
        self.assertEqual(with_table(stale), document)
        self.assertRaises(ValueError, with_table, "no markers")


class ReferenceTests(SynchronousTestCase):
    def test_every_log_event(self) -> None:
        """Every log event the code names is listed in docs/operations.md."""
        operations = read(os.path.join(DOCS, "operations.md"))
        named = set()
        for folder, _, files in os.walk(os.path.join(CHECKOUT, "mep_agent")):
            for name in files:
                if name.endswith(".py"):
                    for line in read(os.path.join(folder, name)).splitlines():
                        if "event=" in line:
                            named.update(re.findall(r'"([a-z]+\.[a-z_]+)"', line))
        self.assertGreater(len(named), 30)  # the scan found them
        for event in sorted(named):
            self.assertIn(f"`{event}`", operations)

    def test_every_emulator_option(self) -> None:
        """Every option of twistd mep-emulator is documented in docs/emulator.md."""
        from mep_emulator.tap import Options

        emulator = read(os.path.join(DOCS, "emulator.md"))
        table = cast(list[list[Any]], [*Options.optParameters, *Options.optFlags])
        names = [str(option[0]) for option in table]
        self.assertGreater(len(names), 10)
        for name in names:
            self.assertIn(f"`--{name}`", emulator)

    def test_every_emulator_setting(self) -> None:
        """Every setting /_emulator/settings takes has a row in docs/emulator.md's table."""
        from mep_emulator.control import SETTINGS as EMULATOR_SETTINGS

        emulator = read(os.path.join(DOCS, "emulator.md"))
        rows = [line for line in emulator.splitlines() if line.startswith("| `")]
        for name in EMULATOR_SETTINGS:
            self.assertTrue([r for r in rows if f"`{name}`" in r.split(" | ")[0]], name)

    def test_links_resolve(self) -> None:
        """Every relative link in the README and docs/ leads to a file, and to its anchor."""
        for path in markdown_files():
            text = read(path)
            for target in links(text):
                if re.match(r"[a-z]+:", target):
                    continue  # http(s), mailto: not checked here
                file_part, _, anchor = target.partition("#")
                linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
                where = f"{os.path.relpath(path, CHECKOUT)}: {target}"
                if not file_part:
                    linked = path
                self.assertTrue(os.path.exists(linked), f"{where}: no such file")
                if anchor and linked.endswith(".md"):
                    self.assertIn(anchor, anchors(read(linked)), f"{where}: no such anchor")


class DockerfileTests(SynchronousTestCase):
    def test_default_version_label_is_the_package_version(self) -> None:
        """A plain image build is labelled with the package's version, never 'unknown'."""
        from mep_agent import __version__

        path = os.path.join(CHECKOUT, "Dockerfile")
        defaults = re.findall(r"^ARG VERSION=(\S+)$", read(path), re.MULTILINE)
        self.assertEqual(defaults, [__version__])
