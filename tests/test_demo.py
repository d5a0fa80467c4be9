"""
scripts/demo's port check, run for real on 127.0.0.1 with a busy port: the
demo must stop before it starts anything, in one line naming the port and its variable.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from .processes import CHECKOUT

reactor: Any = _reactor  # typed as its smallest interface; its TCP side is used here

DEMO = os.path.join(CHECKOUT, "scripts", "demo")
VARIABLES = ("MEP_DEMO_EMULATOR_PORT", "MEP_DEMO_API_PORT", "MEP_DEMO_OPS_PORT")


class DemoPortCheckTests(TestCase):
    """The demo against ports held by listeners of the test's own."""

    timeout = 30

    def setUp(self) -> None:
        # A virtualenv with a Python but no twistd: should the check let the demo go on,
        # nothing can start (the demo then says the emulator did not start).
        self.venv = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.venv, "bin"))
        os.symlink(sys.executable, os.path.join(self.venv, "bin", "python"))

    def listen(self) -> int:
        """A port on 127.0.0.1 held by a listener of this test until it ends."""
        port = reactor.listenTCP(0, ServerFactory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def free_port(self) -> int:
        """A port the system just gave out and that nothing holds any more."""
        port = reactor.listenTCP(0, ServerFactory.forProtocol(Protocol), interface="127.0.0.1")
        number = int(port.getHost().port)
        await port.stopListening()
        return number

    async def demo(self, **ports: str) -> tuple[int, str, str]:
        """scripts/demo with C{ports} as its environment: (exit status, stdout, stderr)."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VENV": self.venv, **ports}
        out, err, code = await getProcessOutputAndValue("/bin/sh", [DEMO], env=env)
        return code, out.decode(), err.decode()

    async def test_busy_port_named_with_its_variable(self) -> None:
        """Each port in use ends the demo with exit 1 and one line naming it and its variable."""
        for busy in VARIABLES:
            ports = {name: str(await self.free_port()) for name in VARIABLES}
            ports[busy] = str(self.listen())
            code, out, err = await self.demo(**ports)
            self.assertEqual(code, 1, err)
            self.assertEqual(out, "")
            self.assertEqual(
                err,
                f"demo: port {ports[busy]} on 127.0.0.1 is in use; set {busy} to a free port\n",
            )

    async def test_not_a_port(self) -> None:
        """A value that is no port number is named in one line, before anything starts."""
        emulator = str(await self.free_port())
        code, out, err = await self.demo(MEP_DEMO_EMULATOR_PORT=emulator, MEP_DEMO_API_PORT="80x")
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertEqual(err, "demo: MEP_DEMO_API_PORT='80x' is not a port number (1-65535)\n")

    async def test_one_port_twice(self) -> None:
        """Two variables with one port: one line naming both."""
        emulator, port = str(await self.free_port()), str(await self.free_port())
        code, _, err = await self.demo(
            MEP_DEMO_EMULATOR_PORT=emulator, MEP_DEMO_API_PORT=port, MEP_DEMO_OPS_PORT=port
        )
        self.assertEqual(code, 1)
        self.assertIn("MEP_DEMO_API_PORT and MEP_DEMO_OPS_PORT are both", err)
        self.assertEqual(err.count("\n"), 1)
