"""
The settings table of docs/configuration.md, generated from L{SETTINGS}:

  python -m mep_agent.config.settings_table                 print the table (markdown)
  python -m mep_agent.config.settings_table --write FILE    put it between FILE's markers

tests/test_docs.py fails when the document's table is not the current one.
"""

from __future__ import annotations

import sys

from mep_agent.config.settings import SETTINGS


def markdown_table() -> str:
    """The settings table in markdown, one row per setting, as docs/configuration.md holds it."""
    rows = ["| option | env variable | default | meaning |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default is not None else "—"
        env = f"`{s.env}`" if s.env else "—"
        required = ""
        words = s.requirement()
        if words is not None:
            required = f"**Required{' ' + words if words else ''}.** "
        rows.append(f"| `--{s.option}` | {env} | {default} | {required}{s.help} |")
    return "\n".join(rows)


#: The lines around the generated table in docs/configuration.md.
TABLE_START = (
    "<!-- settings table: generated from mep_agent/config/settings.py by "
    "`python -m mep_agent.config.settings_table --write docs/configuration.md`; do not edit -->"
)
TABLE_END = "<!-- end of the settings table -->"


def with_table(document: str) -> str:
    """
    C{document} with the current table between its L{TABLE_START} and L{TABLE_END} lines
    (the same text when it is current); ValueError when it lacks either marker.
    """
    start, end = document.find(TABLE_START), document.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {TABLE_START!r} and {TABLE_END!r} are missing")
    head = document[: start + len(TABLE_START)]
    return f"{head}\n{markdown_table()}\n{document[end:]}"


def main(argv: list[str]) -> int:
    """Print the table, or (--write FILE) write it into FILE between the markers."""
    if not argv:
        print(markdown_table())
        return 0
    if len(argv) != 2 or argv[0] != "--write":
        print("usage: python -m mep_agent.config.settings_table [--write FILE]", file=sys.stderr)
        return 2
    path = argv[1]
    with open(path, encoding="utf-8") as f:
        document = f.read()
    try:
        updated = with_table(document)
    except ValueError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    if updated != document:
        with open(path, "w", encoding="utf-8") as f:
            f.write(updated)
    print(f"{path}: settings table {'updated' if updated != document else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
