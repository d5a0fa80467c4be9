"""Hot reload of app_instance_info.yaml: Clock tests of every difference."""

from __future__ import annotations

from typing import Any

import yaml
from twisted.logger import formatEvent, globalLogPublisher

from mep_agent.config.errors import ConfigError
from mep_agent.config.model import NO_SERVICES_HINT, parse_app_instance_info
from mep_agent.core.reload import STABLE_FOR

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


class ReloadTestCase(ApiTestCase):
    """An agent started with a file, and a reloader polling it every 10 s."""

    def start_with(self, data: bytes) -> None:
        self.files = {PATH: data}
        self.build()  # the file read at start is C{data}; the agent's reloader follows it
        self.start()

    def rewrite(self, data: bytes) -> None:
        """Write C{data}; let the next poll see it and, a second later, apply it."""
        self.files[PATH] = data
        self.advance(10 + STABLE_FOR)


class ReloadTests(ReloadTestCase):
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
        self.assertEqual(sorted(self.holdings.services), ["a", "b", "d"])
        self.assertEqual(
            sorted(s.body["serName"] for s in self.registry.services.values()), ["a", "b", "d"]
        )
        self.advance(BEAT + 1)  # every service still beats, the changed one on its new link
        self.assertTrue(all(s.healthy for s in self.holdings.services.values()))

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
        self.assertEqual(list(self.holdings.services), ["a"])
        _, body, _ = self.get_json(self.ops, "/readyz?verbose")
        self.assertFalse(body["config"]["ok"])
        self.assertIn("serName", body["config"]["error"])
        _, raw = self.request(self.ops, "GET", "/metrics")
        self.assertIn(b"mep_agent_config_reload_failures_total 1.0", raw)
        self.assertIn(b"mep_agent_config_valid 0.0", raw)
        self.rewrite(document("a", "b"))
        self.assertEqual(sorted(self.holdings.services), ["a", "b"])
        self.assertIsNone(self.reloader.last_error)

    def test_subscriptions_follow_the_file(self) -> None:
        """Subscriptions too: added ones created, removed ones deleted, kept ones kept."""
        self.start_with(document("a", subscriptions=2))
        kept = self.holdings.subscriptions[0].held
        self.rewrite(document("a", subscriptions=1))
        self.assertEqual(self.requests("unsubscribe"), [204])
        self.assertEqual(self.holdings.subscriptions[0].held, kept)
        self.rewrite(document("a", subscriptions=3))
        self.assertEqual(self.requests("subscribe"), [201] * 4)
        self.assertEqual(len(self.registry.subscriptions), 3)

    def test_sighup_checks_at_once(self) -> None:
        """check_now (what SIGHUP calls) applies a change before the next poll."""
        self.start_with(document("a"))
        self.files[PATH] = document("a", "b")
        self.reloader.check_now()
        self.settle()
        self.assertEqual(sorted(self.holdings.services), ["a"])  # read once: not yet whole
        self.advance(STABLE_FOR)  # read again, the same: applied
        self.assertEqual(sorted(self.holdings.services), ["a", "b"])

    def test_unreadable_file_keeps_state(self) -> None:
        """A file that disappears (a ConfigMap being swapped) is refused, not applied."""
        self.start_with(document("a"))
        del self.files[PATH]
        self.advance(10)
        self.assertEqual(list(self.holdings.services), ["a"])
        self.assertIn("cannot read", self.reloader.last_error or "")


