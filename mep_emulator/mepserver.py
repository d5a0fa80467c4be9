"""
How EdgeGallery's mepserver (EdgeGallery/mep 971f2d0, common/models/serviceinfo.go) keeps a
ServiceInfo and gives it back, for the EdgeGallery face's setting C{presentation:
mepserver}: it flattens the body into a service-center instance's string properties, makes a
Kong gateway service and route per endpoint URI, and answers reads from those properties --
the endpoint as the gateway's URIs, empty members as Go's zero values, the grant types split
on a comma they were not joined with. Its 201 and PUT answers are instead the request body as
Go decoded it. The registry keeps the properties and the routes; the face decides when to
show what (app.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

#: serviceGatewayURIFormatString with mepserver's app.conf (http_protocol https, ssl_enabled:
#: port 8443): every endpoint read back is the gateway's URI for the route mepserver made.
GATEWAY = "https://mep-api-gw.mep:8443/"
#: mepserver joins grant types with a full-width comma and splits them on an ASCII one.
JOIN = "\uff0c"
NO_ROUTES: dict[str, str] = {}


def route_name(ser_name: str) -> str:
    """
    A gateway service's (and route's) name: the serName and the first 20 hex digits of a
    version-1 UUID (generateServiceIdAndName), e.g. C{egtest-alpha6764edebf13711f1b723}.
    """
    return ser_name + secrets.token_hex(10)


def endpoint_uris(body: Mapping[str, Any]) -> list[str] | None:
    """
    The URIs mepserver routes through the gateway (registerEndpoints): the endpoint's
    C{uris}, else one C{{protocol}://{host}:{port}/} per address (so an address-only service
    gets a gateway URI too, whatever Kong makes of it); None for an C{alternative} endpoint,
    [] for none.
    """
    transport = _object(body.get("transportInfo"))
    endpoint = _object(transport.get("endpoint"))
    uris = [u for u in endpoint.get("uris") or [] if isinstance(u, str)]
    if uris:
        return uris
    addresses = [a for a in endpoint.get("addresses") or [] if isinstance(a, dict)]
    if addresses:
        protocol = transport.get("protocol") or ""
        return [f"{protocol}://{a.get('host', '')}:{a.get('port', 0)}/" for a in addresses]
    if endpoint.get("alternative") is not None:
        return None
    return []


def routes(
    body: Mapping[str, Any],
    before: Mapping[str, str] | None,
) -> dict[str, str]:
    """
    The gateway routes of a service, by endpoint URI, after a registration (C{before} None)
    or an update (compareEndPointsWithDB): a URI the service already had keeps its route; any
    other gets a new one, and the routes of URIs no longer named are deleted. Sending back
    the gateway URI a read showed is such a new URI: every such update renames the route.
    An update with an C{alternative} endpoint leaves the routes as they were; one with no
    endpoint deletes them.
    """
    uris = endpoint_uris(body)
    if uris is None:
        return dict(before or NO_ROUTES)
    kept = before or NO_ROUTES
    return {uri: kept.get(uri) or route_name(str(body.get("serName", ""))) for uri in uris}


def properties(
    body: Mapping[str, Any], interval: int, before: Mapping[str, str] | None = None
) -> dict[str, str]:
    """
    The instance properties mepserver writes for C{body} (GenerateRegisterInstance): an
    update starts from the instance's present ones, and a member now empty does not clear
    them (UpdatePropertiesMap writes non-empty values only).
    """
    out = dict(before or {})

    def put(key: str, value: Any) -> None:
        if isinstance(value, str) and value:
            out[key] = value

    out["serName"] = str(body.get("serName") or "")
    out["version"] = str(body.get("version") or "")
    category = _object(body.get("serCategory"))
    for member in ("href", "id", "name", "version"):
        put(f"serCategory/{member}", category.get(member))
    put("transportId", body.get("transportId"))
    put("serializer", body.get("serializer"))
    put("ScopeOfLocality", body.get("scopeOfLocality"))
    out["ConsumedLocalOnly"] = "true" if body.get("consumedLocalOnly") else "false"
    out["IsLocal"] = "true" if body.get("isLocal") else "false"
    out["livenessInterval"] = str(interval)
    put("mecState", body.get("state"))
    transport = _object(body.get("transportInfo"))
    for member in ("id", "name", "description", "type", "protocol", "version"):
        put(f"transportInfo/{member}", transport.get(member))
    oauth = _object(_object(transport.get("security")).get("oAuth2Info"))
    grants = oauth.get("grantTypes")
    if isinstance(grants, list):
        put(GRANTS, JOIN.join(str(g) for g in grants))
    put(TOKEN_ENDPOINT, oauth.get("tokenEndpoint"))
    return out


GRANTS = "transportInfo/security/oAuth2Info/grantTypes"
TOKEN_ENDPOINT = "transportInfo/security/oAuth2Info/tokenEndpoint"


def read_back(
    ser_instance_id: str,
    state: str,
    interval: int,
    app_instance_id: str,
    liveness: str,
    props: Mapping[str, str],
    gateway: Mapping[str, str],
) -> dict[str, Any]:
    """
    What a read answers (GET of the app's services, of one, discovery): the ServiceInfo
    rebuilt from the properties (FromServiceInstance), its endpoint the gateway URI of each
    route (addresses and alternative null), grantTypes the stored text split on "," (so
    C{[""]} when none were given), false booleans left out, C{_links.appInstanceId} the app.
    """
    uris = [GATEWAY + name for name in gateway.values()]
    out: dict[str, Any] = {
        "serInstanceId": ser_instance_id,
        "serName": props.get("serName", ""),
        "serCategory": {m: props.get(f"serCategory/{m}", "") for m in CATEGORY},
        "version": props.get("version", ""),
        "state": state,
        "transportId": props.get("transportId", ""),
        "transportInfo": {
            **{m: props.get(f"transportInfo/{m}", "") for m in TRANSPORT},
            "endpoint": {"uris": uris or None, "addresses": None, "alternative": None},
            "security": {
                "oAuth2Info": {
                    "grantTypes": props.get(GRANTS, "").split(","),
                    "tokenEndpoint": props.get(TOKEN_ENDPOINT, ""),
                }
            },
        },
        "serializer": props.get("serializer", ""),
        "scopeOfLocality": props.get("ScopeOfLocality", ""),
        "consumedLocalOnly": props.get("ConsumedLocalOnly") == "true",
        "isLocal": props.get("IsLocal") == "true",
        "livenessInterval": interval,
        "_links": {
            "self": {"liveness": liveness} if interval else {},
            "appInstanceId": app_instance_id,
        },
    }
    return _omit_false(out)


def answer(
    body: Mapping[str, Any], ser_instance_id: str, interval: int, liveness: str
) -> dict[str, Any]:
    """
    What a registration (201) or an update (200) answers: the request body as Go decoded it
    into mepserver's ServiceInfo (unknown members gone, every other one present with Go's
    zero value: "" and null), the platform's id and interval, C{_links} as the body gave them
    (C{appInstanceId} "" when it gave none) with the liveness link.
    """
    category = _object(body.get("serCategory"))
    transport = _object(body.get("transportInfo"))
    endpoint = _object(transport.get("endpoint"))
    oauth = _object(_object(transport.get("security")).get("oAuth2Info"))
    links = _object(body.get("_links"))
    given = _object(links.get("self")).get("liveness")
    info: dict[str, Any] = {
        **{m: _text(transport.get(m)) for m in TRANSPORT},
        "endpoint": {
            "uris": endpoint.get("uris"),
            "addresses": endpoint.get("addresses"),
            "alternative": endpoint.get("alternative"),
        },
        "security": {
            "oAuth2Info": {
                "grantTypes": oauth.get("grantTypes"),
                "tokenEndpoint": _text(oauth.get("tokenEndpoint")),
            }
        },
    }
    if transport.get("implSpecificInfo") is not None:
        info["implSpecificInfo"] = transport["implSpecificInfo"]
    self_link = {"liveness": liveness} if interval else {}
    if not interval and isinstance(given, str) and given:
        self_link = {"liveness": given}
    out: dict[str, Any] = {
        "serInstanceId": ser_instance_id,
        "serName": _text(body.get("serName")),
        "serCategory": {m: _text(category.get(m)) for m in CATEGORY},
        "version": _text(body.get("version")),
        "state": _text(body.get("state")),
        "transportId": _text(body.get("transportId")),
        "transportInfo": info,
        "serializer": _text(body.get("serializer")),
        "scopeOfLocality": _text(body.get("scopeOfLocality")),
        "consumedLocalOnly": body.get("consumedLocalOnly") is True,
        "isLocal": body.get("isLocal") is True,
        "livenessInterval": interval,
        "_links": {"self": self_link, "appInstanceId": _text(links.get("appInstanceId"))},
    }
    return _omit_false(out)


CATEGORY = ("href", "id", "name", "version")
TRANSPORT = ("id", "name", "description", "type", "protocol", "version")


def _omit_false(out: dict[str, Any]) -> dict[str, Any]:
    """consumedLocalOnly and isLocal are omitempty: false is left out."""
    return {k: v for k, v in out.items() if v is not False}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
