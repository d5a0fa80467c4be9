"""
deploy/: every manifest parses and validates against the Kubernetes schemas (offline), and
everything a manifest names in the agent exists: environment variables in the settings
table, probe paths among the operations routes, the ops port, the files behind *_FILE and
CA_CERT mounted, the ConfigMap mounted as a directory, a grace period that fits the stop.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

import kubernetes_validate
import yaml
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.ops import OpsAPI
from mep_agent.settings import BY_KEY, SETTINGS

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy")
KUBERNETES = "1.30.0"  # native sidecars (initContainers with restartPolicy) are GA here
ENV_NAMES = {s.env for s in SETTINGS if s.env} | {"POD_IP"}
OPS_PORT = int(BY_KEY["ops_listen"].default.split(":")[1])  # type: ignore[union-attr]


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name in sorted(os.listdir(DEPLOY)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(DEPLOY, name), encoding="utf-8") as f:
                found += [(name, d) for d in yaml.safe_load_all(f) if d]
    return found


def pod_spec(document: dict[str, Any]) -> dict[str, Any] | None:
    if document["kind"] == "Pod":
        spec: dict[str, Any] = document["spec"]
        return spec
    if document["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        spec = document["spec"]["template"]["spec"]
        return spec
    return None


def agents(spec: dict[str, Any]) -> list[dict[str, Any]]:
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    return [c for c in containers if c["name"] == "mep-agent"]


class ManifestTests(SynchronousTestCase):
    def test_there_are_manifests(self) -> None:
        """deploy/ holds the pod, the deployment and the network policy."""
        kinds = sorted(d["kind"] for _, d in documents())
        self.assertEqual(kinds, ["Deployment", "NetworkPolicy", "Pod"])

    def test_valid_against_kubernetes_schemas(self) -> None:
        """Every document validates strictly against Kubernetes' own schemas."""
        for name, document in documents():
            try:
                kubernetes_validate.validate(document, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as e:
                self.fail(f"{name}: {e}")

    def test_agent_settings_exist(self) -> None:
        """Every variable given to the agent is one it reads (no typo goes unnoticed)."""
        for name, document in documents():
            spec = pod_spec(document)
            for agent in agents(spec or {}):
                for variable in agent.get("env", []):
                    self.assertIn(variable["name"], ENV_NAMES, f"{name}: {variable['name']}")

    def test_probes_are_ops_routes_on_the_ops_port(self) -> None:
        """Probe paths are routes of the operations API, on its port."""
        routes = {rule.rule for rule in OpsAPI.app.url_map.iter_rules()}
        for name, document in documents():
            for agent in agents(pod_spec(document) or {}):
                ports = {p["name"]: p["containerPort"] for p in agent.get("ports", [])}
                self.assertEqual(ports["ops"], OPS_PORT, name)
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    self.assertIn(agent[probe]["httpGet"]["path"], routes, f"{name}: {probe}")
                    self.assertEqual(agent[probe]["httpGet"]["port"], "ops")

    def test_files_are_mounted(self) -> None:
        """CA_CERT, the *_FILE secrets and the service file lie under mounted volumes."""
        for name, document in documents():
            spec = pod_spec(document)
            for agent in agents(spec or {}):
                mounts = {m["mountPath"]: m for m in agent.get("volumeMounts", [])}
                env = {v["name"]: v.get("value") for v in agent["env"]}
                files = [env["CA_CERT"]] + [
                    v for k, v in env.items() if k.endswith("_FILE") or k.endswith("_INFO")
                ]
                for path in files:
                    self.assertTrue(
                        any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts),
                        f"{name}: {path} is not mounted",
                    )

    def test_deployment_best_practice(self) -> None:
        """The deployment: a native sidecar, directory ConfigMap, hardened, sized, timed."""
        deployment = next(d for _, d in documents() if d["kind"] == "Deployment")
        spec = deployment["spec"]["template"]["spec"]
        (agent,) = [c for c in spec["initContainers"] if c["name"] == "mep-agent"]
        self.assertEqual(agent["restartPolicy"], "Always")
        env = {v["name"]: v.get("value") for v in agent["env"]}
        for secret in ("AK", "SK", "APPINSTID"):
            self.assertNotIn(secret, env)  # files, not variables
            self.assertIn(f"{secret}_FILE", env)
        info = env["MEP_AGENT_APP_INSTANCE_INFO"]
        mount = next(m for m in agent["volumeMounts"] if m["mountPath"] == posixpath.dirname(info))
        self.assertNotIn("subPath", mount)  # a subPath mount never sees ConfigMap updates
        security = agent["securityContext"]
        self.assertEqual(
            (
                security["readOnlyRootFilesystem"],
                security["allowPrivilegeEscalation"],
                security["capabilities"]["drop"],
            ),
            (True, False, ["ALL"]),
        )
        self.assertEqual(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
        self.assertTrue(spec["securityContext"]["runAsNonRoot"])
        self.assertIn("memory", agent["resources"]["limits"])
        shutdown = float(env.get("MEP_AGENT_SHUTDOWN_TIMEOUT") or "5")
        self.assertEqual(BY_KEY["shutdown_timeout"].default, "5")
        self.assertGreater(spec["terminationGracePeriodSeconds"], shutdown)

    def test_network_policy_admits_the_ops_port(self) -> None:
        """The policy selects the agent's pods and admits 9090 only from named namespaces."""
        policy = next(d for _, d in documents() if d["kind"] == "NetworkPolicy")
        deployment = next(d for _, d in documents() if d["kind"] == "Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for key, value in policy["spec"]["podSelector"]["matchLabels"].items():
            self.assertEqual(labels.get(key), value)
        ops_rules = [
            r
            for r in policy["spec"]["ingress"]
            if {"port": OPS_PORT, "protocol": "TCP"} in r["ports"]
        ]
        self.assertEqual(len(ops_rules), 1)
        self.assertTrue(ops_rules[0]["from"])
