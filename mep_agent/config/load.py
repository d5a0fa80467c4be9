"""
Configuration as a pure function: (command-line values, environment, a file reader)
-> a frozen AgentConfig, or a ConfigError naming the setting and the problem.

Precedence per setting: command line, then environment, then a *_FILE file (secrets),
then the default. Environment values may carry one pair of surrounding double quotes,
because the seed's Pod manifest writes them that way (value: '"8443"').
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen

from mep_agent.config import model
from mep_agent.config.errors import ConfigError
from mep_agent.config.settings import BY_KEY, Setting
from mep_agent.mp1 import links, tls
from mep_agent.mp1.credentials import Credentials, OAuth2Client
from mep_agent.mp1.dialect import DIALECTS, EDGEGALLERY, Dialect
from mep_agent.util.secret import Secret

ReadFile = Callable[[str], bytes]

#: What each credential must look like: (pattern, the rule in words). AK: mepauth's
#: Authorization header regex; SK: its provisioning rule.
CREDENTIAL_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "ak": (re.compile(r"[A-Za-z0-9_=+/]{20}"), "20 characters of A-Z a-z 0-9 _ + / ="),
    "sk": (re.compile(r"[A-Za-z0-9_=+/]{64}"), "64 characters of A-Z a-z 0-9 _ + / ="),
    "oauth2_client_secret": (re.compile(r"\S.{0,4095}", re.DOTALL), "not empty"),
}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_HTTP_URL = re.compile(r"https?://[^\s/?#]+(/\S*)?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_API_ROOT = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@frozen
class AgentConfig:
    """The agent's whole configuration, validated; secrets are L{Secret}s."""

    mep_host: str
    mep_port: int
    protocol: str  # "https" or "http"
    ca_pems: tuple[bytes, ...]
    ca_cert_domain_name: str | None
    ciphers: tuple[str, ...]
    credentials: Credentials
    enable_wait: bool
    app: model.AppInstanceInfo
    listen: str
    request_timeout: float
    app_conf_path: str
    app_instance_info_path: str
    ops_listen: str | None = None
    api_token: Secret | None = None
    heartbeat_method: str = "auto"
    confirm_ready: bool = True
    dialect: Dialect = EDGEGALLERY
    api_root: str = "/mep"
    auth: str = "aksk"
    notify_url: str | None = None
    discovery_ttl: float = 30.0
    discovery_stale: float = 300.0
    shutdown_timeout: float = 5.0
    oneshot_timeout: float = 120.0
    max_response_bytes: int = 1024 * 1024
    log_format: str = "text"
    reload_interval: float = 10.0
    app_notify_url: str | None = None
    mep_public_origins: tuple[links.Origin, ...] = ()
    #: (credential, file) for each credential read from a file: they are followed.
    credential_files: tuple[tuple[str, str], ...] = ()
    sync_interval: float = 60.0
    termination: str = "auto"
    termination_wait_app: bool = False
    max_connections: int = 1024
    max_connections_per_peer: int = 256
    header_timeout: float = 5.0
    access_log: bool = False
    app_instance_info_digest: str = ""
    log_level: str = "info"
    ca_cert_path: str | None = None

    @property
    def host_header(self) -> str:
        """The Host header sent to the MEP and signed: host, a colon and the port."""
        host = f"[{self.mep_host}]" if ":" in self.mep_host else self.mep_host
        return f"{host}:{self.mep_port}"

    @property
    def base_url(self) -> str:
        """The MEP's scheme, host and port."""
        return f"{self.protocol}://{self.host_header}"

    @property
    def handles_termination(self) -> bool:
        """Whether the agent subscribes to termination notices (it needs a route for them)."""
        return self.termination == "auto" and bool(self.notify_url) and self.enable_wait

    def summary(self) -> dict[str, Any]:
        """Everything an operator may see (no secrets), for --check and the start-up log."""
        return {
            "mep": self.base_url,
            "tls": None
            if self.protocol == "http"
            else {
                "ca_certificates": len(self.ca_pems),
                "expected_name": self.ca_cert_domain_name,
                "ciphers": list(self.ciphers),
                "minimum_version": "TLSv1.2",
            },
            "enable_wait": self.enable_wait,
            "listen": self.listen,
            "ops_listen": self.ops_listen,
            "api_token": self.api_token is not None,
            "request_timeout": self.request_timeout,
            "dialect": self.dialect.name,
            "api_root": self.api_root,
            "auth": self.auth,
            "oauth2_token_url": self.credentials.oauth2.token_url
            if self.credentials.oauth2
            else None,
            "heartbeat_method": self.heartbeat_method,
            "confirm_ready": self.confirm_ready,
            "notify_url": self.notify_url,
            "mep_public_origins": [
                f"{scheme}://{host}:{port}" for scheme, host, port in self.mep_public_origins
            ],
            "sync_interval": self.sync_interval,
            "termination": self.handles_termination,
            "termination_wait_app": self.termination_wait_app,
            "discovery_ttl": self.discovery_ttl,
            "discovery_stale": self.discovery_stale,
            "shutdown_timeout": self.shutdown_timeout,
            "oneshot_timeout": self.oneshot_timeout,
            "max_response_bytes": self.max_response_bytes,
            "app_conf": self.app_conf_path,
            "app_instance_info": self.app_instance_info_path,
            "services": [service.name for service in self.app.services],
            "subscriptions": len(self.app.subscriptions),
        }


