"""
Hot reload of app_instance_info.yaml: on SIGHUP, and by polling the file's content every
--reload-interval seconds (Kubernetes swaps a ConfigMap directory's symlink, so what is
watched is what the path resolves to now, by content). A valid new file is applied as a
difference (Registrar.apply, Subscriber.apply); an invalid one is refused with one log
line naming the YAML path, and the old state stays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .errors import ConfigError
from .model import AppInstanceInfo
from .registration import Registrar
from .subscriptions import Subscriber


def digest(data: bytes) -> str:
    """What identifies a version of the file."""
    return hashlib.sha256(data).hexdigest()


class ConfigReloader(Service):
    """Re-reads app_instance_info.yaml and applies what changed; see the module."""

    name = "reload"
    log = Logger()

    def __init__(
        self,
        path: str,
        read: Callable[[str], Awaitable[bytes]],
        parse: Callable[[str], AppInstanceInfo],
        registrar: Registrar,
        subscriber: Subscriber,
        clock: IReactorTime,
        interval: float,
        current: str,
    ) -> None:
        """
        @param read: reads the file without blocking the reactor.
        @param parse: validates the text (ConfigError naming the YAML path).
        @param interval: seconds between polls (0: only on SIGHUP).
        @param current: the digest of the version loaded at start.
        """
        self._path = path
        self._read = read
        self._parse = parse
        self._registrar = registrar
        self._subscriber = subscriber
        self._interval = interval
        self._current = current
        self._poll = LoopingCall(self.check_now)
        self._poll.clock = clock
        self._checking: Deferred[None] | None = None
        self._refused_version: str | None = None
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None

    def startService(self) -> None:
        """Poll the file, when an interval is set."""
        super().startService()
        if self._interval > 0:
            self._poll.start(self._interval, now=False)

    def stopService(self) -> None:
        """Stop polling."""
        super().stopService()
        if self._poll.running:
            self._poll.stop()

    def check_now(self) -> Deferred[None]:
        """Read the file now and apply it if it changed (one check at a time)."""
        if self._checking is not None:
            return succeed(None)
        self._checking = ensureDeferred(self._check())

        def done(result: object) -> None:
            self._checking = None

        self._checking.addBoth(done)
        return succeed(None)

    async def _check(self) -> None:
        try:
            data = await self._read(self._path)
        except OSError as e:
            self._refused(f"{self._path}: cannot read: {e.strerror or e}")
            return
        version = digest(data)
        if version in (self._current, self._refused_version):
            return
        try:
            info = self._parse(data.decode("utf-8", "replace"))
        except ConfigError as e:
            self._refused_version = version
            self._refused(str(e))
            return
        services = self._registrar.apply(info.services)
        subscriptions = self._subscriber.apply(info.subscriptions)
        self._current = version
        self.reloads += 1
        self.last_error = None
        self.log.info(
            "reloaded {path}: services added {added}, removed {removed}, changed {changed}; "
            "subscriptions added {sub_added}, removed {sub_removed}",
            path=self._path,
            added=services["added"],
            removed=services["removed"],
            changed=services["changed"],
            sub_added=subscriptions["added"],
            sub_removed=subscriptions["removed"],
            event="config.reloaded",
        )

    def _refused(self, error: str) -> None:
        self.failures += 1
        if error != self.last_error:  # once per distinct problem, not once per poll
            self.log.error(
                "configuration reload refused, keeping the running configuration: {error}",
                error=error,
                event="config.reload_refused",
            )
        self.last_error = error
