"""The one place where the core's domain errors become HTTP answers (web/problems.py)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mep_agent.core.errors import BadTerminationNotice, DiscoveryFailed, NoToken
from mep_agent.mp1.errors import MepError
from mep_agent.web.problems import DOMAIN_ERRORS, ApiProblem, problem_for


class ProblemForTests(SynchronousTestCase):
    def test_no_token(self) -> None:
        """412 before the first token, 503 after one lapsed; the keeper's state rides along."""
        first = problem_for(NoToken(True, "starting", "not yet"))
        later = problem_for(NoToken(False, "expired", "renewing it is under way"))
        self.assertEqual((first.status, first.fields), (412, {"state": "starting"}))
        self.assertEqual((later.status, later.fields), (503, {"state": "expired"}))
        self.assertIn("renewing it is under way", later.message)

    def test_discovery(self) -> None:
        """503 when the MEP could not answer (try later), 502 when it refused."""
        down = problem_for(DiscoveryFailed("svc", MepError("discovery", None, "timed out")))
        refused = problem_for(DiscoveryFailed("svc", MepError("discovery", 400, "bad")))
        self.assertEqual((down.status, down.fields["serName"]), (503, "svc"))
        self.assertEqual(refused.status, 502)
        self.assertIn("HTTP 400", refused.fields["cause"])

    def test_bad_notice(self) -> None:
        problem = problem_for(BadTerminationNotice("operationAction must be STOPPING"))
        self.assertEqual(
            (problem.status, problem.message), (400, "operationAction must be STOPPING")
        )

    def test_every_domain_error_mapped(self) -> None:
        """Each error the routes let through has its answer; an ApiProblem is itself."""
        samples = {
            NoToken: NoToken(True, "s", "r"),
            DiscoveryFailed: DiscoveryFailed("n", MepError("discovery", 500, "x")),
            BadTerminationNotice: BadTerminationNotice("p"),
        }
        self.assertEqual(set(samples), set(DOMAIN_ERRORS))
        for error in samples.values():
            self.assertIsInstance(problem_for(error), ApiProblem)
        own = ApiProblem(409, "conflict")
        self.assertIs(problem_for(own), own)
        self.assertRaises(TypeError, problem_for, RuntimeError("a bug"))
