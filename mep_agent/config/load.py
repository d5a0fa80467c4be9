"""
Configuration as a pure function: (command-line values, environment, a file reader)
-> a frozen AgentConfig, or a ConfigError naming the setting and the problem.

Precedence per setting: command line, then environment, then a *_FILE file (secrets),
then the default. Environment values may carry one pair of surrounding double quotes,
because the seed's Pod manifest writes them that way (value: '"8443"'). What each
setting's text means, its default and when it is required come from the settings table
(settings.py, parsers.py); this module only reads the settings that are more than text:
secrets, files and the paths under --conf-dir.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from attrs import frozen

from mep_agent.config import model
from mep_agent.config.errors import ConfigError
from mep_agent.config.parsers import (
    Auth,
    Condition,
    HeartbeatMethod,
    LogFormat,
    LogLevel,
    Protocol,
    Termination,
)
from mep_agent.config.settings import BY_KEY, SETTINGS, Setting
from mep_agent.mp1 import links, tls
from mep_agent.mp1.credentials import Credentials, OAuth2Client
from mep_agent.mp1.dialect import Dialect
from mep_agent.util.secret import Secret

ReadFile = Callable[[str], bytes]

#: What each credential must look like: (pattern, the rule in words). AK: mepauth's
#: Authorization header regex; SK: its provisioning rule.
CREDENTIAL_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "ak": (re.compile(r"[A-Za-z0-9_=+/]{20}"), "20 characters of A-Z a-z 0-9 _ + / ="),
    "sk": (re.compile(r"[A-Za-z0-9_=+/]{64}"), "64 characters of A-Z a-z 0-9 _ + / ="),
    "oauth2_client_secret": (re.compile(r"\S.{0,4095}", re.DOTALL), "not empty"),
    "app_instance_id": (
        re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        "a lower-case UUID",
    ),
}

#: Settings whose parsed value is an AgentConfig field of another name.
_FIELD = {"mep_ip": "mep_host", "mep_public_url": "mep_public_origins"}
#: Settings with a parser that the loader uses itself rather than as a field.
_NOT_FIELDS = {"conf_dir", "oauth2_token_url", "oauth2_scope", "ca_cert_domain_name"}


@frozen
class AgentConfig:
    """
    The agent's whole configuration, validated; secrets are L{Secret}s. No field has a
    default here: every default is the settings table's (settings.py).
    """

    mep_host: str
    mep_port: int
    protocol: Protocol
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
    ops_listen: str | None
    api_token: Secret | None
    heartbeat_method: HeartbeatMethod
    confirm_ready: bool
    dialect: Dialect
    api_root: str
    auth: Auth
    notify_url: str | None
    discovery_ttl: float
    discovery_stale: float
    shutdown_timeout: float
    oneshot_timeout: float
    max_response_bytes: int
    log_format: LogFormat
    reload_interval: float
    app_notify_url: str | None
    mep_public_origins: tuple[links.Origin, ...]
    #: (credential, file) for each credential read from a file: they are followed.
    credential_files: tuple[tuple[str, str], ...]
    sync_interval: float
    termination: Termination
    termination_wait_app: bool
    max_connections: int
    max_connections_per_peer: int
    header_timeout: float
    access_log: bool
    app_instance_info_digest: str
    log_level: LogLevel
    ca_cert_path: str | None
    request_rate: float
    state_dir: str | None

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
        """
        Everything an operator may see (no secrets), for --check and the start-up log, in
        plain values: a choice as its text (C{aksk}), never an enum's repr.
        """
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
            "auth": self.auth.value,
            "oauth2_token_url": self.credentials.oauth2.token_url
            if self.credentials.oauth2
            else None,
            "heartbeat_method": self.heartbeat_method.value,
            "confirm_ready": self.confirm_ready,
            "notify_url": self.notify_url,
            "mep_public_origins": [
                f"{scheme}://{host}:{port}" for scheme, host, port in self.mep_public_origins
            ],
            "sync_interval": self.sync_interval,
            "request_rate": self.request_rate,
            "state_dir": self.state_dir,
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


def _name(setting: Setting) -> str:
    return setting.env or f"--{setting.option}"


class Resolver:
    """Looks settings up in precedence order and parses them with the table's parsers."""

    def __init__(
        self, cli: Mapping[str, str | None], environ: Mapping[str, str], read_file: ReadFile
    ) -> None:
        self._cli = cli
        self._environ = environ
        self._read_file = read_file

    def get(self, key: str) -> tuple[str | None, str]:
        """(text, name of its source); empty values count as unset, then the default."""
        setting = BY_KEY[key]
        value = self._cli.get(key)
        if value:
            return value, f"--{setting.option}"
        if setting.env and self._environ.get(setting.env):
            value = strip_quotes(self._environ[setting.env])
            if value:
                return value, setting.env
        return setting.default, _name(setting)

    def value(self, key: str) -> Any:
        """The setting parsed by its parser; None when it is unset and has no default."""
        text, where = self.get(key)
        parse = BY_KEY[key].parse
        assert parse is not None, key
        return None if text is None else parse(text, where)

    def read(self, where: str, path: str) -> bytes:
        """A file's bytes; ConfigError naming C{where} when it cannot be read."""
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

    def checked_secret(self, key: str) -> Secret:
        """A required secret, checked against its rule (the value never in the message)."""
        value, source = self.secret(key)
        if not value:
            setting = BY_KEY[key]
            raise ConfigError(
                _name(setting),
                f"missing or empty (set {setting.env}, --{setting.option} or {setting.env}_FILE)",
            )
        pattern, rule = CREDENTIAL_RULES[key]
        if not pattern.fullmatch(value):
            raise ConfigError(source, f"must be {rule} (got {len(value)} characters)")
        return Secret(value)


