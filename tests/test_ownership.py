"""
Ownership that outlives the process (core/owned.py, statedir.py): a container killed and
restarted in the same pod, with the same state directory, cleans up after its earlier lives
before it makes anything -- on a platform with liveness and on one without -- and never
touches what another pod made. The state file itself: atomic, bounded, tolerant of a torn
write, without a secret.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from mep_agent import statedir
from mep_agent.config.model import SubscriptionSpec
from mep_agent.core.owned import (
    FILE_NAME,
    MAX_BYTES,
    Made,
    Owned,
    Snapshot,
    app_digest,
    decode,
    encode,
)
from mep_agent.util.secret import Secret
from mep_emulator.memory import DEV_APP

from .agent_harness import BEAT, INFO, NOTIFY_SECRET, AgentTestCase, MemoryState, spec
from .helpers import SECRETS
from .test_etsi import EtsiTestCase, etsi_spec

APP = DEV_APP.app_instance_id
NOTIFY = "http://10.1.2.3:9090/mep-agent/v1/notifications"
SUBSCRIPTION = SubscriptionSpec(
    0,
    {
        "subscriptionType": "SerAvailabilityNotificationSubscription",
        "callbackReference": "http://app.local/cb",
        "filteringCriteria": {"serNames": ["a"]},
    },
)


class RestartMixin:
    """Lives of one container: each starts with the state the last one left."""

    pod_state: MemoryState

    def life(self: Any, **options: Any) -> None:
        """Start the next life of the container (a new notification secret each time)."""
        lives = getattr(self, "lives", 0) + 1
        self.lives = lives
        getattr(self, "files", {}).pop(INFO, None)  # this life's file: what it is given
        self.build(
            options.pop("services", (spec("a"), spec("b"))),
            state=self.pod_state,
            earlier=self.pod_state.snapshot(),
            notify_secret=Secret(f"secret-of-life-{lives}"),
            **options,
        )
        self.start()


class EdgeGalleryRestartTests(RestartMixin, AgentTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.pod_state = MemoryState()

    def test_five_kills_leave_one_instance_each(self) -> None:
        """Killed five times: the sixth life holds one instance per service, adopted."""
        self.life(subscriptions=(SUBSCRIPTION,), notify_url=NOTIFY)
        first = {self.sid("a"), self.sid("b")}
        for _ in range(5):
            self.advance(10)
            self.crash()
            self.life(subscriptions=(SUBSCRIPTION,), notify_url=NOTIFY)
        self.assertEqual(
            sorted(s.body["serName"] for s in self.registry.services.values()), ["a", "b"]
        )
        self.assertEqual({self.sid("a"), self.sid("b")}, first)  # adopted, never made again
        self.assertEqual(self.requests("register"), [201, 201])
        self.assertEqual(len(self.registry.subscriptions), 1)  # the earlier lives' deleted
        self.advance(2 * BEAT)
        self.assertEqual({r.state for r in self.registry.services.values()}, {"ACTIVE"})
        self.stop()
        self.assertEqual((self.registry.services, self.registry.subscriptions), ({}, {}))

    def test_a_changed_file_replaces_what_earlier_lives_made(self) -> None:
        """The earlier life registered another body: deleted first, then the new one made."""
        self.life()
        old = self.sid("a")
        self.crash()
        self.life(services=(spec("a", version="2.0"),))
        self.assertNotIn(old, self.registry.services)
        (record,) = self.instances("a")
        self.assertEqual(record.body["version"], "2.0")
        self.assertEqual(self.instances("b"), [])  # no longer wanted: deleted
        kinds = [r.kind for r in self.emulator.requests]
        self.assertLess(kinds.index("deregister"), len(kinds) - kinds[::-1].index("register") - 1)

    def test_another_pods_instances_are_never_touched(self) -> None:
        """A sibling pod's ACTIVE instance of the same name stays, whatever this pod did."""
        sibling = self.registry.register(APP, dict(self.spec_body("a")))
        self.life()
        for _ in range(3):
            self.registry.services[sibling.ser_instance_id].last_beat = self.clock.seconds()
            self.advance(30)
            self.crash()
            self.life()
        self.registry.services[sibling.ser_instance_id].last_beat = self.clock.seconds()
        self.advance(60)
        self.assertIn(sibling.ser_instance_id, self.registry.services)
        self.assertEqual(len(self.instances("a")), 2)

    def test_a_creation_in_flight_when_killed_is_found(self) -> None:
        """
        Killed while its POST was under way: the next life finds the one instance the POST
        made (it was not there before) and adopts it instead of making another.
        """
        self.fault(kind="register", delay=3, count=1)
        self.life(services=(spec("a"),))
        self.advance(1)
        self.crash()  # the POST reaches the MEP and is carried out; its answer is lost
        self.advance(3)
        self.assertEqual(len(self.instances("a")), 1)
        self.life(services=(spec("a"),))
        self.assertEqual(len(self.instances("a")), 1)
        self.assertEqual(self.requests("register"), [201])
        self.assertEqual(self.reconciler.repaired["adopted"], 1)

    def test_a_stop_writes_what_it_deleted(self) -> None:
        """The state file is written (slowly, as on a disk) before the stop ends: no records."""
        clock = self.clock
        state = self.pod_state

        def slow_save(data: bytes) -> Deferred[None]:
            d: Deferred[None] = Deferred()

            def written() -> None:
                state.data = data
                d.callback(None)

            clock.callLater(0.2, written)
            return d

        self.pod_state.save = slow_save  # type: ignore[method-assign]
        self.life()
        self.advance(3)
        self.assertEqual(len(self.pod_state.snapshot().made), 2)  # type: ignore[union-attr]
        self.stop()
        snapshot = self.pod_state.snapshot()
        assert snapshot is not None
        self.assertEqual(snapshot.made, ())

    def test_an_earlier_lifes_subscription_in_flight_is_not_pending_for_ever(self) -> None:
        """Killed while subscribing: once the next life read the lists, nothing is pending."""
        self.fault(kind="subscribe", delay=3, count=2)
        self.life(subscriptions=(SUBSCRIPTION,), notify_url=NOTIFY, termination=True)
        self.advance(1)
        self.crash()
        self.advance(3)
        self.assertGreater(self.pod_state.snapshot().intents, ())  # type: ignore[union-attr]
        self.life(subscriptions=(SUBSCRIPTION,), notify_url=NOTIFY, termination=True)
        self.advance(5)
        self.assertEqual(self.owned.view()["pending"], 0)
        self.assertEqual(self.pod_state.snapshot().intents, ())  # type: ignore[union-attr]

    def test_a_failed_first_sync_holds_back_what_the_records_name(self) -> None:
        """
        The restarted container's first list refused (the gateway's 429, as on EdgeGallery
        during a rate-limit block): nothing the records name is made before a list succeeds,
        and then it is adopted, never made twice.
        """
        self.life()
        first = {self.sid("a"), self.sid("b")}
        self.crash()
        self.fault(kind="sync", status=429, count=1)
        self.life()
        self.advance(90, step=1)  # the 429 paused everything until the next minute and 10 s
        self.assertEqual(self.requests("register"), [201, 201])  # the first life's only
        self.assertEqual({self.sid("a"), self.sid("b")}, first)

    def test_an_adopted_service_is_restored_with_its_own_body(self) -> None:
        """
        Adopted (so known by a read of it: mepserver's presentation), then set INACTIVE: the
        repair PUTs the agent's body with the state, not the MEP's presentation, which
        mepserver refuses (grantTypes [""]) and whose gateway URI would become the endpoint.
        """
        self.life()
        sid = self.sid("a")
        self.crash()
        self.life()
        self.assertEqual(self.sid("a"), sid)  # adopted
        self.registry.set_state(sid, "INACTIVE")
        self.advance(BEAT + 5)
        self.assertEqual(self.requests("update")[-1:], [200])
        body = self.registry.services[sid].body
        self.assertNotIn("transportId", body)
        self.assertEqual(body["transportInfo"]["endpoint"], {"uris": ["http://a.local:80/"]})
        self.assertEqual(self.registry.services[sid].state, "ACTIVE")

    def test_a_terminated_app_is_remembered(self) -> None:
        """After a termination, a restarted container registers, subscribes, confirms nothing."""
        self.life(notify_url=NOTIFY, termination=True)
        d = self.mep.http.post(f"https://127.0.0.1:8443/_emulator/terminate/{APP}", data=b"{}")
        self.mep.flush()
        self.successResultOf(d)
        notice = [
            n["body"]
            for n in self.mep.notifier.delivered
            if n["body"].get("notificationType") == "AppTerminationNotification"
        ][0]
        self.request(self.ops, "POST", "/mep-agent/v1/notifications/secret-of-life-1", json=notice)
        self.settle()
        self.assertTrue(self.termination_confirmed())
        self.crash()
        before = len(self.emulator.requests)
        self.life(notify_url=NOTIFY, termination=True)
        self.advance(300, step=5)
        kinds = {r.kind for r in list(self.emulator.requests)[before:]}
        self.assertEqual(kinds - {"token"}, set())  # no READY, no POST, no reads of the MEP
        code, body, _ = self.get_json(self.ops, "/readyz")
        self.assertEqual((code, body["reason"]), (503, "terminating"))
        _, view, _ = self.get_json(self.api, "/mep-agent/v1/termination")
        self.assertEqual(
            view,
            {
                "terminating": True,
                "operationAction": "TERMINATING",
                "earlierLife": True,
                "announced": True,
            },
        )
        _, raw = self.request(self.ops, "GET", "/metrics")
        self.assertIn(
            b'mep_agent_terminating{operation_action="TERMINATING",phase="earlier-life"} 1.0', raw
        )

    def termination_confirmed(self) -> bool:
        (record,) = self.registry.terminations.values()
        return record.confirmed_at is not None

    def spec_body(self, name: str) -> dict[str, Any]:
        return spec(name).body


