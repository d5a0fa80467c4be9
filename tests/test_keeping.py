"""
The keepers at work (core/keeper.py, core/beats.py): registration, per-service heartbeats
on their schedule and within their limit, repair, and deletion at stop -- the whole agent
as production builds it, against the in-memory emulator on a clock.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.config.model import SubscriptionSpec
from mep_agent.core.beats import PER_INTERVAL, RETRY_GAP
from mep_agent.core.keeping import Phase
from mep_agent.core.liveness import BeatSchedule, stagger
from mep_agent.mp1.client import Registration
from mep_agent.mp1.dialect import mepserver_grace, no_grace
from mep_agent.mp1.http import POOL_SIZE, pooled_agent
from mep_agent.util.tasks import UNEXPECTED_PAUSE
from mep_emulator.memory import InMemoryMep
from mep_emulator.registry import suspension_grace

from .agent_harness import BEAT, BEAT_EVERY, AgentTestCase, spec
from .helpers import SECRETS


class BeatScheduleTests(SynchronousTestCase):
    def test_sixty_fast_mep(self) -> None:
        """mepserver's 60 s (suspended at 63 s): a beat every 59.5 s with a 3 s timeout."""
        schedule = BeatSchedule(10, mepserver_grace(60))
        schedule.observe(0.004)
        self.assertEqual((schedule.period(60), schedule.timeout(60)), (59.5, 3.0))

    def test_about_one_beat_per_interval(self) -> None:
        """
        Beats per interval to a fast MEP: at most 1.1 with mepserver's grace at 3 s and 60 s;
        without a grace (MEC 011) 1.06 at 60 s, and 1.6 at 3 s, where the 1 s minimum timeout
        has to fit inside the interval itself.
        """
        expected = {(mepserver_grace, 3): 1.1, (mepserver_grace, 60): 1.1}
        expected |= {(no_grace, 3): 1.7, (no_grace, 60): 1.1}
        for (grace, interval), most in expected.items():
            schedule = BeatSchedule(10, grace(interval))
            schedule.observe(0.005)
            self.assertLessEqual(interval / schedule.period(interval), most)

    def test_slow_answers_beat_earlier_with_longer_timeouts(self) -> None:
        """Answers taking 40 % of a 3 s interval: a 2 s timeout, a beat every 1.85 s."""
        schedule = BeatSchedule(10, mepserver_grace(3))
        for _ in range(3):
            schedule.observe(1.2)
        self.assertEqual(schedule.timeout(3), 2.0)
        self.assertAlmostEqual(schedule.period(3), 1.85)

    def test_latency_forgotten_after_five_good_beats(self) -> None:
        """One slow answer sets the timeout until five quicker ones have followed it."""
        schedule = BeatSchedule(10, mepserver_grace(60))
        schedule.observe(5)
        for n in range(5):  # the slow one is still among the last five
            self.assertEqual(schedule.timeout(60), 10, f"{n} quick beats after the slow one")
            schedule.observe(0.01)
        self.assertEqual(schedule.timeout(60), 3)

    @given(
        st.integers(1, 3600),
        st.floats(0.1, 300),
        st.lists(st.floats(0, 600), max_size=8),
        st.booleans(),
    )
    def test_lands_before_suspension(
        self, interval: int, timeout: float, latencies: list[float], grace: bool
    ) -> None:
        """
        A beat sent one period after the last good one was sent, taking its whole timeout,
        lands before the MEP's deadline; the timeout never exceeds the request timeout.
        """
        rule = mepserver_grace if grace else no_grace
        schedule = BeatSchedule(timeout, rule(interval))
        for latency in latencies:
            schedule.observe(latency)
        period, beat_timeout = schedule.period(interval), schedule.timeout(interval)
        self.assertGreater(period, 0)
        self.assertLessEqual(period, interval)
        self.assertLessEqual(beat_timeout, timeout)
        self.assertLess(period + beat_timeout, interval + rule(interval))
        if grace:
            self.assertEqual(rule(interval), suspension_grace(interval))  # the emulator's rule


