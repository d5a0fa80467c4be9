"""
Registrar: registers every service of app_instance_info.yaml, keeps each alive with its
own heartbeats, repairs what the MEP lost, and deregisters everything on stop.

Per service: pending -> registered (heartbeating) -> [404: MEP lost it] -> pending ...
Failures never end a service's task: they are logged and retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .mep import MepClient, MepError, Registration
from .model import ServiceSpec
from .retry import UNEXPECTED_PAUSE, backoff, sleep, until_success
from .tasks import bounded, start_task
from .token import TokenKeeper

# A 4xx answer to a registration will not fix itself; retry rarely, in case an operator
# fixes the MEP side (quota, app configuration) without restarting the pod.
REJECTED_RETRY = 300.0
BEAT_FRACTION = 0.75  # beat after 75 % of the interval ...
BEAT_TIMEOUT_FRACTION = 0.2  # ... with at most 20 % of it as timeout: lands before I + 5 %
LOG_EVERY_N_FAILURES = 10


def beat_schedule(interval: int, request_timeout: float) -> tuple[float, float]:
    """(seconds between beats, timeout of a beat) for the interval the MEP imposed."""
    return interval * BEAT_FRACTION, min(request_timeout, interval * BEAT_TIMEOUT_FRACTION)


@define
class ServiceState:
    """What the agent knows about one service; read by the status and metrics endpoints."""

    spec: ServiceSpec
    status: str = "pending"  # pending | registered | failing | deregistered
    registration: Registration | None = None
    registered_at: float | None = None
    last_heartbeat: float | None = None
    heartbeat_failures: int = 0  # consecutive
    heartbeats_sent: int = 0
    heartbeats_failed: int = 0
    registrations: int = 0
    last_error: str | None = None

    @property
    def healthy(self) -> bool:
        """Registered, and heartbeating when the MEP asked for heartbeats."""
        return self.status == "registered" and self.heartbeat_failures == 0


@define(slots=False)  # Service sets attributes of its own
class Registrar(Service):
    mep: MepClient
    tokens: TokenKeeper
    clock: IReactorTime
    specs: tuple[ServiceSpec, ...]
    request_timeout: float = 10.0
    shutdown_timeout: float = 5.0
    heartbeat_method: str = "PUT"
    confirm_ready: bool = True
    deregister_on_stop: bool = True  # False in one-shot mode: registrations outlive us
    delays: Callable[[], Iterator[float]] = backoff
    on_data_loss: Callable[[], None] = lambda: None
    states: dict[str, ServiceState] = field(init=False)
    ready_confirmed: bool = field(init=False, default=False)
    _tasks: list[Deferred[None]] = field(init=False, factory=list)
    settled: bool | None = field(init=False, default=None)
    _waiters: list[Deferred[bool]] = field(init=False, factory=list)
    name = "registrar"
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.states = {spec.name: ServiceState(spec) for spec in self.specs}

    # -- lifecycle -----------------------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        for state in self.states.values():
            self._tasks.append(start_task(self._run(state), f"service {state.spec.name}"))
        if not self.states:
            self._registered_all()

    def stopService(self) -> Deferred[list[bool]]:
        """Stop heartbeats, then DELETE every registration in parallel within the bound."""
        Service.stopService(self)
        for task in self._tasks:
            task.cancel()
        if not self.deregister_on_stop:
            return succeed([])
        registered = [s for s in self.states.values() if s.registration is not None]
        return bounded(
            self.clock, self.shutdown_timeout, [partial(self._deregister, s) for s in registered]
        )

    def when_settled(self) -> Deferred[bool]:
        """
        Fires once every service is registered and READY confirmed (when enabled): with
        True, or with False when the MEP refused confirm_ready.
        """
        if self.settled is not None:
            return succeed(self.settled)
        d: Deferred[bool] = Deferred()
        self._waiters.append(d)
        return d

    def _settle(self, ok: bool) -> None:
        if self.settled is None:
            self.settled = ok
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(ok)

    # -- one service ---------------------------------------------------------------------

    async def _run(self, state: ServiceState) -> None:
        while self.running:
            try:
                if state.registration is None:
                    await self._register(state)
                registration = state.registration
                if (
                    registration is None
                    or not registration.interval
                    or registration.liveness_path is None
                ):
                    return  # no heartbeats wanted: nothing more to do until stop
                await self._heartbeat(state)
            except CancelledError:
                raise
            except Exception:
                # An uncaught error would end this service's heartbeats for good; carry
                # on with what is known (a kept registration is not registered again).
                state.last_error = "unexpected error (see the log)"
                self.log.failure(
                    "service {ser_name}: unexpected error; carrying on in {pause:.0f}s",
                    ser_name=state.spec.name,
                    pause=UNEXPECTED_PAUSE,
                )
                await sleep(self.clock, UNEXPECTED_PAUSE)

    async def _register(self, state: ServiceState) -> None:
        spec = state.spec

        def failed(error: MepError, delay: float) -> None:
            state.status = "failing"
            state.last_error = str(error)
            if error.transient:
                self.log.warn(
                    "registering {ser_name} failed ({error}); retrying in {delay:.1f}s",
                    ser_name=spec.name,
                    error=str(error),
                    delay=delay,
                    event="service.register_failed",
                )
            else:
                self.log.error(
                    "the MEP refused service {ser_name}: {error}; retrying in {delay:.0f}s",
                    ser_name=spec.name,
                    error=str(error),
                    delay=delay,
                    event="service.register_refused",
                )

        registration = await until_success(
            self.clock,
            lambda: self.tokens.with_token(lambda token: self.mep.register(token, spec.body)),
            lambda: bool(self.running),
            self.delays(),
            REJECTED_RETRY,
            failed,
        )
        if registration is None:
            return  # stopped
        again = state.registrations > 0
        state.registrations += 1
        state.registration = registration
        state.status = "registered"
        state.registered_at = self.clock.seconds()
        state.heartbeat_failures = 0
        state.last_error = None
        self.log.info(
            "service {ser_name} {what} as {ser_instance_id}; heartbeat every {interval}s",
            ser_name=spec.name,
            what="re-registered" if again else "registered",
            ser_instance_id=registration.ser_instance_id,
            interval=registration.interval,
            event="service.reregistered" if again else "service.registered",
        )
        self._check_all_registered()

    async def _heartbeat(self, state: ServiceState) -> None:
        """Beat until the MEP says it lost the service (then return to re-register)."""
        registration = state.registration
        assert registration is not None and registration.liveness_path is not None
        period, timeout = beat_schedule(registration.interval, self.request_timeout)
        delays = self.delays()
        wait = period
        while self.running:
            await sleep(self.clock, wait)
            state.heartbeats_sent += 1
            path = registration.liveness_path
            try:
                await self.tokens.with_token(
                    lambda token, path=path: self.mep.heartbeat(  # type: ignore[misc]
                        token, path, self.heartbeat_method, timeout
                    )
                )
            except MepError as e:
                state.heartbeats_failed += 1
                if e.status == 404:
                    self._lost(state, e)
                    return
                if e.status == 409:
                    restored = await self._restore(state)
                    if restored is None:
                        return  # lost while restoring: register again
                    registration = restored
                    continue
                self._beat_failed(state, e)
                wait = min(period, next(delays))
                continue
            if state.heartbeat_failures:
                self.log.info(
                    "heartbeats of {ser_name} recovered after {failures} failures",
                    ser_name=state.spec.name,
                    failures=state.heartbeat_failures,
                    event="heartbeat.recovered",
                )
            state.heartbeat_failures = 0
            state.last_heartbeat = self.clock.seconds()
            delays = self.delays()
            wait = period

    def _beat_failed(self, state: ServiceState, error: MepError) -> None:
        state.heartbeat_failures += 1
        state.last_error = str(error)
        if state.heartbeat_failures % LOG_EVERY_N_FAILURES == 1:
            self.log.warn(
                "heartbeat of {ser_name} failed ({error}); {failures} in a row",
                ser_name=state.spec.name,
                error=str(error),
                failures=state.heartbeat_failures,
                event="heartbeat.failing",
            )

    def _lost(self, state: ServiceState, error: MepError) -> None:
        self.log.warn(
            "the MEP lost service {ser_name} ({ser_instance_id}); registering again",
            ser_name=state.spec.name,
            ser_instance_id=state.registration.ser_instance_id if state.registration else None,
            event="service.lost",
        )
        state.registration = None
        state.status = "pending"
        state.last_error = str(error)
        self.ready_confirmed = False  # confirm READY again once all are back
        self.on_data_loss()

    async def _restore(self, state: ServiceState) -> Registration | None:
        """
        409: the MEP holds the service as INACTIVE, which heartbeats cannot change.
        PUT the desired ServiceInfo again (restores ACTIVE, keeps the serInstanceId);
        if the MEP no longer knows the instance, fall back to registering anew.
        """
        registration = state.registration
        assert registration is not None
        self.log.warn(
            "service {ser_name} is INACTIVE on the MEP; restoring {state}",
            ser_name=state.spec.name,
            state=state.spec.body.get("state"),
            event="service.inactive",
        )
        try:
            restored = await self.tokens.with_token(
                lambda token: self.mep.update(token, registration.ser_instance_id, state.spec.body)
            )
        except MepError as e:
            if e.status == 404:
                self._lost(state, e)
                return None
            self._beat_failed(state, e)
            return registration
        # Same serInstanceId, so the same liveness link, if the answer omits it.
        restored = Registration(
            restored.ser_instance_id,
            restored.liveness_path or registration.liveness_path,
            restored.interval or registration.interval,
        )
        state.registration = restored
        return restored

    async def _deregister(self, state: ServiceState) -> None:
        registration = state.registration
        assert registration is not None
        token = self.tokens.current()
        if token is None:
            token = await self.mep.fetch_token()
        try:
            await self.mep.deregister(token, registration.ser_instance_id)
        except MepError as e:
            if e.status != 404:  # already gone is what we wanted
                self.log.warn(
                    "deregistering {ser_name} failed: {error}",
                    ser_name=state.spec.name,
                    error=str(e),
                    event="service.deregister_failed",
                )
                raise
        state.registration = None
        state.status = "deregistered"
        self.log.info(
            "service {ser_name} deregistered",
            ser_name=state.spec.name,
            event="service.deregistered",
        )

    # -- all services --------------------------------------------------------------------

    def _check_all_registered(self) -> None:
        if all(s.registration is not None for s in self.states.values()):
            self._registered_all()

    def _registered_all(self) -> None:
        if self.confirm_ready and not self.ready_confirmed:
            self._tasks.append(start_task(self._confirm_ready(), "confirm_ready"))
        elif not self.confirm_ready:
            self._settle(True)

    async def _confirm_ready(self) -> None:
        self.ready_confirmed = True  # one attempt loop at a time
        delays = self.delays()
        while self.running:
            try:
                await self.tokens.with_token(self.mep.confirm_ready)
            except MepError as e:
                if not e.transient and e.status != 409:
                    self.log.error(
                        "confirm_ready refused: {error}", error=str(e), event="app.ready_refused"
                    )
                    self._settle(False)
                    return
                await sleep(self.clock, next(delays))
                continue
            self.log.info("confirmed READY to the MEP", event="app.ready_confirmed")
            self._settle(True)
            return