class NoLivenessRestartTests(RestartMixin, EtsiTestCase):
    """AdvantEDGE 1.9.2 has no liveness: nothing ever marks a dead run's instances."""

    liveness = 0

    def setUp(self) -> None:
        super().setUp()
        self.pod_state = MemoryState()

    def test_five_kills_leave_one_active_instance_each(self) -> None:
        """Without the state directory six ACTIVE instances each; with it, one."""
        names = (etsi_spec("a"), etsi_spec("b"))
        self.life(services=names)
        for _ in range(5):
            self.advance(10)
            self.crash()
            self.life(services=names)
        self.assertEqual(len(self.instances("a")), 1)
        self.assertEqual(len(self.instances("b")), 1)
        self.stop()
        self.assertEqual(self.registry.services, {})

    def test_a_stop_before_the_first_sync_deletes_what_earlier_lives_made(self) -> None:
        """Stopped while the MEP would not list yet: the records still say what to delete."""
        names = (etsi_spec("a"),)
        self.life(services=names)
        self.crash()
        self.fault(kind="sync", status=503, count=50)
        self.life(services=names)
        self.assertEqual(len(self.instances("a")), 1)  # neither adopted nor made again
        self.stop()
        self.assertEqual(self.registry.services, {})

    def test_killed_while_adopting_a_lost_creation(self) -> None:
        """
        Killed between finding an earlier life's lost creation and adopting it (its read
        under way): the next life still knows it is this pod's. Never two, nothing left.
        """
        names = (etsi_spec("a"),)
        self.fault(kind="register", delay=3, count=1)
        self.life(services=names)
        self.advance(1)
        self.crash()  # the POST is carried out; its answer is lost
        self.advance(3)
        self.fault(kind="service", delay=5, count=1)  # the adoption's read of it, slow
        self.life(services=names)
        self.crash()  # killed while that read is under way
        self.life(services=names)
        self.advance(10)
        self.assertEqual(len(self.instances("a")), 1)
        self.assertEqual(self.requests("register"), [201])
        self.stop()
        self.assertEqual(self.registry.services, {})

    def test_without_a_state_directory_they_pile_up(self) -> None:
        """The control: no records, so ACTIVE instances of dead runs cannot be told apart."""
        names = (etsi_spec("a"),)
        self.build(names)
        self.start()
        for _ in range(2):
            self.advance(10)
            self.crash()
            self.build(names)
            self.start()
        self.assertEqual(len(self.instances("a")), 3)