class BeatTimingTests(AgentTestCase):
    """The schedule in the keepers, against the in-memory MEP's own suspension clock."""

    def use_interval(self, interval: int) -> None:
        self.use_mep(InMemoryMep.create(clock=MemoryReactorClock(), liveness_interval=interval))

    def watch(self, seconds: float) -> set[str]:
        """Advance in 0.1 s steps; every state the MEP's records were seen in."""
        seen: set[str] = set()
        for _ in range(round(seconds * 10)):
            self.advance(0.1, step=0.1)
            seen |= {record.state for record in self.registry.services.values()}
        return seen

    def test_slow_liveness_answers_never_suspend(self) -> None:
        """Liveness answers taking 40 % of a 3 s interval: beats come early enough."""
        self.use_interval(3)
        self.build((spec("a"), spec("b")))
        self.start()
        self.fault(kind="heartbeat", delay=1.2, count=10_000)
        self.assertEqual(self.watch(30), {"ACTIVE"})
        for record in self.registry.services.values():
            self.assertGreaterEqual(record.heartbeats, 10)
        for keeper in self.holdings.services.values():
            self.assertEqual(keeper.beats.failed, 0)

    def test_one_beat_per_interval_when_fast(self) -> None:
        """A quick MEP at 3 s: about one beat per interval, never suspended."""
        self.use_interval(3)
        self.build((spec("a"),))
        self.start()
        self.assertEqual(self.watch(60), {"ACTIVE"})
        (record,) = self.registry.services.values()
        self.assertIn(record.heartbeats, (20, 21))  # 60 s / 2.85 s

    def test_beats_counted_from_when_requests_were_sent(self) -> None:
        """
        The MEP's liveness clock restarted no earlier than a request was sent, so the
        schedule counts from the send time of the registration, then of each good beat.
        """
        self.use_interval(3)
        self.build((spec("a"),))
        self.fault(kind="register", delay=1.0)
        self.fault(kind="heartbeat", delay=0.5, count=100)
        started = self.clock.seconds()
        self.start()
        self.advance(1.0, step=0.1)
        keeper = self.keeper("a")
        self.assertEqual((keeper.beats.reference, keeper.held_since), (started, started + 1.0))
        self.assertEqual(self.watch(10), {"ACTIVE"})
        self.assertEqual(keeper.beats.failed, 0)
        assert keeper.beats.reference is not None and keeper.beats.last_good is not None
        latency = keeper.beats.last_good - keeper.beats.reference  # 0.5 s, in 0.1 s steps
        self.assertTrue(0.5 - 1e-9 <= latency < 0.7, latency)

    def test_a_long_pause_lets_a_steady_beat_go_at_its_last_moment(self) -> None:
        """
        The gateway paused everything past a steady beat's deadline (Kong's next minute):
        the beat goes at its last safe moment anyway, and the service stays ACTIVE.
        """
        self.build((spec("a"),))
        self.start()
        self.advance(BEAT + 1)  # the first beat; from now on one every 59.5 s
        self.budget.pause(100)  # until well past the next beat's deadline
        self.assertEqual(self.watch(70), {"ACTIVE"})
        (record,) = self.registry.services.values()
        self.assertEqual(record.heartbeats, 2)


