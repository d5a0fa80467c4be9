"""Tests that the README documents every setting exactly as the code defines it."""

import os

from twisted.trial.unittest import SynchronousTestCase

from mep_agent.config.settings import SETTINGS, markdown_table

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


class ReadmeTests(SynchronousTestCase):
    def test_settings_table_current(self) -> None:
        """The README holds the settings table as generated from settings.py."""
        with open(README, encoding="utf-8") as f:
            readme = f.read()
        self.assertIn(markdown_table().split("\n", 2)[2], readme)
        for setting in SETTINGS:
            self.assertIn(f"`--{setting.option}`", readme)


class DockerfileTests(SynchronousTestCase):
    def test_default_version_label_is_the_package_version(self) -> None:
        """A plain image build is labelled with the package's version, never 'unknown'."""
        import re

        from mep_agent import __version__

        path = os.path.join(os.path.dirname(__file__), "..", "Dockerfile")
        with open(path, encoding="utf-8") as f:
            defaults = re.findall(r"^ARG VERSION=(\S+)$", f.read(), re.MULTILINE)
        self.assertEqual(defaults, [__version__])
