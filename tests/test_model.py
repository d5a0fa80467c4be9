"""Tests for mep_agent.config.model: app_instance_info.yaml validated with the MEP's rules."""

from __future__ import annotations

import copy
import os
import re
from typing import Any
from unittest.mock import patch

import yaml
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.config import model
from mep_agent.config.errors import ConfigError

SERVICE = {
    "serName": "svc1",
    "serCategory": {"href": "/example/catalogue1", "id": "id12345", "name": "RNI", "version": "1"},
    "version": "1.0",
    "state": "ACTIVE",
    "transportId": "t-1",
    "transportInfo": {
        "id": "tr1",
        "name": "REST",
        "description": "d",
        "type": "REST_HTTP",
        "protocol": "HTTP",
        "version": "2.0",
        "endpoint": {
            "uris": ["http://a:1/"],
            "addresses": [{"host": "a", "port": 80}],
            "alternative": {"x": 1},
        },
        "security": {
            "oAuth2Info": {
                "grantTypes": ["OAUTH2_CLIENT_CREDENTIALS"],
                "tokenEndpoint": "/mep/token",
            }
        },
    },
    "serializer": "JSON",
    "scopeOfLocality": "MEC_HOST",
    "consumedLocalOnly": True,
    "isLocal": False,
    "livenessInterval": 60,
}


def parse(document: object) -> model.AppInstanceInfo:
    return model.parse_app_instance_info("f.yaml", yaml.safe_dump(document))


def with_service(**changes: object) -> dict[str, Any]:
    service: dict[str, Any] = copy.deepcopy(SERVICE)
    for dotted, value in changes.items():
        target: Any = service
        *parents, last = dotted.split("__")
        for parent in parents:
            target = target[parent]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return {"serviceInfoPosts": [service]}


class ValidTests(SynchronousTestCase):
    def test_full_service_body_kept(self) -> None:
        """A complete valid ServiceInfo becomes exactly that JSON body."""
        info = parse({"serviceInfoPosts": [SERVICE]})
        self.assertEqual(info.services[0].name, "svc1")
        self.assertEqual(info.services[0].body, SERVICE)
        self.assertTrue(info.services[0].wants_heartbeat)

    def test_links_alias_and_nulls(self) -> None:
        """EdgeGallery's Go mep-agent's 'links' key becomes '_links'; nulls count as absent."""
        info = parse(
            with_service(links={"self": {"liveness": ""}}, transportId=None, scopeOfLocality=None)
        )
        body = info.services[0].body
        self.assertEqual(body["_links"], {"self": {"liveness": ""}})
        self.assertNotIn("transportId", body)

    def test_explicit_empty_lists(self) -> None:
        """serviceInfoPosts: [] (or null, as the seed writes it) registers nothing."""
        nothing = model.AppInstanceInfo((), ())
        self.assertEqual(model.parse_app_instance_info("f", "serviceInfoPosts: []\n"), nothing)
        self.assertEqual(parse({"serviceInfoPosts": None}), nothing)

    def test_subscription_type_defaulted(self) -> None:
        """A subscription without subscriptionType gets the only valid one."""
        info = parse(
            {
                "serviceInfoPosts": [],
                "serAvailabilityNotificationSubscriptions": [{"callbackReference": "http://x/cb"}],
            }
        )
        self.assertEqual(
            info.subscriptions[0].body["subscriptionType"],
            "SerAvailabilityNotificationSubscription",
        )
        self.assertTrue(info.subscriptions[0].callback_is_uri)