def strip_quotes(value: str) -> str:
    """Remove one pair of surrounding double quotes, as the seed manifest writes them."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


class _Resolver:
    """Looks settings up in precedence order and remembers where each value came from."""

    def __init__(
        self, cli: Mapping[str, str | None], environ: Mapping[str, str], read_file: ReadFile
    ) -> None:
        self._cli = cli
        self._environ = environ
        self._read_file = read_file

    def get(self, key: str) -> tuple[str | None, str]:
        """(value, name of its source); empty values count as unset."""
        setting = BY_KEY[key]
        value = self._cli.get(key)
        if value:
            return value, f"--{setting.option}"
        if setting.env and self._environ.get(setting.env):
            value = strip_quotes(self._environ[setting.env])
            if value:
                return value, setting.env
        return setting.default, _name(setting)

    def read(self, where: str, path: str) -> bytes:
        try:
            return self._read_file(path)
        except OSError as e:
            raise ConfigError(where, f"cannot read {path}: {e.strerror or e}") from None

    def secret(self, key: str) -> tuple[str | None, str]:
        """A secret from the command line or environment, else from its *_FILE setting."""
        value, source = self.get(key)
        if value:
            return value, source
        path, file_source = self.get(f"{key}_file")
        if path:
            data = self.read(file_source, path)
            try:
                return data.decode("utf-8").strip(), file_source
            except UnicodeDecodeError:
                raise ConfigError(file_source, f"{path} is not UTF-8 text") from None
        return None, source


def _all_required_given(r: _Resolver, auth: str) -> None:
    """Every required setting that is missing, named in one error (not one per run)."""
    protocol = (r.get("protocol")[0] or "").lower()
    wanted = ["mep_ip", "app_instance_id"]
    if auth == "aksk":
        wanted += ["ak", "sk"]
    if auth == "oauth2":
        wanted += ["oauth2_token_url", "oauth2_client_id", "oauth2_client_secret"]
    if protocol == "https":
        wanted += ["ca_cert", "ca_cert_domain_name"]
    missing = []
    for key in wanted:
        given = r.get(key)[0]
        if not given and f"{key}_file" in BY_KEY:
            given = r.get(f"{key}_file")[0]
        if not given:
            missing.append(_name(BY_KEY[key]))
    if len(missing) > 1:
        raise ConfigError(
            "settings",
            f"missing or empty: {', '.join(missing)} (set each in the environment or with "
            "its option; twistd mep-agent --help lists them)",
        )


def _name(setting: Setting) -> str:
    return setting.env or f"--{setting.option}"


def _secret(resolver: _Resolver, key: str, pattern: re.Pattern[str], rule: str) -> Secret:
    value, source = resolver.secret(key)
    if not value:
        setting = BY_KEY[key]
        raise ConfigError(
            _name(setting),
            f"missing or empty (set {setting.env}, --{setting.option} or {setting.env}_FILE)",
        )
    if not pattern.fullmatch(value):
        # The message says what is wrong without repeating the value.
        raise ConfigError(source, f"must be {rule} (got {len(value)} characters)")
    return Secret(value)


def _host(value: str, where: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is None:
        labels = value.rstrip(".").split(".")
        if len(value) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
            raise ConfigError(where, f"{value[:60]!r} is neither an IP address nor a host name")
        return value
    if address.is_multicast or address.is_unspecified or str(address) == "255.255.255.255":
        raise ConfigError(where, f"{value} is not a unicast address")
    return str(address)


def _port(value: str, where: str) -> int:
    if not _PORT.fullmatch(value) or int(value) > 65535:
        raise ConfigError(where, f"{value[:20]!r} must be a port number from 1 to 65535")
    return int(value)


def parse_bool(value: str, where: str) -> bool:
    """true/false (also 1/0, yes/no, on/off); ConfigError naming C{where} otherwise."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(where, f"{value[:20]!r} must be true or false")


