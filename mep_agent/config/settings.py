"""
The table of every setting: command-line option, environment variable, default, parser,
when it is required, and help.

One table feeds the twistd Options (and so C{--help}), the configuration loader and the
settings table of docs/configuration.md (config/settings_table.py), so that the three
cannot disagree: every default and every "required" is stated here and nowhere else.
"""

from __future__ import annotations

from attrs import frozen

from mep_agent.config import parsers as p
from mep_agent.config.parsers import Condition, Parser


@frozen
class Setting:
    """One setting: its option, env variable, default, parser, requirement and help."""

    key: str  # the Python name, and the option name with '_' -> '-'
    env: str | None  # environment variable, or None for CLI-only settings
    default: str | None  # as text, exactly as a user would write it; None: no default
    help: str
    required: Condition | None = None  # when it must be given (with its *_file, if any)
    #: Turns the text (given, or the default) into the value; None: read by the loader
    #: itself (a secret, a file, a path under --conf-dir).
    parse: Parser | None = None

    @property
    def option(self) -> str:
        """The command-line option name."""
        return self.key.replace("_", "-")

    @property
    def file_key(self) -> str | None:
        """The setting that names a file holding this one's value, if there is one."""
        key = f"{self.key}_file"
        return key if key in BY_KEY else None

    def requirement(self) -> str | None:
        """When it is required, in words ('' for always; None: never)."""
        if self.required is None:
            return None
        words = self.required.value
        if self.file_key is not None:
            words = f"{words} (or --{BY_KEY[self.file_key].option})".strip()
        return words

    def describe(self) -> str:
        """Help text with the env variable and default, as twistd --help shows it."""
        parts = [self.help]
        required = self.requirement()
        if required is not None:
            parts.insert(0, f"[required{' ' + required if required else ''}]")
        if self.env:
            parts.append(f"[env {self.env}]")
        parts.append(f"[default: {self.default}]" if self.default is not None else "")
        return " ".join(p for p in parts if p)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "mep_ip",
        "MEP_IP",
        None,
        "Host name or IP address of the MEP API gateway.",
        required=Condition.ALWAYS,
        parse=p.host,
    ),
    Setting(
        "mep_port",
        "MEP_APIGW_PORT",
        "8443",
        "Port of the MEP API gateway (also used with EG_PROTOCOL=http; EdgeGallery's Go "
        "mep-agent forced 8000 there).",
        parse=p.port,
    ),
    Setting(
        "protocol",
        "EG_PROTOCOL",
        "https",
        "'https' (verified TLS) or 'http' (plain HTTP, for development only).",
        parse=p.choice(p.Protocol),
    ),
    Setting(
        "dialect",
        "MEP_AGENT_DIALECT",
        "edgegallery",
        "'edgegallery' (EdgeGallery's MEP) or 'etsi' (a platform following ETSI MEC 011 "
        "v2.2.1): the defaults of --auth, the validation of app_instance_info.yaml, the "
        "service names discovery accepts, how the MEP's links are read, whether the "
        "other Mp1 calls wait for confirm_ready (etsi) and how late a heartbeat may be.",
        parse=p.dialect,
    ),
    Setting(
        "api_root",
        "MEP_AGENT_API_ROOT",
        "/mep",
        "Path before mec_service_mgmt/v1 and mec_app_support/v1 on the MEP; '/' for none "
        "(an empty value counts as unset: the default).",
        parse=p.api_root,
    ),
    Setting(
        "mep_public_url",
        "MEP_AGENT_MEP_PUBLIC_URL",
        None,
        "The MEP's public origin(s), comma-separated (e.g. https://mep.example.com): a "
        "platform that builds its links from its public URL names them there; such links "
        "are followed on MEP_IP:MEP_APIGW_PORT with the same TLS checks. Links to any other "
        "origin are never followed.",
        parse=p.public_origins,
    ),
    Setting(
        "auth",
        "MEP_AGENT_AUTH",
        None,
        "How the agent gets its token: 'aksk' (EdgeGallery's signed POST <api-root>/token), "
        "'oauth2' (RFC 6749 client credentials at --oauth2-token-url) or 'none'. Default: "
        "aksk with the edgegallery dialect; with etsi, oauth2 when a token URL is set, "
        "else none.",
        parse=p.choice(p.Auth),
    ),
    Setting(
        "oauth2_token_url",
        "MEP_AGENT_OAUTH2_TOKEN_URL",
        None,
        "OAuth 2.0 token endpoint (http or https). https is verified with CA_CERT's "
        "certificates, suites and minimum version against the URL's own host name "
        "(CA_CERT_DOMAIN_NAME when that host is MEP_IP); with EG_PROTOCOL=http, against "
        "the system's CAs.",
        required=Condition.WITH_OAUTH2,
        parse=p.url,
    ),
    Setting(
        "oauth2_client_id",
        "MEP_AGENT_OAUTH2_CLIENT_ID",
        None,
        "OAuth 2.0 client id (with --auth oauth2).",
        required=Condition.WITH_OAUTH2,
    ),
    Setting(
        "oauth2_client_id_file",
        "MEP_AGENT_OAUTH2_CLIENT_ID_FILE",
        None,
        "File holding the OAuth 2.0 client id.",
    ),
    Setting(
        "oauth2_client_secret",
        "MEP_AGENT_OAUTH2_CLIENT_SECRET",
        None,
        "OAuth 2.0 client secret (a secret like SK: never logged; prefer the env or the file).",
        required=Condition.WITH_OAUTH2,
    ),
    Setting(
        "oauth2_client_secret_file",
        "MEP_AGENT_OAUTH2_CLIENT_SECRET_FILE",
        None,
        "File holding the OAuth 2.0 client secret.",
    ),
    Setting(
        "oauth2_scope", "MEP_AGENT_OAUTH2_SCOPE", None, "OAuth 2.0 scope to ask for.", parse=p.text
    ),
    Setting(
        "ca_cert",
        "CA_CERT",
        None,
        "PEM file with the CA certificate(s) that sign the MEP's certificate; "
        "every certificate in the file is trusted (required with https).",
        required=Condition.WITH_HTTPS,
    ),
    Setting(
        "ca_cert_domain_name",
        "CA_CERT_DOMAIN_NAME",
        None,
        "Name the MEP's certificate must carry; checked while connecting to MEP_IP "
        "(required with https).",
        required=Condition.WITH_HTTPS,
        parse=p.host,
    ),
    Setting(
        "ak",
        "AK",
        None,
        "Access key (20 characters; with --auth aksk). Prefer the env variable or "
        "--ak-file: command lines are visible to other processes.",
        required=Condition.WITH_AKSK,
    ),
    Setting(
        "ak_file",
        "AK_FILE",
        None,
        "File holding the access key (e.g. a Kubernetes secret volume).",
    ),
    Setting(
        "sk",
        "SK",
        None,
        "Secret key (64 characters). Prefer the env variable or --sk-file.",
        required=Condition.WITH_AKSK,
    ),
    Setting("sk_file", "SK_FILE", None, "File holding the secret key."),
    Setting(
        "app_instance_id",
        "APPINSTID",
        None,
        "Application instance id, a lower-case UUID.",
        required=Condition.ALWAYS,
    ),
    Setting(
        "app_instance_id_file", "APPINSTID_FILE", None, "File holding the application instance id."
    ),
    Setting(
        "enable_wait",
        "ENABLE_WAIT",
        "true",
        "'true': keep running (heartbeats, the application API) until stopped, then "
        "deregister; 'false': one-shot: get a token, confirm READY and register every "
        "service, then exit 0 leaving the registrations in place (non-zero when the MEP "
        "refuses confirm_ready or after --oneshot-timeout).",
        parse=p.boolean,
    ),
    Setting(
        "conf_dir",
        "MEP_AGENT_CONF_DIR",
        "./conf",
        "Directory of app_conf.yaml and app_instance_info.yaml (the image uses /usr/mep/conf).",
        parse=p.text,
    ),
    Setting(
        "app_conf",
        "MEP_AGENT_APP_CONF",
        "<conf-dir>/app_conf.yaml",
        "TLS settings file (sslCiphers). Optional at its default path.",
    ),
    Setting(
        "app_instance_info",
        "MEP_AGENT_APP_INSTANCE_INFO",
        "<conf-dir>/app_instance_info.yaml",
        "Services and subscriptions to register (serviceInfoPosts, "
        "serAvailabilityNotificationSubscriptions).",
    ),
    Setting(
        "listen",
        "MEP_AGENT_LISTEN",
        "tcp:8080:interface=127.0.0.1",
        "strports description of the application API listener.",
        parse=p.listener,
    ),
    Setting(
        "request_timeout",
        "MEP_AGENT_REQUEST_TIMEOUT",
        "10",
        "Seconds before any request to the MEP is abandoned.",
        parse=p.seconds(0.1, 300),
    ),
    Setting(
        "ops_listen",
        "MEP_AGENT_OPS_LISTEN",
        "tcp:9090",
        "strports description of the operations listener (/livez, /readyz, /metrics, "
        "status, notifications); it never serves a token. 'none' turns it off.",
        parse=p.ops_listener,
    ),
    Setting(
        "api_token_file",
        "MEP_AGENT_API_TOKEN_FILE",
        None,
        "File holding a bearer token the application must send to the application "
        "API (off when unset).",
    ),
    Setting(
        "heartbeat_method",
        "MEP_AGENT_HEARTBEAT_METHOD",
        "auto",
        "'auto': follow the link the MEP gives (_links.liveness.href with PATCH, as ETSI "
        "MEC 011 v2.2.1; else _links.self.liveness with PUT, as EdgeGallery); 'PUT' or "
        "'PATCH' force the method.",
        parse=p.choice(p.HeartbeatMethod),
    ),
    Setting(
        "confirm_ready",
        "MEP_AGENT_CONFIRM_READY",
        "true",
        "Send confirm_ready (READY) at start, before registering (with the etsi dialect "
        "no other Mp1 call goes out until it is confirmed: MEC 011 v2.2.1 platforms refuse "
        "them), and again when the MEP answers 403 'not ready' or has lost a service. "
        "'false': never sent.",
        parse=p.boolean,
    ),
    Setting(
        "notify_url",
        "MEP_AGENT_NOTIFY_URL",
        None,
        "URL at which the MEP reaches the agent's notification route, e.g. "
        "http://$(POD_IP):9090/mep-agent/v1/notifications; the agent appends a secret path "
        "segment generated at start and sends the result as callbackReference of every "
        "subscription (unset: the YAML's callbackReference is sent).",
        parse=p.url,
    ),
    Setting(
        "app_notify_url",
        "MEP_AGENT_APP_NOTIFY_URL",
        None,
        "Where the agent also POSTs each availability notification and app termination "
        "notice it receives (the MEP's JSON as is; 3 attempts, never holding up the agent). "
        "Unset: not forwarded.",
        parse=p.url,
    ),
    Setting(
        "sync_interval",
        "MEP_AGENT_SYNC_INTERVAL",
        "60",
        "Seconds between reads of what the MEP holds for the app (its services and "
        "subscriptions), compared with what should be and repaired (jittered by up to a "
        "fifth; 0: only at start and on signs of divergence).",
        parse=p.seconds(0, 86400),
    ),
    Setting(
        "request_rate",
        "MEP_AGENT_REQUEST_RATE",
        "1",
        "Requests a second the agent may send the MEP besides heartbeats (tokens, READY, "
        "registrations, repairs, deletions, syncs, subscriptions), after a burst of 8 plus 2 "
        "per service and subscription; a 429 or 503 pauses them all. Heartbeats go at their "
        "own schedule (at most 2 per liveness interval per service). EdgeGallery's gateway "
        "allows 1,000 requests a minute for all apps of the platform together.",
        parse=p.rate(0.01, 100),
    ),
    Setting(
        "state_dir",
        "MEP_AGENT_STATE_DIR",
        None,
        "Directory on a pod-scoped volume (an emptyDir) where the agent records what it "
        "creates at the MEP and what it confirmed (READY, a termination): a restarted "
        "container deletes or adopts what its earlier lives left, and remembers a "
        "termination. Unset or not writable: nothing is recorded (status says so).",
        parse=p.text,
    ),
    Setting(
        "termination",
        "MEP_AGENT_TERMINATION",
        "auto",
        "'auto': with --notify-url and not in one-shot mode (ENABLE_WAIT=false), subscribe "
        "to the platform's app termination notices and leave when one comes (not ready, "
        "services deregistered, the application told, confirm_termination within "
        "maxGracefulTimeout); 'off': do not subscribe.",
        parse=p.choice(p.Termination),
    ),
    Setting(
        "termination_wait_app",
        "MEP_AGENT_TERMINATION_WAIT_APP",
        "false",
        "'true': on a termination notice, wait (within maxGracefulTimeout) for the "
        "application's POST /mep-agent/v1/termination/ack before confirming.",
        parse=p.boolean,
    ),
    Setting(
        "discovery_ttl",
        "MEP_AGENT_DISCOVERY_TTL",
        "30",
        "Seconds a discovery answer is served from the cache.",
        parse=p.seconds(0, 86400),
    ),
    Setting(
        "discovery_stale",
        "MEP_AGENT_DISCOVERY_STALE",
        "300",
        "Further seconds a cached answer is served while the MEP fails "
        "(stale-if-error; 0 turns it off).",
        parse=p.seconds(0, 86400),
    ),
    Setting(
        "shutdown_timeout",
        "MEP_AGENT_SHUTDOWN_TIMEOUT",
        "5",
        "Seconds that deregistering the services and deleting the subscriptions on stop "
        "may take in all (side by side).",
        parse=p.seconds(0.1, 300),
    ),
    Setting(
        "oneshot_timeout",
        "MEP_AGENT_ONESHOT_TIMEOUT",
        "120",
        "With ENABLE_WAIT=false: seconds to get a token, register every service and "
        "confirm READY before exiting non-zero.",
        parse=p.seconds(1, 3600),
    ),
    Setting(
        "max_connections",
        "MEP_AGENT_MAX_CONNECTIONS",
        "1024",
        "Most connections each listener keeps open at once (further ones are answered a "
        "JSON 503 with Retry-After: 1 and closed); raise it, --max-connections-per-peer and "
        "the open-files limit for many blocking discovery requests.",
        parse=p.integer(1, 1000000),
    ),
    Setting(
        "max_connections_per_peer",
        "MEP_AGENT_MAX_CONNECTIONS_PER_PEER",
        "256",
        "Most connections each listener keeps open from one peer address (further ones are "
        "answered a JSON 503 with Retry-After: 1 and closed), so that one abusive client "
        "cannot starve the kubelet's probes; raise it with --max-connections for many "
        "blocking discovery requests from the application.",
        parse=p.integer(1, 1000000),
    ),
    Setting(
        "header_timeout",
        "MEP_AGENT_HEADER_TIMEOUT",
        "5",
        "Seconds a client has to send a request's line and headers on either listener "
        "before its connection is dropped (slow clients hold no connection for long).",
        parse=p.seconds(0.5, 300),
    ),
    Setting(
        "access_log",
        "MEP_AGENT_ACCESS_LOG",
        "false",
        "'true' writes a line per HTTP request served on both listeners (off by default: "
        "probes and /token polling would fill the log, and writing it cut /token's requests "
        "per second by about a third, see benchmarks/RESULTS.md).",
        parse=p.boolean,
    ),
    Setting(
        "reload_interval",
        "MEP_AGENT_RELOAD_INTERVAL",
        "10",
        "Seconds between checks of app_instance_info.yaml and of the credential files "
        "(AK_FILE, SK_FILE, the OAuth 2.0 client secret file) for changes, applied without "
        "a restart. SIGHUP checks app_instance_info.yaml at once; 0: it is checked only on "
        "SIGHUP, and the credential files only when the MEP refuses the key.",
        parse=p.seconds(0, 86400),
    ),
    Setting(
        "log_format",
        "MEP_AGENT_LOG_FORMAT",
        "text",
        "'text' (twistd's lines; twistd's --logfile applies only with --log-level info, "
        "another level writes them to stdout) or 'json' (one JSON object per line on "
        "stdout, whatever --logfile says: time, level, event, message and the event's "
        "fields).",
        parse=p.choice(p.LogFormat),
    ),
    Setting(
        "log_level",
        "MEP_AGENT_LOG_LEVEL",
        "info",
        "The least severe level written: debug, info, warn or error (other than info: "
        "on stdout, twistd's --logfile does not apply).",
        parse=p.choice(p.LogLevel),
    ),
    Setting(
        "max_response_bytes",
        "MEP_AGENT_MAX_RESPONSE_BYTES",
        "1048576",
        "Largest MEP answer the agent reads, in bytes after decoding; a larger one is an "
        "error (1024 to 67108864).",
        parse=p.integer(1024, 64 * 1024 * 1024),
    ),
)

BY_KEY = {s.key: s for s in SETTINGS}
