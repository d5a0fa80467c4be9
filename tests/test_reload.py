"""Hot reload of app_instance_info.yaml (issue #11): Clock tests of every difference."""

from __future__ import annotations

from typing import Any

import yaml
from twisted.internet.defer import succeed
from twisted.logger import formatEvent

from mep_agent.model import parse_app_instance_info
from mep_agent.reload import ConfigReloader, digest

from .agent_harness import BEAT, ApiTestCase
from .emulator_client import service

PATH = "/conf/app_instance_info.yaml"


def document(*names: str, interval: int = 60, subscriptions: int = 0, **changes: Any) -> bytes:
    services = [dict(service(name, interval), **changes.get(name, {})) for name in names]
    subs = [
        {"callbackReference": f"http://app.local/cb{i}", "filteringCriteria": {"serNames": ["x"]}}
        for i in range(subscriptions)
    ]
    return yaml.safe_dump(
        {"serviceInfoPosts": services, "serAvailabilityNotificationSubscriptions": subs}
    ).encode()


class ReloadTests(ApiTestCase):
    def start_with(self, data: bytes) -> None:
        self.files = {PATH: data}
        info = parse_app_instance_info(PATH, data.decode())
        self.build(info.services, subscriptions=info.subscriptions)

        def read(path: str) -> Any:
            if path not in self.files:
                raise OSError(2, "No such file or directory")
            return succeed(self.files[path])

        self.reloader = ConfigReloader(
            PATH,
            read,
            lambda text: parse_app_instance_info(PATH, text),
            self.registrar,
            self.subscriber,
            self.clock,
            10,
            digest(data),
        )
        self.start()
        self.reloader.startService()
        self.addCleanup(self.reloader.stopService)
        self.wire_ops(self.reloader)

    def rewrite(self, data: bytes) -> None:
        self.files[PATH] = data
        self.advance(10)

    def test_unchanged_file_touches_nothing(self) -> None:
        """The same content again: no request at all."""
        self.start_with(document("a", "b"))
        before = len(self.emulator.requests)
        self.rewrite(document("a", "b"))
        self.assertEqual([r.kind for r in list(self.emulator.requests)[before:]], [])

    def test_added_removed_changed(self) -> None:
        """New: registered; gone: deregistered; changed: PUT in place; the rest untouched."""
        self.start_with(document("a", "b", "c"))
        ids = {name: self.sid(name) for name in ("a", "b", "c")}
        self.rewrite(document("a", "b", "d", b={"version": "2.0"}))
        self.assertEqual(self.requests("register"), [201, 201, 201, 201])  # only d anew
        self.assertEqual(self.requests("deregister"), [204])  # c
        self.assertEqual(self.requests("update"), [200])  # b, same id
        self.assertEqual(self.sid("b"), ids["b"])
        self.assertEqual(self.registry.services[ids["b"]].body["version"], "2.0")
        self.assertEqual(self.sid("a"), ids["a"])
        self.assertEqual(sorted(self.registrar.states), ["a", "b", "d"])
        self.assertEqual(
            sorted(s.body["serName"] for s in self.registry.services.values()), ["a", "b", "d"]
        )
        self.advance(BEAT + 1)  # every service still beats, the changed one on its new link
        self.assertTrue(all(s.healthy for s in self.registrar.states.values()))

    def test_invalid_file_refused_old_state_kept(self) -> None:
        """An invalid file: one line naming the YAML path; nothing changes; then a fix works."""
        from twisted.logger import globalLogPublisher

        events: list[Any] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        self.start_with(document("a"))
        before = len(self.emulator.requests)
        self.rewrite(document("a", "bad name"))
        self.rewrite(document("a", "bad name"))  # polled again: not logged again
        refused = [e for e in events if e.get("event") == "config.reload_refused"]
        self.assertEqual(len(refused), 1)
        self.assertIn(f"{PATH}: serviceInfoPosts[1].serName", formatEvent(refused[0]))
        self.assertEqual([r.kind for r in list(self.emulator.requests)[before:]], [])
        self.assertEqual(list(self.registrar.states), ["a"])
        _, body, _ = self.get_json(self.ops, "/readyz?verbose")
        self.assertFalse(body["config"]["ok"])
        self.assertIn("serName", body["config"]["error"])
        _, raw = self.request(self.ops, "GET", "/metrics")
        self.assertIn(b"mep_agent_config_reload_failures_total 1.0", raw)
        self.assertIn(b"mep_agent_config_valid 0.0", raw)
        self.rewrite(document("a", "b"))
        self.assertEqual(sorted(self.registrar.states), ["a", "b"])
        self.assertIsNone(self.reloader.last_error)

    def test_subscriptions_follow_the_file(self) -> None:
        """Subscriptions too: added ones created, removed ones deleted, kept ones kept."""
        self.start_with(document("a", subscriptions=2))
        kept = self.subscriber.states[0].subscription
        self.rewrite(document("a", subscriptions=1))
        self.assertEqual(self.requests("unsubscribe"), [204])
        self.assertEqual(self.subscriber.states[0].subscription, kept)
        self.rewrite(document("a", subscriptions=3))
        self.assertEqual(self.requests("subscribe"), [201] * 4)
        self.assertEqual(len(self.registry.subscriptions), 3)

    def test_sighup_checks_at_once(self) -> None:
        """check_now (what SIGHUP calls) applies a change before the next poll."""
        self.start_with(document("a"))
        self.files[PATH] = document("a", "b")
        self.reloader.check_now()
        self.settle()
        self.assertEqual(sorted(self.registrar.states), ["a", "b"])

    def test_unreadable_file_keeps_state(self) -> None:
        """A file that disappears (a ConfigMap being swapped) is refused, not applied."""
        self.start_with(document("a"))
        del self.files[PATH]
        self.advance(10)
        self.assertEqual(list(self.registrar.states), ["a"])
        self.assertIn("cannot read", self.reloader.last_error or "")
