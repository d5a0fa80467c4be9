"""
deploy/'s monitoring: the Grafana dashboard and the alerting rules ask only for metrics and
labels the agent exports, read from a running agent's /metrics (not from a list kept by
hand); every expression parses as PromQL (promql-parser, and promtool where it is
installed); the PrometheusRule and the plain rules file hold the same rules.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from itertools import chain
from typing import Any

import promql_parser as pq
import yaml
from attrs import frozen
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mep_agent.web.metrics import status_label
from mep_emulator.memory import DEV_APP

from .agent_harness import BEAT, NOTIFICATIONS, AgentTestCase, spec
from .emulator_client import service

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy")
DASHBOARD = os.path.join(DEPLOY, "grafana-dashboard.json")
RULE_RESOURCE = os.path.join(DEPLOY, "prometheus-rules.yaml")
RULES_FILE = os.path.join(DEPLOY, "prometheus-rules.rules.yml")
ALERT_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "alerts.test.yml")
NOTIFY = "http://127.0.0.1:9090/mep-agent/v1/notifications"

#: Labels the scrape adds to every series (Prometheus' own, Kubernetes service discovery's,
#: the Operator's): the expressions may group and match on them.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "container", "endpoint"})
#: Series a family of each type exports, by suffix (prometheus_client's parser names the
#: family without them).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
#: Label values that follow from what happens rather than from the scenario: every status
#: the agent's folding can give (metrics.status_label).
STATUSES = frozenset({status_label(None)} | {status_label(code) for code in range(100, 600)})
EVENTUAL_VALUES = {"status": STATUSES, "code": STATUSES}
GRAFANA_RANGES = re.compile(r"\$__(rate_interval|interval|range)\b")
LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")
ANNOTATION_LABEL = re.compile(r"\$labels\.([A-Za-z_]\w*)")
LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_]\w*)\s*\)")
PLAIN_ALTERNATIVES = re.compile(r"[\w.-]+(\|[\w.-]+)*")
SEVERITIES = ("critical", "warning", "info")


@frozen
class Exported:
    """What a scrape shows: each series' label names, and the values seen of each label."""

    labels: dict[str, frozenset[str]]
    values: dict[tuple[str, str], frozenset[str]]


def exported(*texts: str) -> Exported:
    """The series of the Prometheus texts C{texts} together (a series without samples too)."""
    labels: dict[str, set[str]] = defaultdict(set)
    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    for text in texts:
        for family in text_string_to_metric_families(text):
            for suffix in SUFFIXES.get(family.type, ("",)):
                labels[family.name + suffix] |= set()
            for sample in family.samples:
                labels[sample.name] |= set(sample.labels)
                for name, value in sample.labels.items():
                    values[(sample.name, name)].add(value)
    return Exported(
        {k: frozenset(v) for k, v in labels.items()},
        {k: frozenset(v) for k, v in values.items()},
    )


def selector_name(node: pq.VectorSelector) -> str:
    """The metric a selector reads (its name, or its __name__ matcher)."""
    if node.name:
        return node.name
    return next((m.value for m in node.matchers.matchers if m.name == "__name__"), "")