def _url(resolver: _Resolver, key: str) -> str | None:
    text, where = resolver.get(key)
    if text and not _HTTP_URL.fullmatch(text):
        raise ConfigError(where, f"{text[:60]!r} must be an http(s) URL")
    return text or None


def _boolean(resolver: _Resolver, key: str) -> bool:
    text, where = resolver.get(key)
    return parse_bool(text or "", where)


def _choice(resolver: _Resolver, key: str, choices: tuple[str, ...]) -> str:
    text, where = resolver.get(key)
    value = (text or "").lower()
    if value not in choices:
        raise ConfigError(where, f"{value[:20]!r} must be one of {', '.join(choices)}")
    return value


def _credential_files(resolver: _Resolver, auth: str) -> tuple[tuple[str, str], ...]:
    """The credentials of C{auth} that come from a file (no value given directly)."""
    keys = {"aksk": ("ak", "sk"), "oauth2": ("oauth2_client_secret",)}.get(auth, ())
    found = []
    for key in keys:
        if resolver.get(key)[0]:
            continue  # given directly: nothing to follow
        path = resolver.get(f"{key}_file")[0]
        if path:
            found.append((key, path))
    return tuple(found)


def _public_origins(resolver: _Resolver) -> tuple[links.Origin, ...]:
    text, where = resolver.get("mep_public_url")
    found = []
    for url in (text or "").split(","):
        if not url.strip():
            continue
        try:
            found.append(links.public_origin(url))
        except ValueError as e:
            raise ConfigError(where, f"{url.strip()[:60]!r} {e}") from None
    return tuple(found)


def _integer(resolver: _Resolver, key: str, minimum: int, maximum: int) -> int:
    text, where = resolver.get(key)
    value = (text or "").strip()
    if not value.isdigit() or not minimum <= int(value) <= maximum:
        raise ConfigError(
            where, f"{value[:20]!r} must be a whole number from {minimum} to {maximum}"
        )
    return int(value)


def parse_seconds(value: str, where: str, minimum: float, maximum: float) -> float:
    """A number of seconds within [minimum, maximum]; ConfigError otherwise."""
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(where, f"{value[:20]!r} must be a number of seconds") from None
    if not minimum <= seconds <= maximum:
        raise ConfigError(where, f"must be between {minimum:g} and {maximum:g} seconds")
    return seconds


def _ciphers(resolver: _Resolver, path: str, where: str, explicit: bool) -> tuple[str, ...]:
    try:
        data = resolver.read(where, path)
    except ConfigError:
        if explicit:
            raise
        return tls.DEFAULT_CIPHERS  # the file is optional at its default location
    document = model.load_yaml(path, data.decode("utf-8", "replace"))
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(path, "must be a mapping with the key sslCiphers")
    for key in document:
        if key != "sslCiphers":
            raise ConfigError(f"{path}: {key}", "unknown key (known keys: sslCiphers)")
    raw = document.get("sslCiphers")
    if raw is None:
        return tls.DEFAULT_CIPHERS
    if not isinstance(raw, str):
        raise ConfigError(
            f"{path}: sslCiphers", "must be a comma-separated string of IANA cipher suite names"
        )
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if not names:
        raise ConfigError(f"{path}: sslCiphers", "is empty")
    for name in names:
        if name not in tls.IANA_TO_OPENSSL:
            raise ConfigError(
                f"{path}: sslCiphers",
                f"unknown or unsupported cipher suite "
                f"{name[:60]!r} (supported: {', '.join(tls.IANA_TO_OPENSSL)})",
            )
    return names


