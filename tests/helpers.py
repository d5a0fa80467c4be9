"""Shared test data: known credentials, a valid environment and an in-memory file reader."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from mep_emulator.dev import DEV_APP

DATA = os.path.join(os.path.dirname(__file__), "data")

# The emulator's development keys (emulator/dev.py); tests assert they never leak.
AK = DEV_APP.access_key
SK = DEV_APP.secret_key
APP_ID = DEV_APP.app_instance_id
SECRETS = (AK, SK, APP_ID)


def data_text(name: str) -> str:
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return f.read()


def sign_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(data_text("sign_vectors.json"))["vectors"]
    return vectors


def seed_environ(**overrides: str | None) -> dict[str, str]:
    """The seed Pod manifest's environment, literal double quotes included."""
    env: dict[str, str | None] = {
        "ENABLE_WAIT": '"true"',
        "MEP_IP": '"mep-api-gw.mep"',
        "MEP_APIGW_PORT": '"8443"',
        "CA_CERT_DOMAIN_NAME": '"edgegallery"',
        "CA_CERT": "/usr/mep/ssl/ca.crt",
        "AK": AK,
        "SK": SK,
        "APPINSTID": APP_ID,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


class FakeFiles:
    """A read_file for config.load: paths to bytes; anything else is ENOENT."""

    def __init__(self, files: Mapping[str, bytes | str]) -> None:
        self.files = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
        self.read: list[str] = []

    def __call__(self, path: str) -> bytes:
        self.read.append(path)
        if path not in self.files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.files[path]


def capture_events(test: SynchronousTestCase) -> list[Any]:
    """Every log event from now on, until C{test} ends."""
    events: list[Any] = []
    observer: ILogObserver = events.append  # type: ignore[assignment]
    globalLogPublisher.addObserver(observer)
    test.addCleanup(globalLogPublisher.removeObserver, observer)
    return events