class Checker:
    """
    Checks PromQL against what the agent exports: every metric exists, every label a
    selector matches on, groups by or matches vectors on exists on the series concerned
    (or is one of L{TARGET_LABELS}), and plain matcher values are values the label takes.
    Knows the labels each expression's result carries, for legends and annotations.
    """

    def __init__(self, known: Exported) -> None:
        self.known = known
        self.series = dict(known.labels)

    def record(self, name: str, expr: str) -> None:
        """A recording rule: C{name} is a series from now on, with its expression's labels."""
        self.series[name] = self.output(pq.parse(expr)) or frozenset()

    def check(self, where: str, text: str) -> tuple[list[str], frozenset[str]]:
        """The problems of C{text} (C{where} says where it is), and its result's labels."""
        try:
            tree = pq.parse(GRAFANA_RANGES.sub("5m", text))
        except ValueError as e:
            return [f"{where}: not PromQL ({e}): {text}"], frozenset()
        problems: list[str] = []

        def visit(node: pq.Expr) -> None:
            if isinstance(node, pq.VectorSelector):
                problems.extend(self._selector(where, node))
            elif isinstance(node, pq.AggregateExpr) and node.modifier is not None:
                inner = self.output(node.expr) or frozenset()
                problems.extend(_absent(where, node.modifier.labels, inner, str(node.op)))
            elif isinstance(node, pq.BinaryExpr) and node.modifier is not None:
                both = (self.output(node.lhs) or frozenset()) | (
                    self.output(node.rhs) or frozenset()
                )
                matching = node.modifier.matching
                names = (matching.labels if matching else []) + (node.modifier.group_labels or [])
                problems.extend(_absent(where, names, both, str(node.op)))

        pq.walk(tree, visit)
        return problems, self.output(tree) or frozenset()

    def _selector(self, where: str, node: pq.VectorSelector) -> Iterator[str]:
        name = selector_name(node)
        if name not in self.series:
            yield f"{where}: the agent exports no {name}"
            return
        labels = self.series[name] | TARGET_LABELS
        for matcher in chain(node.matchers.matchers, *node.matchers.or_matchers):
            if matcher.name == "__name__":
                continue
            if matcher.name not in labels:
                yield f"{where}: {name} has no label {matcher.name} (it has {sorted(labels)})"
            elif matcher.name not in TARGET_LABELS:
                yield from self._values(where, name, matcher)

    def _values(self, where: str, name: str, matcher: pq.Matcher) -> Iterator[str]:
        if "$" in matcher.value:
            return  # a Grafana variable
        if matcher.op in (pq.MatchOp.Equal, pq.MatchOp.NotEqual):
            wanted = [matcher.value]
        elif PLAIN_ALTERNATIVES.fullmatch(matcher.value):
            wanted = matcher.value.split("|")
        else:
            return
        domain = self.known.values.get((name, matcher.name), frozenset())
        domain |= EVENTUAL_VALUES.get(matcher.name, frozenset())
        for value in wanted:
            if value not in domain:
                yield f"{where}: {name}{{{matcher.name}}} is never {value!r} ({sorted(domain)})"

    def output(self, node: pq.Expr) -> frozenset[str] | None:
        """The labels of what C{node} evaluates to (None: a scalar or a string)."""
        if isinstance(node, pq.VectorSelector):
            return self.series.get(selector_name(node), frozenset()) | TARGET_LABELS
        if isinstance(node, pq.MatrixSelector):
            return self.output(node.vector_selector)
        if isinstance(node, pq.ParenExpr | pq.UnaryExpr | pq.SubqueryExpr):
            return self.output(node.expr)
        if isinstance(node, pq.AggregateExpr):
            return self._aggregated(node)
        if isinstance(node, pq.Call):
            return self._called(node)
        if isinstance(node, pq.BinaryExpr):
            return self._combined(node)
        return None  # a number or a string

    def _aggregated(self, node: pq.AggregateExpr) -> frozenset[str]:
        inner = self.output(node.expr) or frozenset()
        if str(node.op) in ("topk", "bottomk"):
            return inner
        modifier = node.modifier
        if modifier is None:
            return frozenset()
        if modifier.type == pq.AggModifierType.By:
            return frozenset(modifier.labels)
        return inner - set(modifier.labels)

    def _called(self, node: pq.Call) -> frozenset[str] | None:
        name = node.func.name
        if node.func.return_type == pq.ValueType.Scalar:
            return None
        if name in ("vector", "absent", "absent_over_time"):
            return frozenset()
        if name == "histogram_quantile":
            return (self.output(node.args[1]) or frozenset()) - {"le"}
        if name == "label_replace":
            return (self.output(node.args[0]) or frozenset()) | {node.args[1].val}
        vectors = [self.output(a) for a in node.args if isinstance(a, pq.Expr)]
        return next((v for v in vectors if v is not None), frozenset())

    def _combined(self, node: pq.BinaryExpr) -> frozenset[str] | None:
        lhs, rhs = self.output(node.lhs), self.output(node.rhs)
        if lhs is None or rhs is None:
            return rhs if lhs is None else lhs  # with a scalar: the vector's labels
        op, modifier = str(node.op), node.modifier
        if op == "or":
            return lhs | rhs
        if op in ("and", "unless") or modifier is None:
            return lhs
        grouped = set(modifier.group_labels or ())
        if modifier.card == pq.VectorMatchCardinality.ManyToOne:
            return lhs | grouped
        if modifier.card == pq.VectorMatchCardinality.OneToMany:
            return rhs | grouped
        matching = modifier.matching
        if matching is not None and matching.type == pq.LabelModifierType.Include:
            return frozenset(matching.labels)  # one-to-one on (...): those labels only
        return lhs - set(matching.labels if matching else ())