class ConnectionReuseTests(AgentTestCase):
    """What keeps fifty services on a few connections to the MEP (performance issue)."""

    def record_requests(self) -> list[tuple[float, str, str]]:
        """(start time, "start"/"end", path) of every request the agent makes."""
        events: list[tuple[float, str, str]] = []
        original = self.mep_wire.http.request

        def recording(method: str, url: str, *args: Any) -> Any:
            events.append((self.clock.seconds(), "start", url))

            def ended(result: object) -> object:
                events.append((self.clock.seconds(), "end", url))
                return result

            return original(method, url, *args).addBoth(ended)

        self.mep_wire.http.request = recording  # type: ignore[method-assign,assignment]
        return events

    def test_stagger(self) -> None:
        """The k-th of n services beats k/n of a period early, once."""
        self.assertEqual(stagger(60, 0, 50), 0)
        self.assertEqual(stagger(60, 25, 50), 30)
        self.assertEqual(stagger(60, 0, 1), 0)

    def test_pool_keeps_what_registrations_use(self) -> None:
        """The MEP connection pool keeps as many connections as creations in flight."""
        _, pool = pooled_agent(self.clock, None, 5)
        self.assertEqual(pool.maxPersistentPerHost, POOL_SIZE)
        self.assertEqual(POOL_SIZE, 4)

    def test_registrations_four_at_a_time(self) -> None:
        """Fifty services register with at most four registrations in flight."""
        names = [f"s{n}" for n in range(50)]
        self.build(tuple(spec(name) for name in names))
        events = self.record_requests()
        self.fault(kind="register", delay=0.2, count=50)
        self.start()
        self.advance(5, step=0.1)
        in_flight, most = 0, 0
        for _, what, url in events:
            if url.endswith("/services"):
                in_flight += 1 if what == "start" else -1
                most = max(most, in_flight)
        self.assertEqual(len(self.registry.services), 50)
        self.assertEqual(most, 4)

    def test_beats_spread_over_the_period(self) -> None:
        """Fifty services registered together beat about 1.2 s apart, not all at once."""
        self.build(tuple(spec(f"s{n}") for n in range(50)))
        events = self.record_requests()
        self.start()
        self.advance(3 * BEAT_EVERY, step=0.5)
        beats = sorted(
            t for t, what, url in events if what == "start" and url.endswith("liveness")
        )
        per_second: dict[int, int] = {}
        for t in beats[50:]:  # past the first (staggered) beat of each
            per_second[int(t)] = per_second.get(int(t), 0) + 1
        self.assertLessEqual(max(per_second.values()), 2)
        for keeper in self.holdings.services.values():
            self.assertEqual(keeper.beats.failed, 0)
        for record in self.registry.services.values():
            self.assertEqual(record.state, "ACTIVE")


class RegistrationTests(AgentTestCase):
    def test_every_service_registered_with_its_own_heartbeats(self) -> None:
        """All services register, and every one (not only the first) keeps beating."""
        self.build((spec("a"), spec("b"), spec("c")))
        self.start()
        self.assertEqual(
            sorted(s.body["serName"] for s in self.registry.services.values()), ["a", "b", "c"]
        )
        self.advance(300, step=5)
        for record in self.registry.services.values():
            self.assertEqual(record.state, "ACTIVE")
            self.assertEqual(record.heartbeats, 5)  # 59.5, 119, 178.5, 238, 297.5 s
        for keeper in self.holdings.services.values():
            self.assertTrue(keeper.healthy)

    def test_body_is_the_file_entry(self) -> None:
        """The registration body is the YAML entry, sent as JSON with a bearer token."""
        self.build((spec("a", serCategory={"id": "cat1"}),))
        self.start()
        record = self.instances("a")[0]
        self.assertEqual(record.body["serCategory"], {"id": "cat1"})
        self.assertEqual(self.sid("a"), record.ser_instance_id)

    def test_transient_failures_back_off(self) -> None:
        """
        5xx and dropped registrations are retried 1, 2, 4 s later; before the one after a
        lost answer the agent reads what the MEP holds (the POST may have made one).
        """
        self.fault(kind="register", status=502, count=2)
        self.fault(kind="register", drop=True)
        self.build((spec("a"),))
        self.start()
        syncs = len(self.requests("sync"))
        self.advance(6.5)
        self.assertEqual(self.keeper("a").phase, Phase.WANTED)
        self.advance(0.5)
        self.assertEqual(self.keeper("a").phase, Phase.HELD)
        self.assertEqual(self.requests("register"), [502, 502, 0, 201])
        self.assertEqual(len(self.requests("sync")), syncs + 1)

    def test_refused_registration_is_not_parked(self) -> None:
        """A 4xx answer is retried with the same back-off (never parked for minutes)."""
        self.fault(kind="register", status=400, body={"detail": "quota"})
        self.build((spec("a"),))
        self.start()
        self.assertIn("quota", self.keeper("a").last_error or "")
        self.advance(1)
        self.assertEqual(self.requests("register"), [400, 201])

    def test_no_heartbeat_for_interval_zero(self) -> None:
        """A service without livenessInterval is registered and never beats."""
        self.build((spec("quiet", interval=0),))
        self.start()
        self.advance(200, step=10)
        self.assertEqual(self.requests("heartbeat"), [])
        self.assertTrue(self.keeper("quiet").healthy)

    def test_patch_heartbeat_option(self) -> None:
        """With the PATCH option, heartbeats use PATCH (ETSI MEC 011 v2.2.1)."""
        self.emulator.accept_patch = True
        self.build((spec("a"),), heartbeat_method="PATCH")
        self.start()
        self.advance(BEAT + 1)
        self.assertEqual(self.requests("heartbeat"), [204])
        self.assertEqual(
            [r.method for r in self.emulator.requests if r.kind == "heartbeat"], ["PATCH"]
        )

    def test_confirm_ready_first(self) -> None:
        """READY is confirmed before the registrations; settled once all are registered."""
        self.fault(kind="register", status=503)
        self.build((spec("a"), spec("b")))
        settled = self.holdings.when_settled()
        self.start()
        kinds = [r.kind for r in self.emulator.requests if r.kind in ("confirm_ready", "register")]
        self.assertEqual(kinds[0], "confirm_ready")
        self.assertIn(
            self.emulator.apps[next(iter(self.emulator.apps))].app_instance_id, self.registry.ready
        )
        self.assertNoResult(settled)  # one registration still failing
        self.advance(3)  # the 503 paused everything 2 s; then one request, then one a second
        self.assertEqual(self.successResultOf(settled), True)
        self.assertEqual(self.requests("confirm_ready"), [204])

    def test_confirm_ready_can_be_turned_off(self) -> None:
        """With confirm_ready off nothing is sent."""
        self.build((spec("a"),), confirm_ready=False)
        self.start()
        self.assertEqual(self.requests("confirm_ready"), [])


