"""
CredentialFiles: the credentials follow their files. When the platform switches the app to
a new AK/SK (or a new OAuth 2.0 client secret) and Kubernetes updates the mounted Secret
(it swaps the volume's ..data symlink), the agent must sign with the new pair at once:
signing on with the old one would be refused, back off, and let every service turn
SUSPENDED. So the files (AK_FILE, SK_FILE, MEP_AGENT_OAUTH2_CLIENT_SECRET_FILE, whichever were
given) are read again every --reload-interval seconds, by content, and at once when the MEP
refuses the signature (a 401 for a key it no longer knows). A changed, valid set replaces
the credentials of the MEP client, and the token keeper forgets the refusals of the old key
(mepauth counts them per key) and asks for a token with the new one at once. A file that is
unreadable or invalid for a moment (half-swapped) is logged once and the old credentials stay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mep_agent.config.load import CREDENTIAL_RULES
from mep_agent.config.settings import BY_KEY
from mep_agent.mp1.credentials import Credentials
from mep_agent.util.secret import Secret
from mep_agent.util.tasks import follow


class CredentialFiles(Service):
    """Re-reads the credential files and hands on a changed set; see the module."""

    name = "credentials"
    log = Logger()

    def __init__(
        self,
        files: tuple[tuple[str, str], ...],
        read: Callable[[str], Awaitable[bytes]],
        current: Credentials,
        changed: Callable[[Credentials], None],
        clock: IReactorTime,
        interval: float,
    ) -> None:
        """
        @param files: (credential, path) pairs: "ak", "sk", "oauth2_client_secret".
        @param read: reads a file without blocking the reactor.
        @param changed: told the new credentials when they changed.
        @param interval: seconds between reads (0: only when the MEP refuses the key).
        """
        self._files = files
        self._read = read
        self.current = current
        self._changed = changed
        self._interval = interval
        self._poll = LoopingCall(self.check_now)
        self._poll.clock = clock
        self._checking: Deferred[None] | None = None
        self._problem: str | None = None
        self.changes = 0

    def startService(self) -> None:
        """Read the files every interval, when there are files and an interval."""
        super().startService()
        if self._files and self._interval > 0:
            self._poll.start(self._interval, now=False)

    def stopService(self) -> Deferred[None]:
        """Stop reading; a read under way is let finish."""
        super().stopService()
        if self._poll.running:
            self._poll.stop()
        return follow(self._checking) if self._checking is not None else succeed(None)

    def check_now(self) -> Deferred[None]:
        """Read the files now (one read at a time); the MEP refused the key, or a poll."""
        if self._checking is None and self._files:
            self._checking = ensureDeferred(self._check())
            self._checking.addBoth(self._checked)
        return succeed(None)

    def _checked(self, result: object) -> None:
        self._checking = None

    async def _check(self) -> None:
        values: dict[str, str] = {}
        for key, path in self._files:
            setting = BY_KEY[f"{key}_file"].env or key
            try:
                text = (await self._read(path)).decode("utf-8").strip()
            except (OSError, UnicodeDecodeError) as e:
                self._refuse(f"{setting}: cannot read {path}: {getattr(e, 'strerror', e)}")
                return
            pattern, rule = CREDENTIAL_RULES[key]
            if not pattern.fullmatch(text):
                self._refuse(f"{setting}: {path} must hold {rule}")
                return
            values[key] = text
        self._problem = None
        new = self._with(values)
        if new != self.current:
            self.current = new
            self.changes += 1
            self.log.info(
                "credentials changed in {files}: signing with the new ones from now on",
                files=", ".join(path for _, path in self._files),
                event="credentials.changed",
            )
            self._changed(new)

    def _with(self, values: dict[str, str]) -> Credentials:
        current = self.current
        if "ak" in values:
            current = attrs.evolve(current, access_key=Secret(values["ak"]))
        if "sk" in values:
            current = attrs.evolve(current, secret_key=Secret(values["sk"]))
        if "oauth2_client_secret" in values and current.oauth2 is not None:
            client = attrs.evolve(
                current.oauth2, client_secret=Secret(values["oauth2_client_secret"])
            )
            current = attrs.evolve(current, oauth2=client)
        return current

    def _refuse(self, problem: str) -> None:
        if problem != self._problem:  # once per distinct problem, not once per poll
            self.log.warn(
                "credential files not taken, keeping the current credentials: {problem}",
                problem=problem,
                event="credentials.refused",
            )
        self._problem = problem