def _absent(where: str, names: list[str], available: frozenset[str], op: str) -> list[str]:
    return [
        f"{where}: {op} names label {name}, which its operands do not have"
        for name in names
        if name not in available
    ]


# -- the files -----------------------------------------------------------------------------


def load_yaml(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def dashboard() -> dict[str, Any]:
    with open(DASHBOARD, encoding="utf-8") as f:
        loaded: dict[str, Any] = json.load(f)
        return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def rules(groups: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for group in groups["groups"]:
        yield from group["rules"]


def dashboard_problems(board: dict[str, Any], checker: Checker) -> list[str]:
    """Every metric, label and legend label of the dashboard's queries checked."""
    problems = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} {target['refId']}"
            found, labels = checker.check(where, target["expr"])
            problems += found
            for label in LEGEND_LABEL.findall(target.get("legendFormat", "")):
                if label not in labels:
                    problems.append(f"{where}: the legend names {label}, the result has not")
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            problems += variable_problems(variable, checker)
    return problems


def variable_problems(variable: dict[str, Any], checker: Checker) -> list[str]:
    """A label_values(selector, label) variable asks for an exported series and label."""
    query = variable["query"]
    text = query["query"] if isinstance(query, dict) else query
    where = f"variable {variable['name']}"
    match = LABEL_VALUES.fullmatch(text)
    if match is None:
        return [f"{where}: not label_values(selector, label): {text}"]
    found, labels = checker.check(where, match["selector"])
    if match["label"] not in labels:
        found.append(f"{where}: the selector's series have no label {match['label']}")
    return found


def rules_problems(groups: dict[str, Any], checker: Checker) -> list[str]:
    """Every rule's expression checked, its recorded series learnt, its annotations' labels."""
    problems = []
    for rule in rules(groups):
        name = rule.get("alert") or rule["record"]
        found, labels = checker.check(f"rule {name}", rule["expr"])
        problems += found
        if "record" in rule:
            checker.record(rule["record"], rule["expr"])
        for text in rule.get("annotations", {}).values():
            for label in ANNOTATION_LABEL.findall(text):
                if label not in labels:
                    problems.append(f"rule {name}: an annotation names {label}, not a label")
    return problems


# -- the tests -----------------------------------------------------------------------------


class MonitoringScenario(AgentTestCase):
    """An agent that has done what every panel and rule watches, and its scrapes."""

    def scrape(self) -> str:
        _, raw = self.request(self.ops, "GET", "/metrics")
        return raw.decode()

    def watched(self) -> Exported:
        """
        /metrics of an agent that deleted a dead run's leftover, registered, beat,
        synced, served a token and an endpoint, then was told of a termination.
        """
        leftover = self.registry.register(DEV_APP.app_instance_id, service("a", 60))
        self.registry.set_state(leftover.ser_instance_id, "SUSPENDED")
        self.build((spec("a"),), notify_url=NOTIFY, termination=True, sync_interval=10)
        self.start()
        self.advance(BEAT + 1, step=5)
        self.request(self.api, "GET", "/mep-agent/v1/token")
        self.request(self.api, "GET", "/mep-agent/v1/endpoint/a")
        running = self.scrape()
        self.terminate()
        return exported(running, self.scrape())

    def terminate(self) -> None:
        """The platform terminates the app and its notice reaches the agent."""
        d = self.mep.http.post(
            f"https://127.0.0.1:8443/_emulator/terminate/{DEV_APP.app_instance_id}", data=b"{}"
        )
        self.mep.flush()
        self.assertEqual(self.successResultOf(d).code, 200)
        (notice,) = [
            n["body"]
            for n in self.mep.notifier.delivered
            if n["body"].get("notificationType") == "AppTerminationNotification"
        ]
        response, _ = self.request(self.ops, "POST", NOTIFICATIONS, json=notice)
        self.assertEqual(response.code, 204)
        self.settle()

    def checker(self) -> Checker:
        return Checker(self.watched())


class ScenarioTests(MonitoringScenario):
    def test_the_scenario_shows_what_is_watched(self) -> None:
        """The scrapes hold samples of the series whose labels the checks need."""
        known = self.watched()
        for name, labels in (
            ("mep_agent_divergences_repaired_total", {"kind"}),
            ("mep_agent_terminating", {"operation_action", "phase"}),
            ("mep_agent_seconds_since_heartbeat", {"ser_name"}),
            ("mep_agent_api_requests_total", {"route", "code"}),
            ("mep_agent_mep_request_seconds_bucket", {"operation", "le"}),
        ):
            self.assertEqual(known.labels[name], labels)
        self.assertIn("phase", known.labels["mep_agent_objects"])


class DashboardTests(MonitoringScenario):
    def test_importable(self) -> None:
        """A dashboard Grafana imports: a uid, a Prometheus data source variable, pod."""
        board = dashboard()
        self.assertEqual((board["uid"], board["id"]), ("mep-agent", None))
        variables = {v["name"]: v for v in board["templating"]["list"]}
        self.assertEqual(
            (variables["datasource"]["type"], variables["datasource"]["query"]),
            ("datasource", "prometheus"),
        )
        self.assertIn("pod", variables)
        ids = [p["id"] for p in panels(board)]
        self.assertEqual(len(ids), len(set(ids)))
        for panel in panels(board):
            if panel["type"] != "row":
                self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])
                for target in panel["targets"]:  # the variables select, but for the platform
                    if target["legendFormat"] != "all agents":
                        self.assertIn('namespace=~"$namespace", pod=~"$pod"', target["expr"])

    def test_expressions_ask_for_exported_metrics_and_labels(self) -> None:
        """Every metric, label, matched value and legend label of every query exists."""
        self.assertEqual(dashboard_problems(dashboard(), self.checker()), [])

    def test_what_an_operator_watches(self) -> None:
        """The panels cover what docs/monitoring.md lists, the API's /token and /endpoint."""
        text = json.dumps(dashboard())
        for metric in (
            "mep_agent_services_wanted",
            "mep_agent_service_registered",
            "mep_agent_heartbeat_failures_total",
            "mep_agent_seconds_since_heartbeat",
            "mep_agent_liveness_interval_seconds",
            "mep_agent_token_obtained_timestamp_seconds",
            "mep_agent_token_requests_total",
            "mep_agent_syncs_total",
            "mep_agent_divergences_repaired_total",
            "mep_agent_mep_requests_total",
            "mep_agent_budget_requests_total",
            "mep_agent_budget_paused_seconds",
            "mep_agent_budget_queued",
            "mep_agent_objects",
            "mep_agent_terminating",
            "mep_agent_api_requests_total",
        ):
            self.assertIn(metric, text)
        self.assertIn('status=~\\"429|503\\"', text)
        self.assertIn('route=~\\"token|endpoint\\"', text)