class HeartbeatFailureTests(AgentTestCase):
    def test_failed_beats_at_most_twice_per_interval(self) -> None:
        """
        A failed beat is tried once more a second later; then nothing until the interval
        since the first attempt has passed, whatever the MEP answers; beating goes on after.
        """
        self.build((spec("a"),))
        self.start()
        self.fault(kind="heartbeat", status=500, count=3)
        self.advance(BEAT + RETRY_GAP + 1)
        self.assertEqual(self.requests("heartbeat"), [500, 500])
        self.advance(60 - RETRY_GAP - 2)
        self.assertEqual(self.requests("heartbeat"), [500, 500])
        self.advance(3)
        self.assertEqual(self.requests("heartbeat"), [500, 500, 500, 204])
        self.assertTrue(self.keeper("a").healthy)
        self.assertEqual(self.instances("a")[0].state, "ACTIVE")  # revived by the beat

    def test_a_storm_of_refusals_is_no_storm_of_beats(self) -> None:
        """Ten minutes of 500s: at most two beats in any interval (60 s)."""
        self.build((spec("a"),))
        self.start()
        self.fault(kind="heartbeat", status=500, count=1000)
        self.advance(600, step=1)
        beats = [r for r in self.emulator.requests if r.kind == "heartbeat"]
        times = [float(n) for n in range(len(beats))]
        self.assertLessEqual(len(beats), 2 * 600 / 60 + PER_INTERVAL)
        self.assertGreater(len(times), 10)

    def test_slow_beat_times_out_and_never_overlaps(self) -> None:
        """A hung beat is abandoned after its timeout; beats are never concurrent."""
        in_flight: list[int] = []
        self.build((spec("a"),))
        self.start()
        original = self.mep_wire.http.request
        calls = []

        def counting(method: str, url: str, *args: Any) -> Any:
            if url.endswith("/liveness"):
                in_flight.append(1)
                calls.append(len(in_flight))
                d = original(method, url, *args)
                d.addBoth(lambda r: (in_flight.pop(), r)[1])
                return d
            return original(method, url, *args)

        self.mep_wire.http.request = counting  # type: ignore[method-assign,assignment]
        self.fault(kind="heartbeat", delay=30, count=3)
        self.advance(BEAT + 10)  # the first beat: sent at 52.5 s, abandoned 10 s later
        self.assertEqual(self.keeper("a").last_error, "heartbeat: no answer: timed out")
        self.advance(150, step=0.5)
        self.assertEqual(max(calls), 1)
        self.assertGreaterEqual(self.keeper("a").beats.failed, 3)
        self.assertEqual(self.instances("a")[0].state, "ACTIVE")


