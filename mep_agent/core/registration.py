"""
Registrar: registers every service of app_instance_info.yaml, keeps each alive with its
own heartbeats, repairs what the MEP lost, and deregisters everything on stop.

Per service: pending -> registered (heartbeating) -> [404: MEP lost it] -> pending ...
Failures never end a service's task: they are logged and retried.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import partial
from typing import Any

from attrs import define
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredSemaphore,
    ensureDeferred,
    gatherResults,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mep_agent.config.model import ServiceSpec
from mep_agent.core.errors import NoToken
from mep_agent.core.liveness import BeatSchedule, stagger
from mep_agent.core.token import TokenKeeper
from mep_agent.mp1.client import MepClient, Registration, Urgency
from mep_agent.mp1.dialect import mepserver_grace
from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.mp1.http import POOL_SIZE
from mep_agent.util.retry import Delays, backoff, sleep
from mep_agent.util.tasks import InFlight, stop_and_clean_up, supervise

# A 4xx answer to a registration will not fix itself; retry rarely, in case an operator
# fixes the MEP side (quota, app configuration) without restarting the pod.
REJECTED_RETRY = 300.0
LOG_EVERY_N_FAILURES = 10
# Least seconds between two confirm_ready after "not ready" answers (see ready_lost).
READY_GAP = 5.0
# Registrations in flight at once: what the MEP connection pool keeps, so fifty services at
# start-up reuse a few TLS connections instead of opening fifty.
REGISTRATION_CONCURRENCY = POOL_SIZE


class ServiceStatus(enum.Enum):
    """Where one service stands with the MEP."""

    PENDING = "pending"  # not registered yet (or lost by the MEP)
    REGISTERED = "registered"
    FAILING = "failing"  # registration attempts fail
    DEREGISTERED = "deregistered"


@define
class ServiceState:
    """What the agent knows about one service; read by the status and metrics endpoints."""

    spec: ServiceSpec
    status: ServiceStatus = ServiceStatus.PENDING
    registration: Registration | None = None
    registered_at: float | None = None
    # When the MEP's liveness clock last restarted, at the earliest: the send time of the
    # registration or of the last good heartbeat (see liveness.py).
    beat_reference: float | None = None
    last_heartbeat: float | None = None
    heartbeat_failures: int = 0  # consecutive
    heartbeats_sent: int = 0
    heartbeats_failed: int = 0
    registrations: int = 0
    waiting_for_token: bool = False  # the last attempt found no valid token
    pending_update: bool = False  # a reloaded ServiceInfo waits to be PUT
    repair_due: bool = False  # the sync saw it INACTIVE or SUSPENDED: restore it first
    mep_state: str | None = None  # what the last sync saw the MEP hold
    mep_seen_at: float | None = None
    last_error: str | None = None

    @property
    def healthy(self) -> bool:
        """Registered, and heartbeating when the MEP asked for heartbeats."""
        return self.status is ServiceStatus.REGISTERED and self.heartbeat_failures == 0

    def recovered(self) -> None:
        """The last attempt succeeded: no error to show any more."""
        self.waiting_for_token = False
        self.last_error = None

    def failed(self, error: Exception) -> None:
        """The last attempt failed with C{error} (already free of secrets)."""
        self.waiting_for_token = isinstance(error, NoToken)
        self.last_error = error.reason if isinstance(error, NoToken) else str(error)


class Registrar(Service):
    """Registers, heartbeats, repairs and deregisters the services; see the module."""

    name = "registrar"
    log = Logger()

    def __init__(
        self,
        mep: MepClient,
        tokens: TokenKeeper,
        clock: IReactorTime,
        specs: tuple[ServiceSpec, ...],
        request_timeout: float = 10.0,
        shutdown_timeout: float = 5.0,
        confirm_ready: bool = True,
        deregister_on_stop: bool = True,
        delays: Delays = backoff,
        on_data_loss: Callable[[], None] = lambda: None,
        liveness_grace: Callable[[int], float] = mepserver_grace,
        ready_first: bool = False,
        first_sync: Callable[[], Deferred[None]] | None = None,
    ) -> None:
        """
        @param ready_first: no registration before confirm_ready completed (the dialect's).
        @param first_sync: awaited before the first registration: the MEP's truth is read
            (and a dead run's leftovers cleaned) before anything is added (reconcile.py).
        @param deregister_on_stop: False in one-shot mode, where registrations outlive us.
        @param on_data_loss: called when the MEP lost a service (it may have lost more).
        @param liveness_grace: seconds past an interval before the MEP suspends a service.
        """
        self._mep = mep
        self._tokens = tokens
        self._clock = clock
        self._request_timeout = request_timeout
        self._shutdown_timeout = shutdown_timeout
        self._confirm_ready = confirm_ready
        self._deregister_on_stop = deregister_on_stop
        self._delays = delays
        self._on_data_loss = on_data_loss
        self._liveness_grace = liveness_grace
        self._ready_first = ready_first and confirm_ready
        self._first_sync = first_sync
        self._ready_refused_at: float | None = None
        self._ready_confirmed_at: float | None = None
        self._tasks: list[Deferred[None]] = []
        self._service_tasks: dict[str, Deferred[None]] = {}
        self._settled: bool | None = None
        self._settle_waiters: list[Deferred[bool]] = []
        self._confirming = False  # a confirm_ready loop is under way
        self._confirm_started_at: float | None = None
        self._ready_waiters: list[Deferred[None]] = []
        self.states = {spec.name: ServiceState(spec) for spec in specs}
        self._registering = DeferredSemaphore(REGISTRATION_CONCURRENCY)
        self._posting = InFlight()  # registrations under way: a stop waits for them
        self.ready_confirmed = False
        self.withdrawn = False  # the platform is terminating the app: nothing is wanted

    # -- lifecycle -----------------------------------------------------------------------

    def startService(self) -> None:
        """Start one task per service."""
        super().startService()
        # confirm_ready first: MEC 011 v2.2.1 platforms refuse registrations until the app
        # confirmed READY, and EdgeGallery's mepserver accepts it at any time.
        self._start_confirming()
        for state in self.states.values():
            self._start_service_task(state)
        self._check_settled()

    def _start_service_task(self, state: ServiceState) -> None:
        task = supervise(self._clock, f"service {state.spec.name}", partial(self._step, state))
        self._service_tasks[state.spec.name] = task
        self._tasks = [t for t in self._tasks if not t.called] + [task]

    def apply(self, specs: tuple[ServiceSpec, ...]) -> dict[str, list[str]]:
        """
        Make the MEP hold C{specs} (a reloaded app_instance_info.yaml): register the new
        services, deregister the removed ones, update the changed ones (PUT, keeping the
        serInstanceId) and leave the unchanged ones alone. Returns the names by change.
        """
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
        if self.withdrawn:
            return changes  # the app is being terminated: no file brings services back
        wanted = {spec.name: spec for spec in specs}
        for name in [n for n in self.states if n not in wanted]:
            gone = self.states.pop(name)
            self._stop_service_task(name)
            changes["removed"].append(name)
            if gone.registration is not None:
                self._tasks.append(ensureDeferred(self._deregister_quietly(gone)))
        for name, spec in wanted.items():
            state = self.states.get(name)
            if state is None:
                self.states[name] = ServiceState(spec)
                changes["added"].append(name)
                if self.running:
                    self._start_service_task(self.states[name])
            elif state.spec.body != spec.body:
                state.spec = spec
                changes["changed"].append(name)
                if state.registration is not None:
                    state.pending_update = True
                if self.running:  # restart its task: update first, then beat on
                    self._stop_service_task(name)
                    self._start_service_task(state)
        return changes

    def _stop_service_task(self, name: str) -> None:
        task = self._service_tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def _deregister_quietly(self, state: ServiceState) -> None:
        try:
            await self._deregister(state)
        except (MepError, NoToken):
            pass  # logged by _deregister

    async def withdraw(self) -> None:
        """
        The platform is terminating the app: heartbeats stop, every registration is
        deleted, and from now on nothing is wanted — none is registered again, whatever
        the MEP answers or a reloaded file says, and a stop finds nothing to delete.
        """
        self.withdrawn = True
        for task in self._tasks:
            task.cancel()
        self._tasks, self._service_tasks = [], {}
        states, self.states = list(self.states.values()), {}
        await gatherResults(
            [ensureDeferred(self._deregister_quietly(s)) for s in states if s.registration]
        )

    def stopService(self) -> Deferred[list[bool]]:
        """
        Let the registrations under way finish (a POST the MEP received is carried out),
        stop heartbeats, then DELETE every registration in parallel, all within the bound.
        """
        super().stopService()
        if not self._deregister_on_stop:
            for task in self._tasks:
                task.cancel()
            return succeed([])
        return ensureDeferred(
            stop_and_clean_up(
                self._clock,
                self._shutdown_timeout,
                self._posting,
                self._tasks,
                lambda: [
                    partial(self._deregister, s)
                    for s in self.states.values()
                    if s.registration is not None
                ],
            )
        )

    def last_error(self) -> str | None:
        """The last error of the token or of any service, for a one-line summary."""
        if self._tokens.last_error:
            return f"token: {self._tokens.last_error}"
        for name, state in self.states.items():
            if state.last_error:
                return f"service {name}: {state.last_error}"
        return None

    def when_settled(self) -> Deferred[bool]:
        """
        Fires once every service is registered and READY confirmed (when enabled): with
        True, or with False when the MEP refused confirm_ready.
        """
        if self._settled is not None:
            return succeed(self._settled)
        d: Deferred[bool] = Deferred()
        self._settle_waiters.append(d)
        return d

    def _settle(self, ok: bool) -> None:
        if self._settled is None:
            self._settled = ok
            waiters, self._settle_waiters = self._settle_waiters, []
            for waiter in waiters:
                waiter.callback(ok)

    # -- one service ---------------------------------------------------------------------

    async def _step(self, state: ServiceState) -> bool:
        """Register if needed, then beat until the MEP loses the service; True: done."""
        if state.repair_due and state.registration is not None:
            state.repair_due = False
            await self._restore(state)  # a 404 there means lost: registered again below
        if state.pending_update and state.registration is not None:
            await self._update(state)
        if state.registration is None:
            await self._register(state)
        registration = state.registration
        if registration is None or not registration.interval or not registration.liveness_path:
            return True  # no heartbeats wanted: nothing more to do until stop
        await self._heartbeat(state)
        return False

    async def _update(self, state: ServiceState) -> None:
        """A reloaded ServiceInfo: PUT it on the service (same serInstanceId); refused, anew."""
        registration = state.registration
        assert registration is not None
        try:
            updated = await self._mep.update(registration.ser_instance_id, state.spec.body)
        except NoToken as e:
            state.failed(e)
            return  # pending_update stays: tried again on the next step
        except MepError as e:
            if e.transient:
                state.failed(e)
                await sleep(self._clock, next(self._delays()))
                return
            if e.status == 404:  # the MEP lost it (and may have lost more): anew, and look
                state.pending_update = False
                self._lost(state, e)
                return
            # The MEP will not take the change in place (a MEC 011 platform allows only
            # state changes): register the new ServiceInfo instead of the old one.
            self.log.info(
                "service {ser_name}: the MEP refused the update ({error}); registering anew",
                ser_name=state.spec.name,
                error=str(e),
                event="service.update_refused",
            )
            state.pending_update = False
            await self._deregister_quietly(state)
            state.registration = None
            state.status = ServiceStatus.PENDING
            return
        state.pending_update = False
        state.registration = updated
        state.recovered()
        self.log.info(
            "service {ser_name} updated ({ser_instance_id})",
            ser_name=state.spec.name,
            ser_instance_id=updated.ser_instance_id,
            event="service.updated",
        )

    async def _register(self, state: ServiceState) -> None:
        spec = state.spec
        delays = self._delays()
        if self._first_sync is not None:
            await self._first_sync()
        while True:
            if self._ready_first:
                await self.when_ready()
            await self._registering.acquire()
            sent = self._clock.seconds()
            try:
                try:
                    if not self.running:
                        raise CancelledError()  # stopping: no new POST
                    registration = await self._posting.track(self._mep.register(state.spec.body))
                finally:
                    self._registering.release()
                break
            except NoToken as e:
                state.failed(e)  # get() waited its deadline; ask again at once
                if not self._tokens.running:
                    await sleep(self._clock, next(delays))
            except MepError as e:
                if e.verdict is Verdict.NOT_READY and self._confirm_ready:
                    state.failed(e)
                    await self.ready_lost()  # confirm_ready once more, then at once again
                    continue
                delay = next(delays) if e.transient else REJECTED_RETRY
                self._registration_failed(state, e, delay)
                await sleep(self._clock, delay)
        again = state.registrations > 0
        state.registrations += 1
        state.registration = registration
        state.status = ServiceStatus.REGISTERED
        state.registered_at = self._clock.seconds()
        state.beat_reference = sent
        state.heartbeat_failures = 0
        state.recovered()
        self.log.info(
            "service {ser_name} {what} as {ser_instance_id}; heartbeat every {interval}s",
            ser_name=spec.name,
            what="re-registered" if again else "registered",
            ser_instance_id=registration.ser_instance_id,
            interval=registration.interval,
            event="service.reregistered" if again else "service.registered",
        )
        if registration.refused_link:
            self.log.warn(
                "service {ser_name}: the MEP's liveness link {link} leads to another host "
                "than the MEP; it is not followed (no heartbeats for this service)",
                ser_name=spec.name,
                link=registration.refused_link,
                event="service.link_refused",
            )
        self._check_settled()

    def _registration_failed(self, state: ServiceState, error: MepError, delay: float) -> None:
        state.status = ServiceStatus.FAILING
        state.failed(error)
        if error.transient:
            self.log.warn(
                "registering {ser_name} failed ({error}); retrying in {delay:.1f}s",
                ser_name=state.spec.name,
                error=str(error),
                delay=delay,
                event="service.register_failed",
                status=error.status,
            )
        else:
            self.log.error(
                "the MEP refused service {ser_name}: {error}; retrying in {delay:.0f}s",
                ser_name=state.spec.name,
                error=str(error),
                delay=delay,
                event="service.register_refused",
                status=error.status,
            )

    async def _heartbeat(self, state: ServiceState) -> None:
        """Beat until the MEP says it lost the service (then return to re-register)."""
        registration = state.registration
        assert registration is not None and registration.liveness_path is not None
        schedule = BeatSchedule(self._request_timeout, self._liveness_grace(registration.interval))
        delays = self._delays()
        reference = state.beat_reference
        if reference is None:
            reference = self._clock.seconds()
        period = schedule.period(registration.interval)
        names = list(self.states)
        index = names.index(state.spec.name) if state.spec.name in names else 0
        first = period - stagger(period, index, len(names))
        wait = max(0.0, reference + first - self._clock.seconds())
        while True:
            await sleep(self._clock, wait)
            state.heartbeats_sent += 1
            path = registration.liveness_path
            assert path is not None
            sent = self._clock.seconds()
            timeout = schedule.timeout(registration.interval)
            period = schedule.period(registration.interval)
            try:
                await self._mep.heartbeat(path, registration.liveness_method, timeout)
            except NoToken as e:
                state.heartbeats_failed += 1
                self._beat_failed(state, e)
                wait = min(period, next(delays))
                continue
            except MepError as e:
                if e.verdict is Verdict.NOT_READY and self._confirm_ready:
                    # READY was lost, not this beat: confirm, then beat again at once.
                    await self.ready_lost()
                    wait = 0.0
                    continue
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
                schedule.observe(self._clock.seconds() - sent)  # a slow MEP fails slowly
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
            now = self._clock.seconds()
            state.last_heartbeat = now
            state.beat_reference = sent
            state.recovered()
            schedule.observe(now - sent)
            delays = self._delays()
            wait = max(0.0, sent + schedule.period(registration.interval) - now)

    def _beat_failed(self, state: ServiceState, error: MepError | NoToken) -> None:
        state.heartbeat_failures += 1
        state.failed(error)
        if state.heartbeat_failures % LOG_EVERY_N_FAILURES == 1:
            self.log.warn(
                "heartbeat of {ser_name} failed ({error}); {failures} in a row",
                ser_name=state.spec.name,
                error=state.last_error,
                failures=state.heartbeat_failures,
                event="heartbeat.failing",
                status=getattr(error, "status", None),
            )

    # -- what the sync (reconcile.py) tells it -------------------------------------------

    def held(self, started: float) -> dict[str, str]:
        """serInstanceId -> name of the registrations made before C{started} (a sync's)."""
        return {
            s.registration.ser_instance_id: name
            for name, s in self.states.items()
            if s.registration is not None
            and s.registered_at is not None
            and s.registered_at <= started
        }

    def seen(
        self, name: str, mep_state: str, now: float, echoed: dict[str, Any] | None = None
    ) -> str | None:
        """
        The MEP holds C{name}'s instance in C{mep_state} with the C{echoed} members; what
        differs from what is wanted, if anything, is repaired at once: "inactive" or
        "suspended" (restored to the wanted state), "drifted" (a member the MEP echoes is
        not the wanted one: updated, or deleted and registered anew where the platform
        refuses the change). None when nothing differs.
        """
        state = self.states.get(name)
        if state is None:
            return None
        state.mep_state, state.mep_seen_at = mep_state, now
        if not self.running or state.registration is None:
            return None
        wanted = state.spec.body
        drifted = any(wanted.get(k) != v for k, v in (echoed or {}).items() if k in wanted)
        if mep_state != wanted.get("state"):
            state.repair_due = True
            self._restart(name)
            return mep_state.lower()
        if drifted:
            state.pending_update = True
            self._restart(name)
            return "drifted"
        return None

    async def delete_leftover(self, name: str, ser_instance_id: str) -> None:
        """Delete an instance of C{name} that a dead run left (not ACTIVE, not ours)."""
        self.log.info(
            "deleting {ser_instance_id}, an instance of {ser_name} that an earlier run left",
            ser_instance_id=ser_instance_id,
            ser_name=name,
            event="service.leftover_deleted",
        )
        try:
            await self._mep.deregister(ser_instance_id)
        except (MepError, NoToken):
            pass  # the next sync tries again

    def forget(self, name: str) -> None:
        """The MEP no longer holds C{name}'s instance: register it again at once."""
        state = self.states.get(name)
        if state is None or state.registration is None:
            return
        self.log.warn(
            "the MEP no longer holds service {ser_name} ({ser_instance_id}); registering again",
            ser_name=name,
            ser_instance_id=state.registration.ser_instance_id,
            event="service.lost",
        )
        state.registration = None
        state.status = ServiceStatus.PENDING
        state.mep_state = None
        self._restart(name)

    def _restart(self, name: str) -> None:
        if self.running and name in self.states:
            self._stop_service_task(name)
            self._start_service_task(self.states[name])

    def _lost(self, state: ServiceState, error: MepError) -> None:
        self.log.warn(
            "the MEP lost service {ser_name} ({ser_instance_id}); registering again",
            ser_name=state.spec.name,
            ser_instance_id=state.registration.ser_instance_id if state.registration else None,
            event="service.lost",
        )
        state.registration = None
        state.status = ServiceStatus.PENDING
        state.failed(error)
        self._on_data_loss()
        # The MEP lost data since our last confirm_ready: confirm READY again. One MEP
        # restart loses every service, but only the first loss after a confirm asks.
        registered_at = state.registered_at
        started = self._confirm_started_at
        if started is None or registered_at is None or started <= registered_at:
            self.ready_confirmed = False
            self._start_confirming()

    async def _restore(self, state: ServiceState) -> Registration | None:
        """
        409: the MEP holds the service as INACTIVE, which heartbeats cannot change.
        PUT the ServiceInfo the MEP last returned with only the desired state changed (a
        MEC 011 platform refuses any other change; mepserver restores ACTIVE and keeps the
        serInstanceId); if the MEP no longer knows the instance, register anew.
        """
        registration = state.registration
        assert registration is not None
        self.log.warn(
            "service {ser_name} is INACTIVE on the MEP; restoring {state}",
            ser_name=state.spec.name,
            state=state.spec.body.get("state"),
            event="service.inactive",
        )
        body = dict(registration.info or state.spec.body, state=state.spec.body.get("state"))
        try:
            restored = await self._mep.update(registration.ser_instance_id, body)
        except NoToken as e:
            self._beat_failed(state, e)
            return registration
        except MepError as e:
            if e.status == 404:
                self._lost(state, e)
                return None
            self._beat_failed(state, e)
            return registration
        # Same serInstanceId, so the same liveness link, if the answer omits it.
        if not restored.liveness_path:
            restored = Registration(
                restored.ser_instance_id,
                registration.liveness_path,
                restored.interval or registration.interval,
                registration.liveness_method,
                restored.info or registration.info,
            )
        state.registration = restored
        return restored

    async def _deregister(self, state: ServiceState) -> None:
        registration = state.registration
        assert registration is not None
        try:
            await self._mep.deregister(
                registration.ser_instance_id, Urgency(self._shutdown_timeout, hurry=True)
            )
        except NoToken as e:
            self._deregister_failed(state, e.reason, None)
            raise
        except MepError as e:
            if e.status != 404:  # already gone is what we wanted
                self._deregister_failed(state, str(e), e.status)
                raise
        state.registration = None
        state.status = ServiceStatus.DEREGISTERED
        self.log.info(
            "service {ser_name} deregistered",
            ser_name=state.spec.name,
            event="service.deregistered",
        )

    def _deregister_failed(self, state: ServiceState, error: str, status: int | None) -> None:
        self.log.warn(
            "deregistering {ser_name} failed: {error}",
            ser_name=state.spec.name,
            error=error,
            event="service.deregister_failed",
            status=status,
        )

    # -- all services --------------------------------------------------------------------

    def _check_settled(self) -> None:
        registered = all(s.registration is not None for s in self.states.values())
        if registered and (self.ready_confirmed or not self._confirm_ready):
            self._settle(True)

    def _start_confirming(self) -> None:
        if self._confirm_ready and not self._confirming and self.running:
            self._confirming = True
            self._confirm_started_at = self._clock.seconds()
            self._tasks.append(supervise(self._clock, "confirm_ready", self._confirm))

    async def ready_lost(self) -> None:
        """
        A call was refused "not ready": READY is state the MEP lost. Confirm it again (one
        confirm_ready for every caller that asks meanwhile) and wait for it; not sooner
        than L{READY_GAP} after the last confirmation (a MEP that keeps saying "not ready"
        costs a confirm_ready every few seconds, not a storm).
        """
        if self.ready_confirmed and self._ready_confirmed_at is not None:
            await sleep(
                self._clock,
                max(0.0, self._ready_confirmed_at + READY_GAP - self._clock.seconds()),
            )
        self.ready_confirmed = False
        await self.when_ready()
        self._on_data_loss()  # the platform lost its state: look at what else it lost

    async def when_ready(self) -> None:
        """Return once READY is confirmed (at once when it is, or when it is not wanted)."""
        if not self._confirm_ready or self.ready_confirmed or not self.running:
            return
        waiter: Deferred[None] = Deferred(self._ready_waiters.remove)
        self._ready_waiters.append(waiter)  # before: the confirmation may come at once
        self._start_confirming()
        await waiter

    def _release_ready_waiters(self) -> None:
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    async def _confirm(self) -> bool:
        delays = self._delays()
        if self._ready_refused_at is not None:  # refused for good lately: not at once again
            await sleep(
                self._clock,
                max(0.0, self._ready_refused_at + REJECTED_RETRY - self._clock.seconds()),
            )
        try:
            while True:
                try:
                    await self._mep.confirm_ready()
                except NoToken:
                    if not self._tokens.running:
                        await sleep(self._clock, next(delays))
                    continue
                except MepError as e:
                    if not e.transient and e.status != 409:
                        self.log.error(
                            "confirm_ready refused: {error}",
                            error=str(e),
                            event="app.ready_refused",
                            status=e.status,
                        )
                        self._ready_refused_at = self._clock.seconds()
                        self._settle(False)
                        self._release_ready_waiters()  # their calls fail and back off
                        return True
                    await sleep(self._clock, next(delays))
                    continue
                self.ready_confirmed = True
                self._ready_confirmed_at = self._clock.seconds()
                self._ready_refused_at = None
                self.log.info("confirmed READY to the MEP", event="app.ready_confirmed")
                self._release_ready_waiters()
                self._check_settled()
                return True
        finally:
            self._confirming = False