class RulesTests(MonitoringScenario):
    def test_one_rule_set_in_two_forms(self) -> None:
        """The PrometheusRule's spec is the plain rules file, rule for rule."""
        resource = load_yaml(RULE_RESOURCE)
        self.assertEqual(
            (resource["apiVersion"], resource["kind"]),
            ("monitoring.coreos.com/v1", "PrometheusRule"),
        )
        self.assertEqual(resource["spec"], load_yaml(RULES_FILE))

    def test_rules_ask_for_exported_metrics_and_labels(self) -> None:
        """Every metric, label, matched value and annotation label of every rule exists."""
        self.assertEqual(rules_problems(load_yaml(RULES_FILE), self.checker()), [])

    def test_the_alerts_of_the_issue(self) -> None:
        """Each alert docs/monitoring.md lists is there, with a severity, summary, description."""
        alerts = {r["alert"]: r for r in rules(load_yaml(RULES_FILE)) if "alert" in r}
        for name in (
            "MepAgentServiceNotRegistered",
            "MepAgentMepUnreachable",
            "MepAgentSyncFailing",
            "MepAgentTokenExpiring",
            "MepAgentRepairsRecurring",
            "MepAgentNearGatewayLimit",
            "MepAgentThrottled",
            "MepAgentStateNotPersistent",
        ):
            self.assertIn(name, alerts)
        self.assertEqual(alerts["MepAgentServiceNotRegistered"]["for"], "5m")
        self.assertEqual(alerts["MepAgentStateNotPersistent"]["labels"]["severity"], "info")
        for name, alert in alerts.items():
            self.assertIn(alert["labels"]["severity"], SEVERITIES, name)
            self.assertEqual(set(alert["annotations"]), {"summary", "description"}, name)
            if "for" in alert:
                pq.parse_duration(alert["for"])

    def test_the_gateway_limit_is_set_once(self) -> None:
        """Kong's 1,000 a minute and the fractions are recorded once, used by the alerts."""
        recorded = {r["record"]: r["expr"] for r in rules(load_yaml(RULES_FILE)) if "record" in r}
        self.assertEqual(recorded["mep_agent:gateway_limit_per_minute"], "vector(1000)")
        self.assertEqual(recorded["mep_agent:gateway_agent_fraction"], "vector(0.5)")
        text = json.dumps(load_yaml(RULES_FILE))
        self.assertEqual(text.count("1000"), 1)


