"""
Credentials follow their files: the platform switches the app to a new AK/SK,
Kubernetes updates the mounted Secret, and the agent signs with the new pair at once.
"""

from __future__ import annotations

import json
from typing import Any

from mep_agent.core.token import TokenState
from mep_agent.util.secret import Secret

from .agent_harness import AgentTestCase, credentials, spec
from .helpers import AK, SK

NEW_AK = "NewAccessKey00000001"
NEW_SK = "N" * 64


class CredentialFilesTests(AgentTestCase):
    """The agent as production builds it, its AK and SK read from files (AK_FILE, SK_FILE)."""

    def environ(self) -> dict[str, str]:
        environ = super().environ()
        del environ["AK"], environ["SK"]
        return dict(environ, AK_FILE="/secrets/accesskey", SK_FILE="/secrets/secretkey")

    def start(self) -> None:
        self.files = {"/secrets/accesskey": AK.encode(), "/secrets/secretkey": SK.encode()}
        self.build((spec("a"),))
        self.watcher = self.core.link.credential_files
        super().start()

    def rotate(self) -> None:
        """The platform switches the app to the new pair (the old AK is unknown now)."""
        d = self.mep.http.post(
            "https://127.0.0.1:8443/_emulator/rotate-credentials",
            data=json.dumps({"ak": NEW_AK, "sk": NEW_SK}).encode(),
        )
        self.mep.flush()
        self.assertEqual(self.successResultOf(d).code, 200)

    def refuse_token(self) -> None:
        """The MEP refuses the current token: a new one is due."""
        token = self.tokens.current()
        assert token is not None
        self.tokens.invalidate(token, _refused())

    def swap_files(self) -> None:
        self.files.update(
            {"/secrets/accesskey": NEW_AK.encode(), "/secrets/secretkey": NEW_SK.encode()}
        )

    def test_a_refused_key_reads_the_files_and_signs_anew_at_once(self) -> None:
        """401 for the old key: the files are read at once; the new pair, no 160 s wait."""
        self.start()
        self.rotate()
        self.swap_files()
        self.refuse_token()  # a refresh is due
        self.advance(2)
        self.assertEqual(self.requests("token"), [200, 401, 200])
        self.assertEqual(self.tokens.state, TokenState.VALID)
        self.assertEqual(self.watcher.changes, 1)
        self.advance(600, step=5)
        self.assertTrue(all(k.healthy for k in self.holdings.services.values()))

    def test_a_changed_file_is_used_before_any_refusal(self) -> None:
        """Polled: the new pair is taken before the next token request; no 401 at all."""
        self.start()
        self.rotate()
        self.swap_files()
        self.advance(10)  # the next poll
        self.assertEqual(self.watcher.changes, 1)
        self.refuse_token()
        self.advance(2)
        self.assertEqual(self.requests("token"), [200, 200])

    def test_refusals_of_the_old_key_do_not_count(self) -> None:
        """Two refused signatures of the old key, then the new one: no lock-out wait."""
        self.start()
        self.rotate()
        self.refuse_token()
        self.advance(2)
        self.assertEqual(self.requests("token"), [200, 401])
        self.advance(160)  # the keeper's wait after a refused signature
        self.assertEqual(self.requests("token"), [200, 401, 401])
        self.swap_files()
        self.advance(10)  # polled: the new pair is taken and asked with at once
        self.assertEqual(self.requests("token"), [200, 401, 401, 200])

    def test_a_half_swapped_file_is_not_taken(self) -> None:
        """An invalid or missing file: one log line, the old credentials stay."""
        self.start()
        self.files.update({"/secrets/accesskey": b"short", "/secrets/secretkey": SK.encode()})
        self.advance(30)
        self.assertEqual(self.watcher.changes, 0)
        self.assertEqual(self.watcher.current, credentials())
        del self.files["/secrets/accesskey"]
        self.advance(10)
        self.assertEqual(self.watcher.changes, 0)
        self.swap_files()
        self.advance(10)
        self.assertEqual(self.watcher.current.access_key, Secret(NEW_AK))


def _refused() -> Any:
    from mep_agent.mp1.errors import MepError, Verdict

    return MepError("heartbeat", 401, "token refused", verdict=Verdict.TOKEN_REFUSED)
