"""
MepWire: one exchange with the MEP over an injected L{MepHttp}, as both sides of the client
(L{mep_agent.mp1.auth} and L{mep_agent.mp1.client}) use it. Every exchange has one deadline
on the injected clock for the whole of it, reads at most C{max_body} bytes, follows no
redirect, parses JSON with a depth limit, and turns any failure into a L{MepError} whose
detail has every secret removed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from attrs import frozen
from twisted.internet.defer import CancelledError, TimeoutError, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IResponse

from mep_agent.mp1.credentials import Credentials
from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.mp1.gate import OpenGate, Pace, RequestGate, retry_after
from mep_agent.mp1.http import MAX_BODY, BadBody, MepHttp
from mep_agent.mp1.tokens import Token
from mep_agent.util import jsontext
from mep_agent.util.secret import redact

_MAX_DETAIL = 400
PACED = Pace()  # an ordinary request: in its turn

#: Told (operation, HTTP status or None, seconds) after every exchange: metrics.
Observer = Callable[[str, "int | None", float], None]


@frozen
class WireHooks:
    """What watches and paces a wire's exchanges (each optional)."""

    observe: Observer | None = None  # told every exchange's outcome (metrics)
    explain: Callable[[str], str | None] | None = None  # a failure's text -> advice (TLS)
    gate: RequestGate | None = None  # admits every exchange, hears every answer (the budget)


class MepWire:
    """Exchanges with one MEP, signed with the current credentials."""

    def __init__(
        self,
        http: MepHttp,
        clock: IReactorTime,
        base_url: str,
        host_header: str,
        credentials: Credentials,
        timeout: float,
        max_body: int = MAX_BODY,
        hooks: WireHooks = WireHooks(),
    ) -> None:
        """@param hooks: metrics, advice on failures, the budget (L{WireHooks})."""
        self.http = http
        self.clock = clock
        self.base = base_url
        self.host = host_header
        self.credentials = credentials
        self.timeout = timeout
        self.observe: Observer = hooks.observe or (lambda operation, status, seconds: None)
        self._max_body = max_body
        self._explain = hooks.explain or (lambda text: None)
        self.gate: RequestGate = hooks.gate or OpenGate()
        #: Exchanges on the wire now, by operation (admitted and sent, not yet answered).
        self.sending: Counter[str] = Counter()
        self.answers = 0  # HTTP answers heard (any status): the MEP was reached

    def set_credentials(self, credentials: Credentials) -> None:
        """Sign from now on with C{credentials} (their files changed: core/credential_files.py)."""
        self.credentials = credentials

    @property
    def app_instance_id(self) -> str:
        """The app instance id, for the paths of Mp1 calls."""
        return self.credentials.app_instance_id.reveal()

    def error(
        self,
        operation: str,
        status: int | None,
        detail: str,
        body: Any = None,
        verdict: Verdict | None = None,
        token: Token | None = None,
    ) -> MepError:
        """Every MepError is built here: its detail is shortened and scrubbed of secrets."""
        secrets = self.credentials.all() + ((token.access_token,) if token else ())
        text = redact(detail, secrets)[:_MAX_DETAIL] or "(empty body)"
        return MepError(operation, status, text, body, verdict)

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        expected: tuple[int, ...],
        headers: dict[str, str],
        body: Any = None,
        timeout: float | None = None,
        token: Token | None = None,
        pace: Pace = PACED,
    ) -> tuple[IResponse, Any, int]:
        """
        One exchange: C{(response, parsed JSON or None, body size)} when the status is
        one of C{expected}, else a MepError. The gate admits it first, as C{pace} says, and
        hears the answer.
        """
        await self.gate.admit(operation, pace)
        authorization = token.authorization() if token is not None else None
        if authorization is not None:
            headers = dict(headers, Authorization=authorization)
        data = None
        if isinstance(body, bytes):
            data = body  # already encoded (a form), Content-Type set by the caller
        elif body is not None:
            data = _json_bytes(body)
            headers = {"Content-Type": "application/json", **headers}
        url = path if "://" in path else self.base + path
        # One deadline for the whole exchange, the body included: a MEP that sends its
        # headers and then stalls must not hang a heartbeat.
        exchange = ensureDeferred(self.http.exchange(method, url, headers, data, self._max_body))
        exchange.addTimeout(timeout or self.timeout, self.clock)
        started = self.clock.seconds()
        self.sending[operation] += 1
        try:
            response, raw = await exchange
        except (TimeoutError, CancelledError):
            self._heard(operation, None, None, started)
            raise self.error(operation, None, "timed out") from None
        except BadBody as e:
            self._heard(operation, e.status, None, started)
            raise self.error(
                operation, e.status, str(e.reason), verdict=Verdict.UNEXPECTED
            ) from None
        except Exception as e:
            self._heard(operation, None, None, started)
            text = _describe_failure(e)
            target = urlsplit(url).netloc
            detail = self._explain(text) or (
                text if text == "timed out" else f"{text} (connecting to {target})"
            )
            raise self.error(operation, None, detail, token=token) from None
        status = response.code
        self._heard(operation, status, response, started)
        parsed: Any = None
        parse_error: str | None = None
        if raw:
            try:
                parsed = jsontext.loads(raw)
            except ValueError as e:
                parse_error = str(e)
        if status not in expected:
            if 300 <= status < 400:
                location = (response.headers.getRawHeaders("location") or ["(none)"])[0]
                detail = f"redirect to {location} not followed"
            else:
                detail = raw.decode("utf-8", "replace")
            raise self.error(operation, status, detail, parsed, token=token)
        if parse_error is not None:
            raise self.error(
                operation, status, f"answer is not JSON ({parse_error})", None, Verdict.UNEXPECTED
            )
        return response, parsed, len(raw)

    def _heard(
        self, operation: str, status: int | None, response: IResponse | None, started: float
    ) -> None:
        """An exchange ended: off the wire; the metrics and the gate are told how."""
        now = self.clock.seconds()
        self.sending[operation] -= 1
        if status is not None:
            self.answers += 1
        self.observe(operation, status, now - started)
        header = response.headers.getRawHeaders("retry-after") if response else None
        self.gate.answered(operation, status, retry_after(header[0] if header else None, now))

    def may_have_received(self, operations: tuple[str, ...]) -> bool:
        """
        Whether a request of one of C{operations} on the wire now may have reached the MEP:
        never when the MEP has not answered anything yet (it is unreachable, so a stop
        need not wait for them).
        """
        return self.answers > 0 and any(self.sending[o] > 0 for o in operations)

    def unexpected(self, operation: str, status: int, detail: str) -> MepError:
        """An answer that breaks the protocol (shape, type): normal backoff."""
        return self.error(operation, status, detail, verdict=Verdict.UNEXPECTED)


def _describe_failure(error: Exception) -> str:
    reasons = getattr(error, "reasons", None)
    if reasons:  # ResponseNeverReceived / ResponseFailed wrap failures
        inner = reasons[0].value
        if isinstance(inner, CancelledError):
            return "timed out"
        return f"{type(inner).__name__}: {inner}"
    return f"{type(error).__name__}: {error}"


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body).encode()
