"""
What the agent registers: services (ETSI ServiceInfo) and availability subscriptions,
parsed from app_instance_info.yaml and validated with mepserver's own rules
(docs/protocol.md, "Registration, liveness and their answers"), so that the MEP never
has to reject them.
"""

from __future__ import annotations

from typing import Any

import yaml
from attrs import frozen

from mep_agent.config import schema as s
from mep_agent.config.errors import ConfigError

MAX_SERVICES = 50  # mepserver's ServicesMaxCount per app instance
MAX_SUBSCRIPTIONS = 50

SER_NAME_PATTERN = r"[a-zA-Z0-9]*|[a-zA-Z0-9][a-zA-Z0-9_-]*[a-zA-Z0-9]"
_ID_PATTERN = r"[A-Za-z0-9-]+"
_ser_name = s.text(128, SER_NAME_PATTERN)
_id = s.text(64, _ID_PATTERN)
_states = ("ACTIVE", "INACTIVE", "SUSPENDED")

_category = s.record(
    {"href": s.uri, "id": _id, "name": _ser_name, "version": s.text(32)},
)

_endpoint = s.record(
    {
        "uris": s.list_of(s.uri),
        "addresses": s.list_of(
            s.record(
                {"host": s.text(253), "port": s.integer(0, 65535)},
                required=frozenset({"host", "port"}),
            )
        ),
        "alternative": s.anything,
    }
)

_transport_fields = {
    "id": _id,
    "name": _ser_name,
    "description": s.text(128),
    "type": s.one_of(
        "REST_HTTP",
        "MB_TOPIC_BASED",
        "MB_ROUTING",
        "MB_PUBSUB",
        "RPC",
        "RPC_STREAMING",
        "WEBSOCKET",
    ),
    "protocol": s.text(32, r"[A-Za-z0-9_.-]+"),
    "version": s.text(32),
    "endpoint": _endpoint,
    "security": s.record(
        {
            "oAuth2Info": s.record(
                {
                    "grantTypes": s.list_of(
                        s.one_of(
                            "OAUTH2_AUTHORIZATION_CODE",
                            "OAUTH2_IMPLICIT_GRANT",
                            "OAUTH2_RESOURCE_OWNER",
                            "OAUTH2_CLIENT_CREDENTIALS",
                        ),
                        min_items=1,
                        max_items=4,
                    ),
                    "tokenEndpoint": s.uri,
                }
            )
        }
    ),
    "implSpecificInfo": s.anything,
}
_transport_info = s.record(_transport_fields)

_service_fields = {
    "serName": _ser_name,
    "serCategory": _category,
    "version": s.text(32),
    "state": s.one_of("ACTIVE", "INACTIVE"),
    "transportId": _id,
    "transportInfo": _transport_info,
    "serializer": s.one_of("JSON", "XML", "PROTOBUF3"),
    "scopeOfLocality": s.one_of(
        "MEC_SYSTEM", "MEC_HOST", "NFVI_POP", "ZONE", "ZONE_GROUP", "NFVI_NODE"
    ),
    "consumedLocalOnly": s.boolean,
    "isLocal": s.boolean,
    "livenessInterval": s.integer(0),
    "_links": s.mapping_of_anything,
}
_service_required = frozenset({"serName", "version", "state", "serializer"})
_service_info = s.record(_service_fields, required=_service_required, aliases={"links": "_links"})