class WholeFilesOnlyTests(ReloadTestCase):
    """A change is applied only when it is whole (the file read the same twice)."""

    def deregistrations(self) -> list[int]:
        return self.requests("deregister")

    def test_empty_file_refused_and_shown(self) -> None:
        """Truncated to 0 bytes (or blanks) and SIGHUP: nothing deleted, readiness says why."""
        self.start_with(document("a", "b"))
        for empty in (b"", b"  \n\t\n"):
            self.files[PATH] = empty
            self.reloader.check_now()
            self.advance(STABLE_FOR)
            self.assertEqual(self.deregistrations(), [])
            self.assertEqual(sorted(self.holdings.services), ["a", "b"])
            _, body, _ = self.get_json(self.ops, "/readyz?verbose")
            self.assertFalse(body["config"]["ok"])
            self.assertIn(f"{PATH}: is empty", body["config"]["error"])
            self.assertIn(NO_SERVICES_HINT, body["config"]["error"])
        _, raw = self.request(self.ops, "GET", "/metrics")
        self.assertIn(b"mep_agent_config_valid 0.0", raw)

    def test_half_written_file_never_applied(self) -> None:
        """A write seen cut at a service boundary, finished within the second: nothing lost."""
        self.start_with(document("a", "b", "c"))
        self.files[PATH] = document("a")  # the writer is half-way through
        self.reloader.check_now()
        self.advance(0.5)
        self.files[PATH] = document("a", "b", "c", "d")  # ... and done
        self.advance(STABLE_FOR)  # the second read differs: it becomes the candidate
        self.assertEqual(sorted(self.holdings.services), ["a", "b", "c"])
        self.advance(STABLE_FOR)
        self.assertEqual(sorted(self.holdings.services), ["a", "b", "c", "d"])
        self.assertEqual(self.deregistrations(), [])

    def test_file_that_keeps_changing_is_not_applied(self) -> None:
        """Content that differs at every read is never applied."""
        self.start_with(document("a", "b"))
        for i in range(5):
            self.files[PATH] = document("a", f"x{i}")
            self.advance(STABLE_FOR)
        self.assertEqual(sorted(self.holdings.services), ["a", "b"])
        self.assertEqual(self.deregistrations(), [])

    def test_removing_every_service_needs_an_explicit_list(self) -> None:
        """No serviceInfoPosts key: refused; serviceInfoPosts: [] removes every service."""
        self.start_with(document("a", "b"))
        self.rewrite(b"serAvailabilityNotificationSubscriptions: []\n")
        self.assertEqual(self.deregistrations(), [])
        self.assertIn("serviceInfoPosts: missing", self.reloader.last_error or "")
        self.assertIn("serviceInfoPosts: []", self.reloader.last_error or "")
        self.rewrite(b"serviceInfoPosts: []\n")
        self.assertEqual(self.deregistrations(), [204, 204])
        self.assertEqual(list(self.holdings.services), [])

    def test_empty_file_refused_like_at_start(self) -> None:
        """Reload refuses an empty file with the very line start-up and --check give."""
        self.start_with(document("a"))
        self.rewrite(b"")
        error = self.assertRaises(ConfigError, parse_app_instance_info, PATH, "")
        self.assertEqual(self.reloader.last_error, str(error))

    def test_alias_bomb_refused_at_reload(self) -> None:
        """A YAML alias bomb at reload is refused at once; the old state stays."""
        from .test_safety import bombed_services

        self.start_with(document("a"))
        self.rewrite(bombed_services().encode())
        self.assertIn("expands to more than", self.reloader.last_error or "")
        self.assertEqual(list(self.holdings.services), ["a"])
        self.assertEqual(self.deregistrations(), [])


class RevertTests(ReloadTestCase):
    """Readiness and mep_agent_config_valid describe the file on disk now."""

    def config_state(self) -> tuple[dict[str, Any], bytes]:
        _, body, _ = self.get_json(self.ops, "/readyz?verbose")
        _, raw = self.request(self.ops, "GET", "/metrics")
        return body["config"], raw

    def assert_valid(self) -> None:
        config, raw = self.config_state()
        self.assertEqual(config, {"ok": True})
        self.assertIsNone(self.reloader.last_error)
        self.assertIn(b"mep_agent_config_valid 1.0", raw)

    def assert_refused(self, part: str) -> None:
        config, raw = self.config_state()
        self.assertFalse(config["ok"])
        self.assertIn(part, config["error"])
        self.assertIn(b"mep_agent_config_valid 0.0", raw)

    def test_restored_file_clears_the_error(self) -> None:
        """An empty file or an alias bomb refused, then the original bytes back: valid again."""
        from .test_safety import bombed_services

        events: list[Any] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        original = document("a", "b")
        self.start_with(original)
        for bad, part in ((b"", "is empty"), (bombed_services().encode(), "expands to more")):
            self.files[PATH] = bad
            self.reloader.check_now()  # SIGHUP
            self.advance(STABLE_FOR)
            self.assert_refused(part)
            self.files[PATH] = original
            self.reloader.check_now()  # SIGHUP
            self.settle()
            self.assert_valid()
        self.assertEqual(sorted(self.holdings.services), ["a", "b"])
        self.assertEqual(self.requests("deregister"), [])
        restored = [e for e in events if e.get("event") == "config.reload_restored"]
        self.assertEqual(len(restored), 2)  # one line each time the error is cleared

    def test_readable_again_clears_the_error(self) -> None:
        """A file unreadable for a while, then back unchanged: the error is cleared."""
        self.start_with(document("a"))
        data = self.files.pop(PATH)
        self.advance(10)
        self.assert_refused("cannot read")
        self.files[PATH] = data
        self.advance(10)
        self.assert_valid()

    def test_refused_version_read_again_keeps_its_error(self) -> None:
        """The refused file back on disk, after the original or an unreadable spell: refused."""
        original = document("a")
        self.start_with(original)
        self.rewrite(b"")
        self.rewrite(original)
        self.assert_valid()
        self.rewrite(b"")  # read again: refused at once, without a second read
        self.assert_refused("is empty")
        del self.files[PATH]
        self.advance(10)
        self.assert_refused("cannot read")
        self.files[PATH] = b""
        self.advance(10)
        self.assert_refused("is empty")
        self.assertEqual(list(self.holdings.services), ["a"])