def setting_value(key: str, cli: Mapping[str, str | None], environ: Mapping[str, str]) -> Any:
    """One setting, looked up and parsed as load() does (for what is needed before it)."""
    return Resolver(cli, environ, lambda path: b"").value(key)


def _all_required_given(r: Resolver, auth: Auth, protocol: str) -> None:
    """Every required setting that is missing, named in one error (not one per run)."""
    missing = []
    conditions = list(Condition)  # the unconditional first, then credentials, then TLS
    for setting in sorted(
        SETTINGS, key=lambda s: conditions.index(s.required or Condition.ALWAYS)
    ):
        if setting.required is None or not setting.required.applies(auth, protocol):
            continue
        given = r.get(setting.key)[0]
        if not given and setting.file_key is not None:
            given = r.get(setting.file_key)[0]
        if not given:
            missing.append(_name(setting))
    if len(missing) > 1:
        raise ConfigError(
            "settings",
            f"missing or empty: {', '.join(missing)} (set each in the environment or with "
            "its option; twistd mep-agent --help lists them)",
        )


def _credentials(r: Resolver, auth: Auth) -> Credentials:
    oauth2 = None
    if auth is Auth.OAUTH2:
        token_url, where = r.value("oauth2_token_url"), r.get("oauth2_token_url")[1]
        if not token_url:
            raise ConfigError(where, "missing or empty (required with --auth oauth2)")
        client_id, source = r.secret("oauth2_client_id")
        if not client_id:
            raise ConfigError(source, "missing or empty (required with --auth oauth2)")
        client_secret, source = r.secret("oauth2_client_secret")
        if not client_secret:
            raise ConfigError(source, "missing or empty (required with --auth oauth2)")
        scope = r.value("oauth2_scope")
        oauth2 = OAuth2Client(token_url, Secret(client_id), Secret(client_secret), scope)
    access_key = secret_key = None
    if auth is Auth.AKSK:
        access_key, secret_key = r.checked_secret("ak"), r.checked_secret("sk")
    return Credentials(access_key, secret_key, r.checked_secret("app_instance_id"), oauth2)


def _credential_files(r: Resolver, auth: Auth) -> tuple[tuple[str, str], ...]:
    """The credentials of C{auth} that come from a file (no value given directly)."""
    keys = {Auth.AKSK: ("ak", "sk"), Auth.OAUTH2: ("oauth2_client_secret",)}.get(auth, ())
    found = []
    for key in keys:
        if r.get(key)[0]:
            continue  # given directly: nothing to follow
        path = r.get(f"{key}_file")[0]
        if path:
            found.append((key, path))
    return tuple(found)


