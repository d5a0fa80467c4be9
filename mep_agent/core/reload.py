"""
Hot reload of app_instance_info.yaml: on SIGHUP, and by polling the file's content every
--reload-interval seconds (Kubernetes swaps a ConfigMap directory's symlink, so what is
watched is what the path resolves to now, by content). A valid new file is applied as a
difference (Holdings.apply); an invalid one is refused with one log line naming the YAML
path, and the old state stays. L{ConfigReloader.last_error} (what /readyz?verbose and
C{mep_agent_config_valid} show) describes the file on disk now against the one applied: a
refused version read again keeps its error, and the applied version read again (a bad edit
reverted) clears it.

A change is applied only when it is whole, because applying a file deregisters whatever
it no longer names: the new content must read the same twice, L{STABLE_FOR} seconds apart
(an editor or a slow copy caught mid-write reads differently the second time), and the
file must pass the same whole-file rule as at start (model.parse_app_instance_info): an
empty or blank file, or one without C{serviceInfoPosts}, is refused (removing every
service takes an explicit C{serviceInfoPosts: []}).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mep_agent.config.errors import ConfigError
from mep_agent.config.model import AppInstanceInfo
from mep_agent.util.tasks import follow

# Seconds a changed file must keep the same content before it is applied.
STABLE_FOR = 1.0


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
        apply: Callable[[AppInstanceInfo], dict[str, list[str]]],
        clock: IReactorTime,
        interval: float,
        current: str,
    ) -> None:
        """
        @param read: reads the file without blocking the reactor.
        @param parse: validates the text (ConfigError naming the YAML path).
        @param apply: makes the MEP hold what a new file wants; the names by change.
        @param interval: seconds between polls (0: only on SIGHUP).
        @param current: the digest of the version loaded at start.
        """
        self._path = path
        self._read = read
        self._parse = parse
        self._apply = apply
        self._interval = interval
        self._clock = clock
        self._current = current
        self._poll = LoopingCall(self.check_now)
        self._poll.clock = clock
        self._checking: Deferred[None] | None = None
        self._refused_version: str | None = None
        self._refused_error: str | None = None  # why that version was refused
        # A changed content seen once: (digest, when), applied if it reads the same later.
        self._candidate: tuple[str, float] | None = None
        self._confirm: IDelayedCall | None = None
        self._again = False
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None

    def startService(self) -> None:
        """Poll the file, when an interval is set."""
        super().startService()
        if self._interval > 0:
            self._poll.start(self._interval, now=False)

    def stopService(self) -> Deferred[None]:
        """Stop polling; a check under way is let finish (it may be applying a change)."""
        super().stopService()
        if self._poll.running:
            self._poll.stop()
        if self._confirm is not None and self._confirm.active():
            self._confirm.cancel()
        return follow(self._checking) if self._checking is not None else succeed(None)

    def check_now(self) -> Deferred[None]:
        """Read the file now and apply it if it changed (one check at a time)."""
        if self._checking is not None:
            self._again = True  # a check asked for while one runs is run after it
            return succeed(None)
        self._checking = ensureDeferred(self._check())

        def done(result: object) -> None:
            self._checking = None
            if self._again:
                self._again = False
                self.check_now()

        self._checking.addBoth(done)
        return succeed(None)

    async def _check(self) -> None:
        try:
            data = await self._read(self._path)
        except OSError as e:
            self._refused(f"{self._path}: cannot read: {e.strerror or e}")
            return
        version = digest(data)
        if version == self._current:
            self._candidate = None
            self._back_to_running()
            return
        if version == self._refused_version:
            self._candidate = None
            self.last_error = self._refused_error  # still on disk, whatever came between
            return
        if not self._stable(version):
            return
        try:
            info = self._parse(data.decode("utf-8", "replace"))
        except ConfigError as e:
            self._refused_version, self._refused_error = version, str(e)
            self._refused(str(e))
            return
        changes = self._apply(info)
        self._current = version
        self.reloads += 1
        self.last_error = None
        self.log.info(
            "reloaded {path}: added {added}, removed {removed}, changed {changed}",
            path=self._path,
            added=changes["added"],
            removed=changes["removed"],
            changed=changes["changed"],
            event="config.reloaded",
        )

    def _stable(self, version: str) -> bool:
        """
        Whether C{version} was read before, at least L{STABLE_FOR} seconds ago; if not, it
        becomes the candidate and the file is read again once that time has passed.
        """
        now = self._clock.seconds()
        if self._candidate is not None and self._candidate[0] == version:
            if now - self._candidate[1] >= STABLE_FOR:
                self._candidate = None
                return True
            return False
        self._candidate = (version, now)
        if self._confirm is not None and self._confirm.active():
            self._confirm.cancel()
        self._confirm = self._clock.callLater(STABLE_FOR, self.check_now)
        return False

    def _back_to_running(self) -> None:
        """The file on disk is the applied version again: nothing is refused any more."""
        if self.last_error is not None:
            self.log.info(
                "{path} is the running configuration again; the reload error is cleared",
                path=self._path,
                event="config.reload_restored",
            )
        self.last_error = None

    def _refused(self, error: str) -> None:
        self.failures += 1
        if error != self.last_error:  # once per distinct problem, not once per poll
            self.log.error(
                "configuration reload refused, keeping the running configuration: {error}",
                error=error,
                event="config.reload_refused",
            )
        self.last_error = error
