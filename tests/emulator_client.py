"""Raw HTTP helpers for driving the in-memory emulator in tests (no agent code paths)."""

from __future__ import annotations

import base64
import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mep_agent.mp1 import signing
from mep_emulator.auth import App
from mep_emulator.dev import DEV_CLIENT_ID, DEV_CLIENT_SECRET
from mep_emulator.memory import DEV_APP, InMemoryMep

BASE = "https://127.0.0.1:8443"
MGMT = f"{BASE}/mep/mec_service_mgmt/v1"
SUPPORT = f"{BASE}/mep/mec_app_support/v1"
CONTROL = f"{BASE}/_emulator"


def service(name: str = "svc1", interval: int = 60, **extra: Any) -> dict[str, Any]:
    body = {
        "serName": name,
        "version": "1.0",
        "state": "ACTIVE",
        "serializer": "JSON",
        "livenessInterval": interval,
        "transportInfo": {
            "type": "REST_HTTP",
            "protocol": "HTTP",
            "endpoint": {"uris": [f"http://{name}.local:80/"]},
        },
    }
    body.update(extra)
    return body


class Reply:
    def __init__(self, code: int, headers: Any, raw: bytes) -> None:
        self.code = code
        self.headers = headers
        self.raw = raw

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None


class EmulatorTestCase(SynchronousTestCase):
    """A fresh in-memory MEP per test, with synchronous request helpers."""

    liveness_interval: int | None = 60

    def setUp(self) -> None:
        self.mep = InMemoryMep.create(liveness_interval=self.liveness_interval)

    def call(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        data = (
            raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        )
        d = self.mep.http.request(method, url, data=data, headers=headers or {})
        self.mep.http.flush()
        response = self.successResultOf(d)
        content = self.mep.http.content(response)
        self.mep.http.flush()
        return Reply(response.code, response.headers, self.successResultOf(content))

    def control(self, method: str, path: str, body: Any = None) -> Reply:
        """A call to the emulator's control API (C{path} below /_emulator)."""
        return self.call(method, f"{CONTROL}{path}", body)

    def settings(self, **values: Any) -> Reply:
        """Change the emulator's settings."""
        return self.control("POST", "/settings", values)

    def terminate_app(self, app_id: str = DEV_APP.app_instance_id, **options: Any) -> Reply:
        """Start a termination of C{app_id} (MECM's request); its answer, 200."""
        reply = self.control("POST", f"/terminate/{app_id}", options)
        self.assertEqual(reply.code, 200, reply.raw)
        return reply

    def token_headers(
        self,
        app: App = DEV_APP,
        host: str = "127.0.0.1:8443",
        sk: str | None = None,
        target: str = "/mep/token",
    ) -> dict[str, str]:
        return signing.token_request_headers(
            app.access_key,
            sk or app.secret_key,
            host,
            signing.sdk_date(self.mep.clock.seconds()),
            target,
        )

    def token(self, app: App = DEV_APP) -> str:
        reply = self.call("POST", f"{BASE}/mep/token", headers=self.token_headers(app))
        self.assertEqual(reply.code, 200, reply.raw)
        token: str = reply.json["access_token"]
        return token

    def bearer(self, app: App = DEV_APP) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(app)}"}

    def register(
        self, body: Any, app: App = DEV_APP, headers: dict[str, str] | None = None
    ) -> Reply:
        return self.call(
            "POST",
            f"{MGMT}/applications/{app.app_instance_id}/services",
            body,
            headers or self.bearer(app),
        )


def etsi_bearer(case: EmulatorTestCase) -> dict[str, str]:
    """A bearer token from the ETSI face's OAuth 2.0 token endpoint."""
    pair = base64.b64encode(f"{DEV_CLIENT_ID}:{DEV_CLIENT_SECRET}".encode()).decode()
    headers = {
        "Authorization": f"Basic {pair}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    reply = case.call(
        "POST", f"{BASE}/oauth2/token", headers=headers, raw=b"grant_type=client_credentials"
    )
    case.assertEqual(reply.code, 200, reply.raw)
    return {"Authorization": f"Bearer {reply.json['access_token']}"}