class InvalidTests(SynchronousTestCase):
    def assert_invalid(self, document: object, where: str, part: str) -> None:
        error = self.assertRaises(ConfigError, parse, document)
        self.assertEqual(error.where, f"f.yaml: {where}")
        self.assertIn(part, error.problem)

    def test_rules(self) -> None:
        """Each mepserver rule is enforced and the YAML path named."""
        p = "serviceInfoPosts[0]"
        cases = [
            (with_service(serName=None), f"{p}.serName", "is required"),
            (with_service(serName="a b"), f"{p}.serName", "must match"),
            (with_service(serName="-ab"), f"{p}.serName", "must match"),
            (with_service(serName="a" * 129), f"{p}.serName", "at most 128"),
            (with_service(version=None), f"{p}.version", "is required"),
            (with_service(version=1.0), f"{p}.version", "must be a string"),
            (with_service(version="v" * 33), f"{p}.version", "at most 32"),
            (with_service(state="SUSPENDED"), f"{p}.state", "one of ACTIVE, INACTIVE"),
            (with_service(serializer="YAML"), f"{p}.serializer", "one of"),
            (with_service(serializer=None), f"{p}.serializer", "is required"),
            (with_service(scopeOfLocality="EARTH"), f"{p}.scopeOfLocality", "one of"),
            (with_service(livenessInterval=-1), f"{p}.livenessInterval", ">= 0"),
            (with_service(livenessInterval="60"), f"{p}.livenessInterval", "integer"),
            (with_service(livenessInterval=True), f"{p}.livenessInterval", "integer"),
            (with_service(isLocal="yes"), f"{p}.isLocal", "true or false"),
            (with_service(transportId="a_b"), f"{p}.transportId", "must match"),
            (with_service(serCategory__href="relative/x"), f"{p}.serCategory.href", "absolute"),
            (with_service(serCategory__id="x" * 65), f"{p}.serCategory.id", "at most 64"),
            (with_service(transportInfo__type="SOAP"), f"{p}.transportInfo.type", "one of"),
            (
                with_service(transportInfo__protocol="HT TP"),
                f"{p}.transportInfo.protocol",
                "must match",
            ),
            (
                with_service(transportInfo__endpoint__uris=["not a uri"]),
                f"{p}.transportInfo.endpoint.uris[0]",
                "absolute",
            ),
            (
                with_service(transportInfo__endpoint__addresses=[{"host": "a"}]),
                f"{p}.transportInfo.endpoint.addresses[0].port",
                "is required",
            ),
            (
                with_service(transportInfo__endpoint__addresses=[{"host": "a", "port": 70000}]),
                f"{p}.transportInfo.endpoint.addresses[0].port",
                "between 0 and 65535",
            ),
            (
                with_service(transportInfo__security__oAuth2Info__grantTypes=[]),
                f"{p}.transportInfo.security.oAuth2Info.grantTypes",
                "at least 1",
            ),
            (with_service(serNmae="typo"), f"{p}.serNmae", "unknown key"),
            ({"serviceInfoPosts": {"serName": "x"}}, "serviceInfoPosts", "must be a list"),
            ({"serviceInfoPost": []}, "serviceInfoPost", "unknown key"),
            ({"serviceInfoPosts": ["x"]}, p, "must be a mapping"),
            (
                {
                    "serAvailabilityNotificationSubscriptions": [
                        {"subscriptionType": "X", "callbackReference": "/c"}
                    ]
                },
                "serAvailabilityNotificationSubscriptions[0].subscriptionType",
                "one of",
            ),
            (
                {"serAvailabilityNotificationSubscriptions": [{}]},
                "serAvailabilityNotificationSubscriptions[0].callbackReference",
                "is required",
            ),
            (
                {
                    "serAvailabilityNotificationSubscriptions": [
                        {"callbackReference": "/c", "filteringCriteria": {"states": ["GONE"]}}
                    ]
                },
                "serAvailabilityNotificationSubscriptions[0].filteringCriteria.states[0]",
                "one of",
            ),
        ]
        for document, where, part in cases:
            self.assert_invalid(document, where, part)

    def test_more_than_fifty_services(self) -> None:
        """More than 50 services is refused (the MEP's per-app cap)."""
        services = [dict(SERVICE, serName=f"s{i}") for i in range(51)]
        self.assert_invalid({"serviceInfoPosts": services}, "serviceInfoPosts", "at most 50")
        self.assertEqual(len(parse({"serviceInfoPosts": services[:50]}).services), 50)

    def test_duplicate_names(self) -> None:
        """Two entries with one serName are refused."""
        self.assert_invalid(
            {"serviceInfoPosts": [SERVICE, SERVICE]},
            "serviceInfoPosts[1].serName",
            "already registered",
        )

    def test_links_given_twice(self) -> None:
        """'links' and '_links' together are refused, each message naming the other."""
        self.assert_invalid(
            with_service(links={}, _links={}), "serviceInfoPosts[0].links", "given twice"
        )
        body = yaml.safe_dump(SERVICE, default_flow_style=True).strip()[1:-1]
        for first, second in (("links", "_links"), ("_links", "links")):
            text = f"serviceInfoPosts: [{{{body}, {first}: {{}}, {second}: {{}}}}]\n"
            error = self.assertRaises(ConfigError, model.parse_app_instance_info, "f.yaml", text)
            self.assertEqual(
                str(error), f"f.yaml: serviceInfoPosts[0].{second}: given twice (also as {first})"
            )

    def test_a_document_that_is_no_mapping(self) -> None:
        """A list at the top: the file named once, no empty YAML path."""
        error = self.assertRaises(ConfigError, model.parse_app_instance_info, "f.yaml", "- a\n")
        self.assertEqual(str(error), "f.yaml: must be a mapping, not a list")

    def test_file_naming_no_services_refused(self) -> None:
        """Empty, blank, comment-only or keyless: one line naming the file and the way out."""
        for text in ("", "  \n\t\n", "# services to come\n", "~\n", "---\n"):
            error = self.assertRaises(ConfigError, model.parse_app_instance_info, "f.yaml", text)
            self.assertEqual(error.where, "f.yaml")
            self.assertIn("to register no services write serviceInfoPosts: []", str(error))
            self.assertNotIn("\n", str(error))
        keyless = "serAvailabilityNotificationSubscriptions: []\n"
        error = self.assertRaises(ConfigError, model.parse_app_instance_info, "f.yaml", keyless)
        self.assertEqual(
            str(error),
            "f.yaml: serviceInfoPosts: missing; to register no services write "
            "serviceInfoPosts: []",
        )

    def test_misspelt_key_named_before_missing_one(self) -> None:
        """A misspelt serviceInfoPosts is named as an unknown key, not only as missing."""
        self.assert_invalid({"serviceInfoPost": []}, "serviceInfoPost", "unknown key")

    def test_malformed_yaml(self) -> None:
        """A YAML syntax error names the file and the position."""
        error = self.assertRaises(
            ConfigError, model.parse_app_instance_info, "f.yaml", "serviceInfoPosts: [\n"
        )
        self.assertEqual(error.where, "f.yaml")
        self.assertIn("invalid YAML: line 2", error.problem)

    def test_fast_loader_reads_as_the_python_one(self) -> None:
        """LibYAML's loader (used when present) gives the same data and error positions."""
        self.assertIs(model.SAFE_LOADER, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        root = os.path.join(os.path.dirname(__file__), "..")
        texts = [
            _read(os.path.join(root, path))
            for path in (
                "conf/app_instance_info.yaml",
                "conf/app_conf.yaml",
                "tests/data/seed_app_instance_info.yaml",
            )
        ]
        for text in texts + ["a: 0x1F\nb: 1e3\nc: ~\nd: 2001-01-01\ne: '\u00e9'\n"]:
            self.assertEqual(model.load_yaml("f", text), yaml.load(text, Loader=yaml.SafeLoader))
        for bad in ("serviceInfoPosts: [\n", "a: b: c\n", "a:\n\t- b\n", "[1, 2\n"):
            fast = self.assertRaises(ConfigError, model.load_yaml, "f", bad)
            with patch.object(model, "SAFE_LOADER", yaml.SafeLoader):
                slow = self.assertRaises(ConfigError, model.load_yaml, "f", bad)
            self.assertEqual(fast.problem.split(":")[:2], slow.problem.split(":")[:2], bad)

    def test_top_level_not_mapping(self) -> None:
        """A document that is a list is refused."""
        self.assertRaises(ConfigError, model.parse_app_instance_info, "f.yaml", "- a\n")


_GO_SER_NAME = re.compile(r"^[a-zA-Z0-9]*$|^[a-zA-Z0-9][a-zA-Z0-9_-]*[a-zA-Z0-9]$")


class SerNameProperty(SynchronousTestCase):
    @given(st.text(max_size=140))
    def test_matches_mepserver_rule(self, name: str) -> None:
        """A serName is accepted exactly when mepserver's two regexes and length allow it."""
        expected = len(name) <= 128 and bool(_GO_SER_NAME.match(name)) and "\n" not in name
        try:
            parse(with_service(serName=name))
        except ConfigError:
            accepted = False
        else:
            accepted = True
        self.assertEqual(accepted, expected, repr(name))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()
