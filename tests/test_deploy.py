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

from mep_agent.config.settings import BY_KEY, SETTINGS
from mep_agent.web.ops import OpsAPI

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy")
KUBERNETES = "1.30.0"  # native sidecars (initContainers with restartPolicy) are GA here
ENV_NAMES = {s.env for s in SETTINGS if s.env} | {"POD_IP"}
OPS_PORT = int(BY_KEY["ops_listen"].default.split(":")[1])  # type: ignore[union-attr]


# The monitoring files are no workload manifests: the plain rules file is not a Kubernetes
# object at all, and a PrometheusRule is a custom resource whose schema Kubernetes' own (and
# so kubernetes-validate) does not know. tests/test_dashboards.py checks both.
MONITORING = frozenset({"prometheus-rules.yaml", "prometheus-rules.rules.yml"})


def documents() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes document in deploy/, but the monitoring files (L{MONITORING})."""
    found = []
    for name in sorted(os.listdir(DEPLOY)):
        if name.endswith((".yaml", ".yml")) and name not in MONITORING:
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

    def test_only_the_monitoring_files_are_left_out(self) -> None:
        """Every YAML file of deploy/ but the two rule files is a manifest checked here."""
        files = {n for n in os.listdir(DEPLOY) if n.endswith((".yaml", ".yml"))}
        self.assertEqual(files - {name for name, _ in documents()}, MONITORING)

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


# -- what the kubelet makes of the volumes, and whether the agent can read its files --------

# The image's user and group (Dockerfile: USER 10001:10001) and where its conf lies.
IMAGE_USER = (10001, 10001)
IMAGE_CONF_DIR = "/usr/mep/conf"
IMAGE_FILES = {f"{IMAGE_CONF_DIR}/app_conf.yaml"}  # in the image, readable by everyone
# The kubelet ORs this into the mode of a read-only volume's files when fsGroup is set
# (pkg/volume/volume_linux.go: roMask), after making fsGroup their group.
FS_GROUP_READ = 0o440
DEFAULT_MODE = 0o644  # Secret, ConfigMap and projected volumes without defaultMode


def security(spec: dict[str, Any], container: dict[str, Any]) -> tuple[int, int, set[int]]:
    """(uid, gid, supplementary groups) the container runs with, as the kubelet sets them."""
    pod = spec.get("securityContext", {})
    own = container.get("securityContext", {})
    uid = own.get("runAsUser", pod.get("runAsUser", IMAGE_USER[0]))
    gid = own.get("runAsGroup", pod.get("runAsGroup", IMAGE_USER[1]))
    groups = set(pod.get("supplementalGroups", []))
    if "fsGroup" in pod:
        groups.add(pod["fsGroup"])
    return uid, gid, groups


def volume_file(
    spec: dict[str, Any], volume: dict[str, Any], key: str
) -> tuple[int, int, int] | None:
    """
    (owner, group, mode) of the file C{key} of a Secret, ConfigMap or projected volume as
    the kubelet writes it: owned by root, group root or fsGroup, mode from the item or
    defaultMode (0644 without), group read added under fsGroup. None: not such a volume.
    """
    fs_group = spec.get("securityContext", {}).get("fsGroup")
    sources: list[tuple[dict[str, Any], int]] = []
    for kind in ("secret", "configMap"):
        if kind in volume:
            sources.append((volume[kind], volume[kind].get("defaultMode", DEFAULT_MODE)))
    if "projected" in volume:
        default = volume["projected"].get("defaultMode", DEFAULT_MODE)
        for source in volume["projected"]["sources"]:
            for kind in ("secret", "configMap"):
                if kind in source:
                    sources.append((source[kind], default))
    if not sources:
        return None
    mode = None
    for source, default in sources:
        items = source.get("items")
        if items is None:
            mode = default  # every key of the source, under its own name
            break
        for item in items:
            if item["path"] == key:
                mode = item.get("mode", default)
    if mode is None:
        raise AssertionError(f"no item {key!r} in volume {volume['name']}")
    if fs_group is not None:
        return 0, fs_group, mode | FS_GROUP_READ
    return 0, 0, mode


def readable(user: tuple[int, int, set[int]], owner: int, group: int, mode: int) -> bool:
    """Whether a process of C{user} may read a file of that owner, group and mode."""
    uid, gid, groups = user
    if uid == 0:
        return True
    if uid == owner:
        return bool(mode & 0o400)
    if group == gid or group in groups:
        return bool(mode & 0o040)
    return bool(mode & 0o004)


def files_read(container: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, path) of every file the agent is told to read."""
    env = {v["name"]: v.get("value") for v in container.get("env", [])}
    conf_dir = env.get("MEP_AGENT_CONF_DIR") or IMAGE_CONF_DIR
    files = [(name, path) for name, path in env.items() if name.endswith("_FILE") and path]
    if env.get("CA_CERT"):
        files.append(("CA_CERT", env["CA_CERT"]))
    files.append(
        (
            "MEP_AGENT_APP_INSTANCE_INFO",
            env.get("MEP_AGENT_APP_INSTANCE_INFO") or f"{conf_dir}/app_instance_info.yaml",
        )
    )
    return files