class RepairTests(AgentTestCase):
    def test_lost_registration_registered_again(self) -> None:
        """
        After the MEP forgets everything, a 404 beat has the instance read, then the list;
        once both say it is gone it is registered again at once, once.
        """
        self.build((spec("a"), spec("b")))
        self.start()
        old = {s.ser_instance_id for s in self.registry.services.values()}
        self.emulator.registry.restart()
        self.advance(BEAT)
        names = sorted(s.body["serName"] for s in self.registry.services.values())
        self.assertEqual(names, ["a", "b"])
        self.assertFalse(old & set(self.registry.services))
        self.assertIn(404, self.requests("service"))  # the instance read back first
        self.advance(100, step=5)
        self.assertEqual(len(self.registry.services), 2)
        self.assertEqual(self.keeper("a").counts.created, 2)
        for record in self.registry.services.values():
            self.assertGreater(record.heartbeats, 0)

    def test_a_404_the_instance_read_denies_changes_nothing(self) -> None:
        """A 404 on a beat while the MEP still holds the instance: no new registration."""
        self.build((spec("a"),))
        self.start()
        self.fault(kind="heartbeat", status=404)
        self.advance(BEAT + 1)
        self.assertEqual(self.requests("register"), [201])
        self.assertEqual(self.requests("service"), [200])
        self.assertEqual(len(self.instances("a")), 1)
        self.assertEqual(self.keeper("a").phase, Phase.HELD)

    def test_a_404_a_list_denies_changes_nothing(self) -> None:
        """A 404 on the beat and on the read, but the list shows it: kept, not made twice."""
        self.build((spec("a"),))
        self.start()
        self.fault(kind="heartbeat", status=404)
        self.fault(kind="service", status=404)
        self.advance(BEAT + 1)
        self.assertEqual(self.requests("register"), [201])
        self.assertEqual(len(self.instances("a")), 1)
        self.assertEqual(self.keeper("a").phase, Phase.HELD)

    def test_ready_confirmed_again_after_loss(self) -> None:
        """READY is confirmed again after a MEP data loss is repaired."""
        self.build((spec("a"),))
        self.start()
        self.emulator.registry.restart()
        self.advance(BEAT + 1)
        self.assertEqual(self.requests("confirm_ready"), [204, 204])

    def test_one_confirm_per_data_loss(self) -> None:
        """A MEP restart loses every service, but READY is confirmed again only once."""
        self.build(tuple(spec(f"s{i}") for i in range(5)))
        self.start()
        self.emulator.registry.restart()
        self.advance(BEAT + 1)
        self.assertEqual(len(self.registry.services), 5)
        self.assertEqual(self.requests("confirm_ready"), [204, 204])
        self.emulator.registry.restart()  # a second loss after the re-confirm asks again
        self.advance(BEAT_EVERY + 1)
        self.assertEqual(self.requests("confirm_ready"), [204, 204, 204])

    def test_inactive_restored(self) -> None:
        """A 409 (INACTIVE) on a beat is repaired by PUTting the service; the id is kept."""
        self.build((spec("a"),), sync_interval=0)
        self.start()
        sid = self.sid("a")
        self.registry.set_state(sid, "INACTIVE")
        self.advance(BEAT)
        self.assertEqual(self.requests("heartbeat"), [409])
        self.assertEqual(self.requests("update"), [200])
        self.assertEqual(self.registry.services[sid].state, "ACTIVE")
        self.advance(BEAT)
        self.assertEqual(self.requests("heartbeat"), [409, 204])

    def test_refused_repair_falls_back_to_a_new_registration(self) -> None:
        """INACTIVE, and the platform refuses the update (501): deleted and made anew."""
        self.build((spec("a"),), sync_interval=0)
        self.start()
        sid = self.sid("a")
        self.registry.set_state(sid, "INACTIVE")
        self.fault(kind="update", status=501, count=10)
        self.advance(BEAT + 1)
        self.assertEqual(self.requests("update"), [501])
        self.assertEqual(self.requests("deregister"), [204])
        self.assertEqual(self.requests("register"), [201, 201])
        (record,) = self.instances("a")
        self.assertNotEqual(record.ser_instance_id, sid)
        self.assertEqual(record.state, "ACTIVE")
        self.advance(300, step=5)
        self.assertEqual(self.requests("update"), [501])  # never repeated in a loop

    def test_restore_keeps_liveness_link(self) -> None:
        """An update answer without a liveness link keeps the one already known."""
        self.build((spec("a"),))
        self.start()
        sid = self.sid("a")
        link = self.registration("a").liveness_path

        async def bare_update(ser_instance_id: str, body: Any) -> Registration:
            return Registration(ser_instance_id, None, 0)

        self.patch(self.client, "update", bare_update)
        self.registry.set_state(sid, "INACTIVE")
        self.advance(BEAT)
        self.assertEqual(self.registration("a").liveness_path, link)
        self.assertEqual(self.registration("a").interval, 60)


