"""
An app termination as EdgeGallery's mepserver runs it, for the EdgeGallery face: MECM's
C{DELETE .../AppInstanceTermination} (mm5/controller.go terminateAppInstance, read in
EdgeGallery/mep 971f2d0 and seen on the interop kit) is two things at once.

- The request itself deletes the app's services, one after the other from a list read
  first, each followed by its gateway clean-up (DeleteService), then the app's AK/SK at
  mepauth (DeleteFromMepauth), and answers MECM without waiting for the app. A service of
  the list the app deleted in the meantime fails the request: "instance not found", the rest
  of the list and the AK/SK kept.
- A worker tells the app: only the first of its termination subscriptions (mepserver takes
  the first one Go's map iteration gives, at random; here the first made), then waits up to
  the grace period for confirm_termination and deletes the app's subscriptions. A notice it
  could not deliver ends the worker there: the subscriptions are never deleted. With no
  termination subscription there is no worker at all.

The registry keeps the termination's record; the EdgeGallery face (app.py) starts it and
takes the confirmation here.
"""

from __future__ import annotations

from mep_emulator import termination as mec011
from mep_emulator.registry import Registry
from mep_emulator.termination import Termination, TerminationLinks

#: Seconds between two of the request's deletions: the gateway clean-up of the one before
#: (four or five Kong admin calls; 0.136 s between the kit's two unregistrations).
KONG_CLEANUP = 0.13
NOT_FOUND = "failure: instance not found"


def terminate(
    registry: Registry, app_id: str, action: str, grace: float, links: TerminationLinks
) -> Termination:
    """Start the termination of C{app_id}: the request's deletions and the worker's notice."""
    subscribers = registry.app_subscriptions(app_id, termination=True)
    told = subscribers[:1]  # AppTerminationIsSubscribed: the first one, nobody else
    termination = mec011.start(registry, app_id, action, grace, told)
    termination.subscriber = told[0].subscription_id if told else None
    if not told:  # no worker: nothing waits, no subscription is deleted
        termination.ended_at = termination.notified_at
    for sub in told:
        registry.notify(
            mec011.notice(
                sub, termination, grace, links, lambda ok: _delivered(registry, termination, ok)
            )
        )
    listed = [s.ser_instance_id for s in registry.services.values() if s.app_instance_id == app_id]
    _delete(registry, termination, listed)
    return termination


def _delete(registry: Registry, termination: Termination, listed: list[str]) -> None:
    """The request's next deletion; when the list is done, the AK/SK (the listeners)."""
    termination.deleting = None
    if not listed:
        termination.result = "success"
        mec011.cleaned_up(registry, termination.app_instance_id)
        return
    first, rest = listed[0], listed[1:]
    if first not in registry.services:  # the app deleted it: Unregister fails
        termination.result = NOT_FOUND
        return
    registry.deregister(termination.app_instance_id, first)
    termination.deleting = registry.clock.callLater(
        KONG_CLEANUP, _delete, registry, termination, rest
    )


def _delivered(registry: Registry, termination: Termination, ok: bool) -> None:
    """The notice's fate: undelivered, the worker stops; delivered, it waits."""
    if termination.delivered is not None or not _current(registry, termination):
        return  # a later termination of the app, or a restart, replaced this one
    if termination.abandoned_at is not None:
        return  # a restart lost the worker that waited for this answer
    termination.delivered = ok
    now = registry.clock.seconds()
    if not ok:
        termination.ended_at = now  # handleTerminationNotification returns early
        return
    if termination.confirmed_at is not None:
        _end(registry, termination)
        return
    grace = termination.deadline - termination.notified_at
    termination.deadline = now + grace  # the wait begins once the notice is answered
    termination.timer = registry.clock.callLater(grace, _end, registry, termination)


def _current(registry: Registry, termination: Termination) -> bool:
    return registry.terminations.get(termination.app_instance_id) is termination


def confirm(registry: Registry, app_id: str, raw: bytes) -> None:
    """
    confirm_termination: taken while the termination waits (mepserver: while its record of
    the delivered notice exists, until the worker's end, for ever once a restart lost the
    worker); the worker, once its notice was answered, then ends at once (it polls the
    record every 100 ms).
    """
    termination = mec011.confirmation(registry, app_id, raw)
    if termination.delivered and termination.abandoned_at is None:
        termination.stop_waiting()
        _end(registry, termination)


def _end(registry: Registry, termination: Termination) -> None:
    """The worker's end: the app's termination and availability subscriptions deleted."""
    app_id = termination.app_instance_id
    termination.ended_at = registry.clock.seconds()
    mec011.drop_subscriptions(registry, app_id)