def file_mode(spec: dict[str, Any], container: dict[str, Any], path: str) -> tuple[int, int, int]:
    """(owner, group, mode) of C{path} in the container: from its volume, or the image."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        target = mount["mountPath"]
        if "subPath" in mount and path == target:
            key = mount["subPath"]
        elif path.startswith(target.rstrip("/") + "/"):
            key = path[len(target.rstrip("/")) + 1 :]
        else:
            continue
        found = volume_file(spec, volumes[mount["name"]], key)
        if found is not None:
            return found
    if path in IMAGE_FILES:
        return 0, 0, 0o644
    raise AssertionError(f"{path} is neither mounted nor in the image")


class KubeletFileAccessTests(SynchronousTestCase):
    def test_the_agent_can_read_every_file_it_is_told_to_read(self) -> None:
        """Under the kubelet's rules (owner root, fsGroup, modes) the agent's user reads them."""
        for name, document in documents():
            spec = pod_spec(document)
            for agent in agents(spec or {}):
                assert spec is not None
                user = security(spec, agent)
                for setting, path in files_read(agent):
                    owner, group, mode = file_mode(spec, agent, path)
                    self.assertTrue(
                        readable(user, owner, group, mode),
                        f"{name}: {setting} {path} is {owner}:{group} {mode:04o}, "
                        f"unreadable for uid {user[0]} gid {user[1]} groups {user[2]}",
                    )

    def test_the_model_refuses_the_old_manifest(self) -> None:
        """The model: a 0400 Secret without fsGroup, as deployed before, is unreadable."""
        deployment = next(d for _, d in documents() if d["kind"] == "Deployment")
        spec = yaml.safe_load(yaml.safe_dump(pod_spec(deployment)))
        spec["securityContext"].pop("fsGroup", None)
        for volume in spec["volumes"]:
            if "secret" in volume and volume["name"] == "aksk":
                volume["secret"]["defaultMode"] = 0o400
        (agent,) = agents(spec)
        owner, group, mode = file_mode(spec, agent, "/var/run/secrets/mep-agent/accesskey")
        self.assertEqual((owner, group, mode), (0, 0, 0o400))
        self.assertFalse(readable(security(spec, agent), owner, group, mode))

    def test_kubelet_rules(self) -> None:
        """fsGroup makes the group and adds group read; without it root owns all, as given."""
        spec: dict[str, Any] = {"securityContext": {"fsGroup": 2000}}
        secret = {"name": "s", "secret": {"secretName": "x", "defaultMode": 0o400}}
        self.assertEqual(volume_file(spec, secret, "k"), (0, 2000, 0o440))
        self.assertEqual(volume_file({}, secret, "k"), (0, 0, 0o400))
        projected = {
            "name": "p",
            "projected": {
                "defaultMode": 0o600,
                "sources": [{"secret": {"name": "x", "items": [{"key": "a", "path": "a"}]}}],
            },
        }
        self.assertEqual(volume_file({}, projected, "a"), (0, 0, 0o600))
        config = {"name": "c", "configMap": {"name": "x"}}
        self.assertEqual(volume_file({}, config, "any"), (0, 0, 0o644))
        self.assertTrue(readable((10001, 10001, {2000}), 0, 2000, 0o440))
        self.assertFalse(readable((10001, 10001, set()), 0, 2000, 0o440))
        self.assertTrue(readable((10001, 10001, set()), 0, 0, 0o644))


def writable(spec: dict[str, Any], container: dict[str, Any], path: str) -> bool:
    """
    Whether the agent's user may write under C{path}: only on a writable volume when the
    root file system is read-only; an emptyDir is made 0777 by the kubelet (group fsGroup,
    setgid, when fsGroup is set), a Secret, ConfigMap or projected volume is never writable.
    """
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        target = mount["mountPath"].rstrip("/")
        if path == target or path.startswith(target + "/"):
            if mount.get("readOnly"):
                return False
            return "emptyDir" in volumes[mount["name"]]
    return not container.get("securityContext", {}).get("readOnlyRootFilesystem", False)


class StateDirectoryTests(SynchronousTestCase):
    def test_every_agent_writes_its_state_directory(self) -> None:
        """Each sidecar sets MEP_AGENT_STATE_DIR on an emptyDir it can write, root read-only."""
        for name, document in documents():
            spec = pod_spec(document)
            for agent in agents(spec or {}):
                assert spec is not None
                env = {v["name"]: v.get("value") for v in agent.get("env", [])}
                directory = env.get("MEP_AGENT_STATE_DIR")
                self.assertTrue(directory, f"{name}: no MEP_AGENT_STATE_DIR")
                assert directory is not None
                self.assertTrue(writable(spec, agent, f"{directory}/mep-agent-state.json"), name)

    def test_the_model_refuses_a_state_directory_on_the_root(self) -> None:
        """The control: without the emptyDir, the read-only root file system refuses it."""
        deployment = next(d for _, d in documents() if d["kind"] == "Deployment")
        spec = yaml.safe_load(yaml.safe_dump(pod_spec(deployment)))
        (agent,) = agents(spec)
        agent["volumeMounts"] = [m for m in agent["volumeMounts"] if m["name"] != "state"]
        self.assertFalse(writable(spec, agent, "/var/lib/mep-agent/mep-agent-state.json"))
        agent["volumeMounts"].append({"name": "aksk", "mountPath": "/var/lib/mep-agent"})
        self.assertFalse(writable(spec, agent, "/var/lib/mep-agent/mep-agent-state.json"))


class PolicySelectsTests(SynchronousTestCase):
    def test_the_policy_selects_every_pod_with_the_agent(self) -> None:
        """Every pod that runs the agent carries the labels the network policy selects."""
        policy = next(d for _, d in documents() if d["kind"] == "NetworkPolicy")
        wanted = policy["spec"]["podSelector"]["matchLabels"]
        for name, document in documents():
            spec = pod_spec(document)
            if spec is None or not agents(spec):
                continue
            metadata = (
                document["metadata"]
                if document["kind"] == "Pod"
                else document["spec"]["template"]["metadata"]
            )
            for key, value in wanted.items():
                self.assertEqual(metadata.get("labels", {}).get(key), value, name)
