"""
A listening port as a service: bound in privilegedStartService (so a busy port stops
twistd at start), with one line naming the setting instead of a traceback, and the
address it got logged (so a port 0 listener tells where it is).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure


class Listener(Service):
    """Listens on an endpoint for as long as the service runs."""

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        setting: str,
        description: str,
        program: str = "mep-agent",
    ) -> None:
        """
        @param setting: the option that gave C{description}, for error messages.
        @param program: the prefix of error messages.
        """
        self._endpoint = endpoint
        self._factory = factory
        self._setting = setting
        self._description = description
        self._program = program
        self.port: IListeningPort | None = None

    @classmethod
    def from_description(
        cls,
        reactor: Any,
        description: str,
        factory: IProtocolFactory,
        setting: str,
        program: str = "mep-agent",
    ) -> Listener:
        """A listener for a strports description; SystemExit (one line) when it is bad."""
        try:
            endpoint = endpoints.serverFromString(reactor, description)
        except (ValueError, KeyError, TypeError) as e:
            raise SystemExit(
                f"{program}: configuration error: {setting}: invalid endpoint "
                f"description {description!r} ({e})"
            ) from None
        return cls(endpoint, factory, setting, description, program)

    def privilegedStartService(self) -> None:
        """Bind now (unless L{bind} did already); one line when the port cannot be had."""
        super().privilegedStartService()
        if self.port is None:
            self.bind()

    def bind(self) -> None:
        """
        Listen now. Under twistd's daemon mode the composition root calls this before
        twistd forks: an error then ends the start-up with one line on the terminal,
        where twistd would show the child's error as a repr cut at 100 bytes.
        """
        outcome: list[IListeningPort | Failure] = []
        self._endpoint.listen(self._factory).addBoth(outcome.append)
        if outcome and isinstance(outcome[0], Failure):
            error = outcome[0].value
            reason = error.socketError if isinstance(error, CannotListenError) else error
            reason = getattr(reason, "strerror", None) or reason
            raise SystemExit(
                f"{self._program}: {self._setting}: cannot listen on {self._description}: {reason}"
            )
        if not outcome:
            raise SystemExit(
                f"{self._program}: {self._setting}: {self._description} did not bind at once"
            )
        port = outcome[0]
        assert not isinstance(port, Failure)
        self.port = port
        address = port.getHost()
        self.log.info(
            "{setting} listening on {host}:{port}",
            setting=self._setting,
            host=getattr(address, "host", "?"),
            port=getattr(address, "port", "?"),
            event="agent.listening",
        )

    def stopService(self) -> Deferred[None]:
        """Stop listening."""
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        stopped = port.stopListening()
        return stopped if isinstance(stopped, Deferred) else succeed(None)