# MEC 011 v2.2.1 ServiceInfoPost (docs/protocol.md, "MEC 011 v2.2.1 platforms"): SerName
# is a plain string, every TransportInfo member but description and implSpecificInfo is
# required, _links and serInstanceId are read-only, transportId and transportInfo exclude
# each other.
_etsi_ser_name = s.text(256, r"[^\x00-\x1f\x7f]+")
_etsi_category = s.record(
    {"href": s.uri, "id": _id, "name": _etsi_ser_name, "version": s.text(32)},
    required=frozenset({"href", "id", "name", "version"}),
)
_etsi_transport_info = s.record(
    dict(_transport_fields, id=s.text(256, r"[^\x00-\x1f\x7f]+"), name=_etsi_ser_name),
    required=frozenset({"id", "name", "type", "protocol", "version", "endpoint", "security"}),
)
_etsi_service_fields = {k: v for k, v in _service_fields.items() if k != "_links"} | {
    "serName": _etsi_ser_name,
    "serCategory": _etsi_category,
    "transportInfo": _etsi_transport_info,
}
_etsi_service_record = s.record(_etsi_service_fields, required=_service_required)


def _etsi_service_info(path: str, value: Any) -> dict[str, Any]:
    checked: dict[str, Any] = _etsi_service_record(path, value)
    if ("transportId" in checked) == ("transportInfo" in checked):
        raise ConfigError(
            f"{path}.transportInfo" if path else "transportInfo",
            "give exactly one of transportId and transportInfo (ServiceInfoPost's oneOf)",
        )
    return checked


def _subscription(ser_name: s.Check, category: s.Check) -> s.Check:
    return s.record(
        {
            "subscriptionType": s.one_of("SerAvailabilityNotificationSubscription"),
            "callbackReference": s.text(2048),
            "_links": s.mapping_of_anything,
            "filteringCriteria": s.record(
                {
                    "serInstanceIds": s.list_of(s.text(32, _ID_PATTERN)),
                    "serNames": s.list_of(ser_name),
                    "serCategories": s.list_of(category),
                    "states": s.list_of(s.one_of(*_states)),
                    "isLocal": s.boolean,
                }
            ),
        },
        required=frozenset({"callbackReference"}),
        aliases={"links": "_links"},
    )


def _document(service: s.Check, ser_name: s.Check, category: s.Check) -> s.Check:
    return s.record(
        {
            "serviceInfoPosts": s.list_of(service, max_items=MAX_SERVICES),
            "serAvailabilityNotificationSubscriptions": s.list_of(
                _subscription(ser_name, category), max_items=MAX_SUBSCRIPTIONS
            ),
        }
    )


_EDGEGALLERY_DOCUMENT = _document(_service_info, _ser_name, _category)
_ETSI_DOCUMENT = _document(_etsi_service_info, _etsi_ser_name, _etsi_category)


@frozen
class ServiceSpec:
    """One service to register: its name and the exact JSON body sent to the MEP."""

    name: str
    body: dict[str, Any]

    @property
    def wants_heartbeat(self) -> bool:
        """Whether the service asks the MEP for heartbeats."""
        return bool(self.body.get("livenessInterval"))


@frozen
class SubscriptionSpec:
    """One availability subscription as written in the YAML."""

    index: int
    body: dict[str, Any]

    @property
    def callback_reference(self) -> str:
        """The callback as written in the YAML."""
        return str(self.body["callbackReference"])

    @property
    def callback_is_uri(self) -> bool:
        """Whether the callback is a URI the MEP can call."""
        try:
            s.uri("callbackReference", self.callback_reference)
        except ConfigError:
            return False
        return True


@frozen
class AppInstanceInfo:
    """Everything app_instance_info.yaml asks for."""

    services: tuple[ServiceSpec, ...]
    subscriptions: tuple[SubscriptionSpec, ...]


# LibYAML's safe loader when PyYAML was built with it (the wheels are): the same documents
# and errors as the pure-Python one, about ten times faster; fifty services took 50 ms of
# the agent's start-up with the pure-Python loader (docs/benchmarks.md).
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# Longer than any configuration needs (fifty services take about 40 KiB): a longer text is
# refused before it is parsed.
MAX_YAML_CHARACTERS = 1024 * 1024
# Nodes a document may hold once its aliases are expanded; fifty services take about 2,000.
MAX_YAML_NODES = 100_000