class SubscriptionLifecycleTests(AgentTestCase):
    def subscriptions(self, callback: str = "http://app.local/cb") -> tuple[SubscriptionSpec, ...]:
        return (
            SubscriptionSpec(
                0,
                {
                    "subscriptionType": "SerAvailabilityNotificationSubscription",
                    "callbackReference": callback,
                    "filteringCriteria": {"serNames": ["a"]},
                },
            ),
        )

    def test_created_with_notify_url(self) -> None:
        """Subscriptions are sent, with the agent's own notification URL as callback."""
        self.build(subscriptions=self.subscriptions(), notify_url="http://10.0.0.5:9090/n")
        self.start()
        (record,) = self.registry.subscriptions.values()
        self.assertTrue(record.body["callbackReference"].startswith("http://10.0.0.5:9090/n/"))

    def test_placeholder_callback_skipped(self) -> None:
        """A non-URI callback without a notify URL is not sent."""
        self.build(subscriptions=self.subscriptions("string"))
        self.start()
        self.assertEqual(self.registry.subscriptions, {})

    def test_recreated_after_loss(self) -> None:
        """Subscriptions the MEP lost are re-created when a heartbeat reveals the loss."""
        self.build((spec("a"),), subscriptions=self.subscriptions())
        self.start()
        self.registry.restart()
        self.advance(BEAT + 1)
        self.assertEqual(len(self.registry.subscriptions), 1)
        self.assertEqual(self.holdings.subscriptions[0].counts.created, 2)

    def test_recreated_by_periodic_check(self) -> None:
        """Without services to notice a loss, a periodic sync re-creates subscriptions."""
        self.build(subscriptions=self.subscriptions())
        self.start()
        self.registry.subscriptions.clear()
        self.advance(300, step=10)
        self.assertEqual(len(self.registry.subscriptions), 1)