class StateFileTests(SynchronousTestCase):
    def owned(self, earlier: Snapshot | None = None) -> tuple[Owned, MemoryState]:
        state = MemoryState()
        return Owned(APP, earlier, state, lambda: 100.0, "/state"), state

    def test_round_trip_without_a_secret(self) -> None:
        """The file holds what was made, and neither a credential nor the app's id."""
        owned, state = self.owned()
        intent = owned.intend("service", "a", "d1", ("x",))
        url = f"https://mep/mec_service_mgmt/v1/applications/{APP}/subscriptions/s1"
        owned.made(intent, "0123", "service", "a", "d1")
        owned.made(None, url, "subscription", "0", "d2")
        owned.confirmed_ready()
        assert state.data is not None
        text = state.data.decode()
        for secret in (*SECRETS, NOTIFY_SECRET.reveal()):
            self.assertNotIn(secret, text)
        again = decode(state.data, APP)
        self.assertEqual([m.ref for m in again.made], ["0123", url])
        self.assertEqual((again.ready, again.intents), (True, ()))

    def test_each_life_counts(self) -> None:
        """A restarted container is the next life; what the last made is 'earlier'."""
        first, state = self.owned()
        first.made(None, "0123", "service", "a", "d1")
        assert state.data is not None
        second = Owned(APP, decode(state.data, APP), state, lambda: 200.0)
        self.assertEqual((second.life, [m.ref for m in second.earlier_made()]), (2, ["0123"]))

    def test_torn_foreign_or_huge_files_are_refused(self) -> None:
        """Half a file, another app's, or one past the bound: ValueError, nothing read."""
        data = encode(Snapshot(app_digest(APP), 1, (Made("service", "a", "r", "d", 1),)), APP)
        for bad, why in (
            (data[: len(data) // 2], "torn"),
            (encode(Snapshot(app_digest("other"), 1), "other"), "another app"),
            (b" " * (MAX_BYTES + 1), "larger"),
            (
                json.dumps({"format": 1, "app": app_digest(APP), "made": [[1]]}).encode(),
                "malformed",
            ),
        ):
            with self.subTest(why=why):
                self.assertRaises(ValueError, decode, bad, APP)

    def test_a_state_that_cannot_be_written_is_said_once(self) -> None:
        """A failed write: the records stay in memory, status says why, nothing more is tried."""
        owned, state = self.owned()
        state.fail = True
        owned.made(None, "0123", "service", "a", "d1")
        self.assertFalse(owned.persistent)
        self.assertIn("Read-only file system", owned.view()["problem"] or "")
        state.fail = False
        owned.made(None, "0124", "service", "b", "d1")
        self.assertEqual(state.writes, 0)
        self.assertEqual(owned.made_by_this_pod("0124").key, "b")  # type: ignore[union-attr]


class StateDirectoryTests(SynchronousTestCase):
    def test_written_atomically_and_read_back(self) -> None:
        """The file is replaced whole; start-up reads it and finds the directory writable."""
        directory = self.mktemp()
        os.makedirs(directory)
        data = encode(Snapshot(app_digest(APP), 3), APP)
        statedir.write_atomically(directory, data)
        self.assertEqual(os.listdir(directory), [FILE_NAME])
        found = statedir.look(directory, APP)
        self.assertEqual((found.writable, found.problem), (True, None))
        assert found.snapshot is not None
        self.assertEqual(found.snapshot.life, 3)

    def test_a_torn_file_is_ignored_with_a_reason(self) -> None:
        """A file cut short: ignored, and the reason says so; the directory is still used."""
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, FILE_NAME), "wb") as f:
            f.write(b'{"format": 1, "ap')
        found = statedir.look(directory, APP)
        self.assertIsNone(found.snapshot)
        self.assertTrue(found.writable)
        self.assertIn("ignored", found.problem or "")

    def test_a_directory_that_is_not_one_is_not_writable(self) -> None:
        """A path that is a file: not writable, and why."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("x")
        found = statedir.look(path, APP)
        self.assertFalse(found.writable)
        self.assertIn("cannot write", found.problem or "")