@frozen
class _Tls:
    ca_pems: tuple[bytes, ...]
    ca_cert_path: str | None
    ca_cert_domain_name: str | None
    ciphers: tuple[str, ...]
    app_conf_path: str


def _tls(r: Resolver, protocol: Protocol, conf_dir: str) -> _Tls:
    app_conf_path, where, explicit = _file_path(r, "app_conf", conf_dir)
    ciphers = _ciphers(r, app_conf_path, where, explicit)
    if protocol is not Protocol.HTTPS:
        return _Tls((), None, None, ciphers, app_conf_path)
    ca_path, where = r.get("ca_cert")
    if not ca_path:
        raise ConfigError(
            where,
            "missing or empty (the CA file that signs the MEP's certificate; required with https)",
        )
    try:
        ca_pems = tuple(tls.pem_certificates(r.read(where, ca_path)))
    except ValueError as e:
        raise ConfigError(where, f"{ca_path}: {e}") from None
    domain = r.value("ca_cert_domain_name")
    if not domain:
        raise ConfigError(
            r.get("ca_cert_domain_name")[1],
            "missing or empty (the name in the MEP's certificate; required with https)",
        )
    return _Tls(ca_pems, ca_path, domain, ciphers, app_conf_path)


def _ciphers(r: Resolver, path: str, where: str, explicit: bool) -> tuple[str, ...]:
    try:
        data = r.read(where, path)
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


def _file_path(r: Resolver, key: str, conf_dir: str) -> tuple[str, str, bool]:
    value, source = r.get(key)
    default = BY_KEY[key].default or ""
    if value == default:
        return value.replace("<conf-dir>", conf_dir.rstrip("/") or "/"), source, False
    return value or "", source, True


def _api_token(r: Resolver) -> Secret | None:
    token_path, where = r.get("api_token_file")
    if not token_path:
        return None
    text = r.read(where, token_path).decode("utf-8", "replace").strip()
    if len(text) < 16:
        raise ConfigError(where, f"{token_path} must hold a token of 16 characters or more")
    return Secret(text)


@frozen
class _AppInfo:
    path: str
    app: model.AppInstanceInfo
    digest: str


def _app_instance_info(
    r: Resolver, conf_dir: str, dialect: Dialect, read_file: ReadFile, cwd: str | None
) -> _AppInfo:
    info_path, where, explicit = _file_path(r, "app_instance_info", conf_dir)
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
            f"(MEP_AGENT_CONF_DIR, now {conf_dir}) or --app-instance-info",
        ) from None
    app = model.parse_app_instance_info(
        info_path, info_bytes.decode("utf-8", "replace"), dialect.etsi_validation
    )
    return _AppInfo(info_path, app, hashlib.sha256(info_bytes).hexdigest())


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
    r = Resolver(cli, environ, read_file)
    dialect: Dialect = r.value("dialect")
    r.value("api_root")  # checked early: a bad root is named before missing credentials
    auth = r.value("auth") or Auth(dialect.default_auth(r.value("oauth2_token_url")))
    _all_required_given(r, auth, (r.get("protocol")[0] or "").lower())
    credentials = _credentials(r, auth)
    if not r.get("mep_ip")[0]:
        raise ConfigError(
            r.get("mep_ip")[1], "missing or empty (the MEP API gateway's host or IP)"
        )
    fields = {
        _FIELD.get(s.key, s.key): r.value(s.key)
        for s in SETTINGS
        if s.parse is not None and s.key not in _NOT_FIELDS
    }
    conf_dir = r.value("conf_dir") or "."
    secure = _tls(r, fields["protocol"], conf_dir)
    info = _app_instance_info(r, conf_dir, dialect, read_file, cwd)
    fields.update(
        auth=auth,
        credentials=credentials,
        credential_files=_credential_files(r, auth),
        api_token=_api_token(r),
        app=info.app,
        app_instance_info_path=info.path,
        app_instance_info_digest=info.digest,
        mep_public_origins=fields["mep_public_origins"] or (),
        **attrs.asdict(secure, recurse=False),
    )
    return AgentConfig(**fields)