class ShutdownTests(AgentTestCase):
    def test_everything_deleted(self) -> None:
        """Stopping deletes every service and subscription; nothing stays registered."""
        subscription = SubscriptionSpec(
            0,
            {
                "callbackReference": "http://x/cb",
                "subscriptionType": "SerAvailabilityNotificationSubscription",
            },
        )
        self.build((spec("a"), spec("b")), subscriptions=(subscription,))
        self.start()
        self.stop()
        self.assertEqual(self.registry.services, {})
        self.assertEqual(self.registry.subscriptions, {})
        self.assertEqual(self.requests("deregister"), [204, 204])
        self.assertEqual(self.keeper("a").held, None)

    def test_bounded_in_time(self) -> None:
        """A MEP that does not answer cannot hold the stop beyond the timeout."""
        self.build((spec("a"), spec("b")), shutdown_timeout=3)
        self.start()
        self.fault(kind="deregister", delay=60, count=2)
        started = self.clock.seconds()
        self.stop()
        self.assertLessEqual(self.clock.seconds() - started, 3.2)

    def test_parallel(self) -> None:
        """Deregistrations run in parallel: two 2-second deletes end after 2 s."""
        self.build((spec("a"), spec("b")))
        self.start()
        self.fault(kind="deregister", delay=2, count=2)
        started = self.clock.seconds()
        self.stop()
        self.assertLessEqual(self.clock.seconds() - started, 2.2)
        self.assertEqual(self.registry.services, {})

    def test_stop_without_valid_token(self) -> None:
        """With the token expired, a new one is fetched to deregister."""
        self.emulator.token_lifetime = 100
        self.build((spec("a"),))
        self.start()
        self.fault(kind="token", status=500, count=100)
        self.advance(150, step=5)
        self.emulator.faults.clear()
        self.stop()
        self.assertEqual(self.registry.services, {})

    def test_nothing_held_stops_at_once(self) -> None:
        """An unreachable MEP and nothing registered: the stop does not wait at all."""
        self.fault(kind="any", drop=True, count=10_000)
        self.build((spec("a"),))
        self.start()
        self.advance(20)
        started = self.clock.seconds()
        self.stop()
        self.assertLess(self.clock.seconds() - started, 0.15)


class UnexpectedErrorTests(AgentTestCase):
    def break_once(self, method: str) -> None:
        """Make one call of MepClient.<method> raise a bug instead of a MepError."""
        target: Any = self.auth if method.startswith("fetch") else self.client
        original = getattr(target, method)
        calls = []

        async def broken(*args: Any, **kw: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("bug")
            return await original(*args, **kw)

        setattr(target, method, broken)

    def test_heartbeat_bug_does_not_end_beats(self) -> None:
        """A bug in one beat is logged; beating resumes without registering again."""
        self.build((spec("a"),))
        self.start()
        self.break_once("heartbeat")
        self.advance(BEAT + UNEXPECTED_PAUSE + 45)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.requests("register"), [201])
        self.assertEqual(self.requests("heartbeat"), [204])
        self.assertTrue(self.keeper("a").healthy)

    def test_registration_bug_retried(self) -> None:
        """A bug while registering is logged and the registration retried."""
        self.build((spec("a"),))
        self.break_once("register")
        self.start()
        self.advance(UNEXPECTED_PAUSE)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.keeper("a").phase, Phase.HELD)

    def test_token_bug_retried(self) -> None:
        """A bug while fetching the token is logged and the fetch retried."""
        self.build()
        self.break_once("fetch_token")
        self.start()
        self.advance(UNEXPECTED_PAUSE)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIsNotNone(self.tokens.current())


class LogEventTests(AgentTestCase):
    def test_state_changes_logged_with_named_fields_and_no_secret(self) -> None:
        """Each state change is one event with an 'event' name and fields, no credential."""
        events = self.capture_events()
        self.emulator.token_lifetime = 100
        self.build((spec("a"),))
        self.start()
        self.fault(kind="heartbeat", status=500)
        self.advance(BEAT + 2)  # one failed beat, then a good one
        self.advance(80 - (BEAT + 2))  # token refresh at 80 s
        self.registry.restart()
        self.advance(BEAT_EVERY)  # lost, re-registered
        token = self.token_value()
        self.stop()
        names = [e["event"] for e in events if "event" in e]
        for expected in (
            "token.obtained",
            "service.registered",
            "app.ready_confirmed",
            "heartbeat.failing",
            "heartbeat.recovered",
            "token.refreshed",
            "service.lost",
            "service.reregistered",
            "service.deregistered",
        ):
            self.assertIn(expected, names)
        registered = next(e for e in events if e.get("event") == "service.registered")
        self.assertEqual((registered["kind"], registered["key"]), ("service", "a"))
        for event in events:
            text = formatEvent(event) + repr(event)
            for secret in (*SECRETS, token):
                self.assertNotIn(secret, text)