class PromtoolTests(SynchronousTestCase):
    def promtool(self) -> str:
        found = os.environ.get("PROMTOOL") or shutil.which("promtool")
        if not found:
            raise SkipTest("no promtool (PATH or PROMTOOL); promql-parser checked the rules")
        return found

    def test_promtool_checks_both_forms(self) -> None:
        """promtool check rules takes the plain file and the PrometheusRule's spec."""
        promtool = self.promtool()
        spec_file = self.mktemp() + ".yml"
        with open(spec_file, "w", encoding="utf-8") as f:
            yaml.safe_dump(load_yaml(RULE_RESOURCE)["spec"], f)
        for path in (RULES_FILE, spec_file):
            run = subprocess.run(
                [promtool, "check", "rules", path], capture_output=True, text=True, check=False
            )
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)

    def test_alerts_fire_as_documented(self) -> None:
        """promtool's unit tests: each alert fires on its series, and only there."""
        run = subprocess.run(
            [self.promtool(), "test", "rules", ALERT_TESTS],
            capture_output=True,
            text=True,
            check=False,
        )
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)


class ControlTests(MonitoringScenario):
    """The checks fail where they should: misspelt names, labels and values are found."""

    def test_misspelt_dashboard(self) -> None:
        """A misspelt metric, label, legend label, value, and bad syntax: each reported."""
        text, known = json.dumps(dashboard()), self.watched()
        for right, wrong, reported in (
            ("mep_agent_seconds_since_heartbeat{", "mep_agent_second_since_heartbeat{", "no "),
            ("by (namespace, pod, ser_name)", "by (namespace, pod, sername)", "sername"),
            ("{{pod}} {{ser_name}} sent", "{{pod}} {{service}} sent", "service"),
            ('status=~\\"429|503\\"', 'status=~\\"429|530\\"', "'530'"),
            ('route=~\\"token|endpoint\\"', 'route=~\\"token|endpoints\\"', "'endpoints'"),
            ("[$__rate_interval]))", "[$__rate_interval])", "not PromQL"),
        ):
            self.assertIn(right, text)
            board = json.loads(text.replace(right, wrong, 1))
            problems = dashboard_problems(board, Checker(known))
            self.assertTrue(any(reported in p for p in problems), (wrong, problems))

    def test_misspelt_rules(self) -> None:
        """A misspelt metric, matcher label, grouping label, annotation label: each reported."""
        text, known = json.dumps(load_yaml(RULES_FILE)), self.watched()
        for right, wrong, reported in (
            ("mep_agent_state_persistent ==", "mep_agent_state_persisted ==", "no "),
            ('{state!~\\"valid|stopped\\"}', '{status!~\\"valid|stopped\\"}', "no label"),
            ('{state!~\\"valid|stopped\\"}', '{state!~\\"valid|stoped\\"}', "'stoped'"),
            ("ignoring (ser_name, operation_action,", "ignoring (ser, operation_action,", "ser"),
            ("{{ $labels.kind }}", "{{ $labels.kinds }}", "kinds"),
            ("without (operation, status)", "without (operations, status)", "operations"),
        ):
            self.assertIn(right, text)
            groups = json.loads(text.replace(right, wrong, 1))
            problems = rules_problems(groups, Checker(known))
            self.assertTrue(any(reported in p for p in problems), (wrong, problems))