def load_yaml(where: str, text: str) -> Any:
    """
    Parse YAML text, turning a syntax error into one line that names the file. Anchors and
    aliases may reuse a block, but a document that would expand past L{MAX_YAML_NODES} nodes
    (a kilobyte of nested aliases, "billion laughs", expands to gigabytes once validated or
    sent) or that refers to itself is refused before anything is built from it.
    """
    if len(text) > MAX_YAML_CHARACTERS:
        raise ConfigError(where, f"longer than {MAX_YAML_CHARACTERS} characters")
    loader = SAFE_LOADER(text)
    try:
        node = loader.get_single_node()  # aliases are shared nodes here: nothing expanded yet
        if node is None:
            return None
        problem = _expansion_problem(node)
        if problem is not None:
            raise ConfigError(where, problem)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        position = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(where, f"invalid YAML: {position}{e.problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(where, f"invalid YAML: {e}") from None
    finally:
        loader.dispose()


def _expansion_problem(root: yaml.Node) -> str | None:
    """
    Why the document under C{root} is refused (see L{load_yaml}), or None. Counts the nodes
    it expands to depth first, each shared node once (memoised), so the count itself costs
    no expansion; a node met again on its own path is an alias to itself.
    """
    sizes: dict[int, int] = {}
    path = {id(root)}
    stack = [(root, iter(_children(root)))]
    while stack:
        node, children = stack[-1]
        for child in children:
            if id(child) in path:
                mark = child.start_mark
                return f"line {mark.line + 1}, column {mark.column + 1}: an alias refers to itself"
            if id(child) not in sizes:
                path.add(id(child))
                stack.append((child, iter(_children(child))))
                break
        else:
            stack.pop()
            path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[id(node)] > MAX_YAML_NODES:
                return (
                    f"expands to more than {MAX_YAML_NODES} YAML nodes through its aliases "
                    "(an alias bomb?)"
                )
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


#: What every refusal of a file that names no services says: the way to say "none".
NO_SERVICES_HINT = "to register no services write serviceInfoPosts: []"


def parse_app_instance_info(where: str, text: str, etsi: bool = False) -> AppInstanceInfo:
    """
    Validate app_instance_info.yaml text with mepserver's rules, or with MEC 011 v2.2.1's
    ServiceInfoPost when C{etsi}; ConfigError paths are YAML paths. The same rule holds at
    start, in --check and at reload: the file must name C{serviceInfoPosts}. An empty,
    blank or comment-only file, or one without that key, is refused (a file cut to 0 bytes
    must not start an agent with no services, nor deregister every service at reload);
    C{serviceInfoPosts: []} says "no services".
    """
    # Blank first: a tab alone is a YAML syntax error, and a blank file is not one.
    document = load_yaml(where, text) if text.strip() else None
    if document is None:
        raise ConfigError(where, f"is empty (or blank, or only comments); {NO_SERVICES_HINT}")
    try:
        parsed = (_ETSI_DOCUMENT if etsi else _EDGEGALLERY_DOCUMENT)("", document)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e.where}" if e.where else where, e.problem) from None
    if "serviceInfoPosts" not in document:  # a mapping now; a typo was named just above
        raise ConfigError(f"{where}: serviceInfoPosts", f"missing; {NO_SERVICES_HINT}")
    services = tuple(
        ServiceSpec(body["serName"], body) for body in parsed.get("serviceInfoPosts", [])
    )
    seen: set[str] = set()
    for i, service in enumerate(services):
        if service.name in seen:
            raise ConfigError(
                f"{where}: serviceInfoPosts[{i}].serName",
                f"{service.name!r} is already registered by an earlier entry",
            )
        seen.add(service.name)
    subscriptions = []
    for i, body in enumerate(parsed.get("serAvailabilityNotificationSubscriptions", [])):
        body.setdefault("subscriptionType", "SerAvailabilityNotificationSubscription")
        subscriptions.append(SubscriptionSpec(i, body))
    return AppInstanceInfo(services, tuple(subscriptions))