def _file_path(resolver: _Resolver, key: str, conf_dir: str) -> tuple[str, str, bool]:
    value, source = resolver.get(key)
    default = BY_KEY[key].default or ""
    if value == default:
        return value.replace("<conf-dir>", conf_dir.rstrip("/") or "/"), source, False
    return value or "", source, True


def load(
    cli: Mapping[str, str | None],
    environ: Mapping[str, str],
    read_file: ReadFile,
    cwd: str | None = None,
) -> AgentConfig:
    """
    Build the agent's configuration; raise ConfigError on the first problem found (or
    on every missing required setting at once). C{cwd}: where relative paths start.
    """
    r = _Resolver(cli, environ, read_file)

    dialect_text, where = r.get("dialect")
    dialect = DIALECTS.get((dialect_text or "").lower())
    if dialect is None:
        raise ConfigError(where, f"{dialect_text!r} must be edgegallery or etsi")
    api_root, where = r.get("api_root")
    api_root = (api_root or "").rstrip("/")
    if api_root and not _API_ROOT.fullmatch(api_root):
        raise ConfigError(where, f"{api_root[:60]!r} must be a path such as /mep (or empty)")
    token_url, token_url_where = r.get("oauth2_token_url")
    if token_url and not _HTTP_URL.fullmatch(token_url):
        raise ConfigError(token_url_where, f"{token_url[:60]!r} must be an http(s) URL")
    auth, where = r.get("auth")
    auth = (auth or dialect.default_auth(token_url)).lower()
    if auth not in ("aksk", "oauth2", "none"):
        raise ConfigError(where, f"{auth[:20]!r} must be aksk, oauth2 or none")

    _all_required_given(r, auth)

    oauth2 = None
    if auth == "oauth2":
        if not token_url:
            raise ConfigError(token_url_where, "missing or empty (required with --auth oauth2)")
        client_id, source = r.secret("oauth2_client_id")
        if not client_id:
            raise ConfigError(source, "missing or empty (required with --auth oauth2)")
        client_secret, source = r.secret("oauth2_client_secret")
        if not client_secret:
            raise ConfigError(source, "missing or empty (required with --auth oauth2)")
        scope, _ = r.get("oauth2_scope")
        oauth2 = OAuth2Client(token_url, Secret(client_id), Secret(client_secret), scope)
    access_key = secret_key = None
    if auth == "aksk":
        access_key = _secret(r, "ak", *CREDENTIAL_RULES["ak"])
        secret_key = _secret(r, "sk", *CREDENTIAL_RULES["sk"])
    credentials = Credentials(
        access_key,
        secret_key,
        _secret(r, "app_instance_id", _UUID, "a lower-case UUID"),
        oauth2,
    )

    mep_ip, where = r.get("mep_ip")
    if not mep_ip:
        raise ConfigError(where, "missing or empty (the MEP API gateway's host or IP)")
    mep_host = _host(mep_ip, where)
    port_text, where = r.get("mep_port")
    mep_port = _port(port_text or "", where)

    protocol_text, where = r.get("protocol")
    protocol = (protocol_text or "").lower()
    if protocol not in ("https", "http"):
        raise ConfigError(where, f"{protocol_text!r} must be https or http")

    conf_dir, _ = r.get("conf_dir")
    app_conf_path, where, explicit = _file_path(r, "app_conf", conf_dir or ".")
    ciphers = _ciphers(r, app_conf_path, where, explicit)

    ca_pems: tuple[bytes, ...] = ()
    domain: str | None = None
    ca_path: str | None = None
    if protocol == "https":
        ca_path, where = r.get("ca_cert")
        if not ca_path:
            raise ConfigError(
                where,
                "missing or empty (the CA file that signs the MEP's "
                "certificate; required with https)",
            )
        try:
            ca_pems = tuple(tls.pem_certificates(r.read(where, ca_path)))
        except ValueError as e:
            raise ConfigError(where, f"{ca_path}: {e}") from None
        domain, where = r.get("ca_cert_domain_name")
        if not domain:
            raise ConfigError(
                where, "missing or empty (the name in the MEP's certificate; required with https)"
            )
        domain = _host(domain, where)

    wait_text, where = r.get("enable_wait")
    enable_wait = parse_bool(wait_text or "", where)

    listen, where = r.get("listen")
    if not listen:
        raise ConfigError(where, "must not be empty")

    timeout_text, where = r.get("request_timeout")
    request_timeout = parse_seconds(timeout_text or "", where, 0.1, 300)

    ops_listen, where = r.get("ops_listen")
    if not ops_listen:
        raise ConfigError(where, "must not be empty (use 'none' to turn it off)")
    api_token = None
    token_path, where = r.get("api_token_file")
    if token_path:
        text = r.read(where, token_path).decode("utf-8", "replace").strip()
        if len(text) < 16:
            raise ConfigError(where, f"{token_path} must hold a token of 16 characters or more")
        api_token = Secret(text)
    method, where = r.get("heartbeat_method")
    method = (method or "auto").upper() if (method or "").lower() != "auto" else "auto"
    if method not in ("auto", "PUT", "PATCH"):
        raise ConfigError(where, f"{method!r} must be auto, PUT or PATCH")
    confirm_text, where_confirm = r.get("confirm_ready")
    confirm_ready = parse_bool(confirm_text or "", where_confirm)
    notify_url, where = r.get("notify_url")
    if notify_url and not _HTTP_URL.fullmatch(notify_url):
        raise ConfigError(where, f"{notify_url[:60]!r} must be an http(s) URL")

    def seconds(key: str, minimum: float, maximum: float) -> float:
        text, where = r.get(key)
        return parse_seconds(text or "", where, minimum, maximum)

    info_path, where, explicit = _file_path(r, "app_instance_info", conf_dir or ".")
    if not explicit:
        where = "app_instance_info.yaml"
    try:
        info_bytes = read_file(info_path)
    except OSError as e:
        hint = (
            f" (relative to the working directory {cwd})"
            if cwd and not info_path.startswith("/")
            else ""
        )
        raise ConfigError(
            where,
            f"cannot read {info_path}{hint}: {e.strerror or e}; set --conf-dir "
            f"(MEP_AGENT_CONF_DIR, now {conf_dir or '.'}) or --app-instance-info",
        ) from None
    info_text = info_bytes.decode("utf-8", "replace")
    app = model.parse_app_instance_info(info_path, info_text, dialect.etsi_validation)

    return AgentConfig(
        mep_host=mep_host,
        mep_port=mep_port,
        protocol=protocol,
        ca_pems=ca_pems,
        ca_cert_path=ca_path,
        ca_cert_domain_name=domain,
        ciphers=ciphers,
        credentials=credentials,
        enable_wait=enable_wait,
        app=app,
        listen=listen,
        request_timeout=request_timeout,
        app_conf_path=app_conf_path,
        app_instance_info_path=info_path,
        ops_listen=None if ops_listen.lower() == "none" else ops_listen,
        api_token=api_token,
        heartbeat_method=method,
        confirm_ready=confirm_ready,
        dialect=dialect,
        api_root=api_root,
        auth=auth,
        notify_url=notify_url,
        discovery_ttl=seconds("discovery_ttl", 0, 86400),
        discovery_stale=seconds("discovery_stale", 0, 86400),
        shutdown_timeout=seconds("shutdown_timeout", 0.1, 300),
        oneshot_timeout=seconds("oneshot_timeout", 1, 3600),
        max_response_bytes=_integer(r, "max_response_bytes", 1024, 64 * 1024 * 1024),
        log_format=_choice(r, "log_format", ("text", "json")),
        reload_interval=seconds("reload_interval", 0, 86400),
        app_notify_url=_url(r, "app_notify_url"),
        mep_public_origins=_public_origins(r),
        credential_files=_credential_files(r, auth),
        sync_interval=seconds("sync_interval", 0, 86400),
        termination=_choice(r, "termination", ("auto", "off")),
        termination_wait_app=_boolean(r, "termination_wait_app"),
        max_connections=_integer(r, "max_connections", 1, 1_000_000),
        max_connections_per_peer=_integer(r, "max_connections_per_peer", 1, 1_000_000),
        header_timeout=seconds("header_timeout", 0.5, 300),
        access_log=_boolean(r, "access_log"),
        app_instance_info_digest=hashlib.sha256(info_bytes).hexdigest(),
        log_level=_choice(r, "log_level", ("debug", "info", "warn", "error")),
    )
