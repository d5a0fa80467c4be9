"""Tests that the README documents every setting exactly as the code defines it."""

import os

from twisted.trial.unittest import SynchronousTestCase

from mep_agent.settings import SETTINGS, markdown_table

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


class ReadmeTests(SynchronousTestCase):
    def test_settings_table_current(self) -> None:
        """The README holds the settings table as generated from settings.py."""
        with open(README, encoding="utf-8") as f:
            readme = f.read()
        self.assertIn(markdown_table().split("\n", 2)[2], readme)
        for setting in SETTINGS:
            self.assertIn(f"`--{setting.option}`", readme)
