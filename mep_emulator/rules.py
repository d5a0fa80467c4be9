"""
mepserver's request validation (docs/protocol.md, "Registration, liveness and their
answers"), as the emulator applies it.

Unlike the agent's strict YAML schema, mepserver ignores unknown fields, fills defaults,
and distinguishes a JSON type mismatch (internal status 4, "unmarshal request body error")
from a rule violation (status 14, "request param validation failed").

The rule tables repeat some of mep_agent.config.model's on purpose: the emulator is what the
agent is tested against, so the two must not share the code that could be wrong in both.
"""

from __future__ import annotations

import re
from typing import Any, cast

SER_NAME = re.compile(r"^[a-zA-Z0-9]*$|^[a-zA-Z0-9][a-zA-Z0-9_-]*[a-zA-Z0-9]$")
ID = re.compile(r"^[A-Za-z0-9-]+$")
PROTOCOL = re.compile(r"^[A-Za-z0-9_.-]+$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TRANSPORT_TYPES = {
    "REST_HTTP",
    "MB_TOPIC_BASED",
    "MB_ROUTING",
    "MB_PUBSUB",
    "RPC",
    "RPC_STREAMING",
    "WEBSOCKET",
}
LOCALITIES = {"MEC_SYSTEM", "MEC_HOST", "NFVI_POP", "ZONE", "ZONE_GROUP", "NFVI_NODE"}
GRANT_TYPES = {
    "OAUTH2_AUTHORIZATION_CODE",
    "OAUTH2_IMPLICIT_GRANT",
    "OAUTH2_RESOURCE_OWNER",
    "OAUTH2_CLIENT_CREDENTIALS",
}
STATES = {"ACTIVE", "INACTIVE", "SUSPENDED"}


class Rejected(Exception):
    """
    A request mepserver refuses: its internal code and detail, and the field at fault when
    one is (mepserver's detail never names it; the emulator's tests do).
    """

    def __init__(self, code: int, title: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail if field is None else f"{detail}: {field}")
        self.code = code
        self.title = title
        self.detail = detail


def type_error(field: str) -> Rejected:
    """mepserver's answer to a field of the wrong type (status 4)."""
    return Rejected(4, "Bad Request", "unmarshal request body error", field)


def invalid(field: str) -> Rejected:
    """
    mepserver's answer to a field breaking a rule (status 14): the detail is the same for
    every rule (mp1/plans/svc_register.go, ParseBody).
    """
    return Rejected(14, "Bad Request", "request param validation failed", field)


def _str(
    obj: dict[str, Any],
    key: str,
    where: str,
    max_len: int | None = None,
    pattern: re.Pattern[str] | None = None,
    required: bool = False,
    choices: set[str] | None = None,
) -> None:
    value = obj.get(key)
    if value is None:
        if required:
            raise invalid(f"{where}{key} required")
        return
    if not isinstance(value, str):
        raise type_error(f"{where}{key}")
    if required and value == "":
        raise invalid(f"{where}{key} required")
    if value == "" and not required:
        return
    if max_len is not None and len(value) > max_len:
        raise invalid(f"{where}{key} too long")
    if pattern is not None and not pattern.search(value):
        raise invalid(f"{where}{key} pattern")
    if choices is not None and value not in choices:
        raise invalid(f"{where}{key} oneof")


def _object(obj: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise type_error(f"{where}{key}")
    return value


def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise type_error(f"{where}{key}")
    return value


def is_uri(value: Any) -> bool:
    """go-playground's 'uri': url.ParseRequestURI accepts it (absolute URI or path)."""
    return (
        isinstance(value, str)
        and not re.search(r"[\x00-\x20\x7f]", value)
        and bool(re.match(r"^([A-Za-z][A-Za-z0-9+.-]*:|/)", value))
    )


def _category(cat: dict[str, Any], where: str) -> None:
    if cat.get("href") not in (None, "") and not is_uri(cat.get("href")):
        raise invalid(f"{where}href uri")
    _str(cat, "id", where, 64, ID)
    _str(cat, "name", where, 128, SER_NAME)
    _str(cat, "version", where, 32)


def service_info(body: Any) -> dict[str, Any]:
    """Validate a registration body; return it with mepserver's defaults applied."""
    if not isinstance(body, dict):
        raise Rejected(1, "Bad Request", "check Param failed")
    body = dict(body)
    for flag in ("consumedLocalOnly", "isLocal"):
        if body.get(flag) is None:
            body[flag] = True
        elif not isinstance(body[flag], bool):
            raise type_error(flag)
    if body.get("scopeOfLocality") is None:
        body["scopeOfLocality"] = "MEC_HOST"
    interval = body.get("livenessInterval", 0)
    if interval is None:
        interval = 0
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise type_error("livenessInterval")
    if interval < 0:
        raise type_error("livenessInterval")  # a negative number does not fit Go's uint32
    _str(body, "serName", "", 128, SER_NAME, required=True)
    _str(body, "version", "", 32, required=True)
    _str(body, "state", "", choices={"ACTIVE", "INACTIVE"}, required=True)
    _str(body, "serializer", "", choices={"JSON", "XML", "PROTOBUF3"}, required=True)
    _str(body, "scopeOfLocality", "", choices=LOCALITIES)
    _str(body, "transportId", "", 64, ID)
    category = _object(body, "serCategory", "")
    if category is not None:
        _category(category, "serCategory.")
    transport = _object(body, "transportInfo", "")
    if transport is not None:
        _str(transport, "id", "transportInfo.", 64, ID)
        _str(transport, "name", "transportInfo.", 128, SER_NAME)
        _str(transport, "description", "transportInfo.", 128)
        _str(transport, "type", "transportInfo.", choices=TRANSPORT_TYPES)
        _str(transport, "protocol", "transportInfo.", 32, PROTOCOL)
        _str(transport, "version", "transportInfo.", 32)
        endpoint = _object(transport, "endpoint", "transportInfo.")
        if endpoint is not None:
            for uri in _list(endpoint, "uris", "transportInfo.endpoint."):
                if not isinstance(uri, str):
                    raise type_error("transportInfo.endpoint.uris")
                if not is_uri(uri):
                    raise invalid("transportInfo.endpoint.uris uri")
            _list(endpoint, "addresses", "transportInfo.endpoint.")
        security = _object(transport, "security", "transportInfo.")
        oauth = _object(security, "oAuth2Info", "transportInfo.security.") if security else None
        if oauth is not None:
            # omitempty,max=4,min=1,dive,oneof=...: null passes, [] does not, and neither
            # does [""], mepserver's own presentation of no grant types (mepserver.py)
            grants = _list(oauth, "grantTypes", "oAuth2Info.")
            if oauth.get("grantTypes") is not None and (
                not 1 <= len(grants) <= 4 or any(g not in GRANT_TYPES for g in grants)
            ):
                raise invalid("oAuth2Info.grantTypes")
            token_endpoint = oauth.get("tokenEndpoint")
            if token_endpoint not in (None, "") and not is_uri(token_endpoint):
                raise invalid("oAuth2Info.tokenEndpoint uri")
    return cast(dict[str, Any], body)


def subscription(body: Any) -> dict[str, Any]:
    """Validate a SerAvailabilityNotificationSubscription body."""
    if not isinstance(body, dict):
        raise Rejected(1, "Bad Request", "check Param failed")
    _str(
        body,
        "subscriptionType",
        "",
        required=True,
        choices={
            "SerAvailabilityNotificationSubscription",
            "AppTerminationNotificationSubscription",
        },
    )
    _str(body, "callbackReference", "", required=True)
    if not is_uri(body["callbackReference"]):
        raise invalid("callbackReference uri")
    criteria = _object(body, "filteringCriteria", "") or {}
    for name in _list(criteria, "serNames", "filteringCriteria."):
        if not isinstance(name, str):
            raise type_error("filteringCriteria.serNames")
        if len(name) > 128 or not SER_NAME.search(name):
            raise invalid("filteringCriteria.serNames")
    for instance_id in _list(criteria, "serInstanceIds", "filteringCriteria."):
        if not isinstance(instance_id, str):
            raise type_error("filteringCriteria.serInstanceIds")
        if len(instance_id) > 32 or not ID.search(instance_id):
            raise invalid("filteringCriteria.serInstanceIds")
    for state in _list(criteria, "states", "filteringCriteria."):
        if state not in STATES:
            raise invalid("filteringCriteria.states")
    for category in _list(criteria, "serCategories", "filteringCriteria."):
        if not isinstance(category, dict):
            raise type_error("filteringCriteria.serCategories")
        _category(category, "filteringCriteria.serCategories.")
    return body
