"""Tests for mep_agent.config.load: precedence, the seed contract, and one-line errors."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mep_agent.config import load as config
from mep_agent.config.errors import ConfigError
from mep_agent.mp1 import tls
from mep_agent.util.secret import Secret
from mep_emulator import certs

from .helpers import AK, APP_ID, SECRETS, SK, FakeFiles, data_text, seed_environ

CA = certs.generate().ca_pem
INFO = data_text("seed_app_instance_info.yaml")


def files(**extra: bytes | str) -> FakeFiles:
    base: dict[str, bytes | str] = {
        "/usr/mep/ssl/ca.crt": CA,
        "./conf/app_instance_info.yaml": INFO,
        "./conf/app_conf.yaml": "sslCiphers: TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n",
    }
    base.update(extra)
    return FakeFiles(base)


def load(
    cli: dict[str, str | None] | None = None,
    env: dict[str, str] | None = None,
    reader: FakeFiles | None = None,
) -> config.AgentConfig:
    return config.load(cli or {}, env if env is not None else seed_environ(), reader or files())


def reveal(secret: Secret | None) -> str:
    assert secret is not None
    return secret.reveal()


class SeedContractTests(SynchronousTestCase):
    def test_seed_manifest_verbatim(self) -> None:
        """The seed Pod's env values, quotes included, give the intended configuration."""
        cfg = load()
        self.assertEqual(cfg.mep_host, "mep-api-gw.mep")
        self.assertEqual(cfg.mep_port, 8443)
        self.assertEqual(cfg.protocol, "https")
        self.assertEqual(cfg.ca_cert_domain_name, "edgegallery")
        self.assertTrue(cfg.enable_wait)
        self.assertEqual(cfg.base_url, "https://mep-api-gw.mep:8443")
        self.assertEqual(reveal(cfg.credentials.access_key), AK)
        self.assertEqual(reveal(cfg.credentials.secret_key), SK)
        self.assertEqual(cfg.credentials.app_instance_id.reveal(), APP_ID)

    def test_seed_example_yaml_loads(self) -> None:
        """The seed's example app_instance_info.yaml (no services, null version) loads."""
        cfg = load()
        self.assertEqual(cfg.app.services, ())
        self.assertEqual(len(cfg.app.subscriptions), 1)
        criteria = cfg.app.subscriptions[0].body["filteringCriteria"]
        self.assertNotIn("version", criteria["serCategories"][0])
        self.assertIn("_links", cfg.app.subscriptions[0].body)

    def test_only_one_pair_of_quotes_stripped(self) -> None:
        """Exactly one surrounding pair of double quotes is removed."""
        self.assertEqual(config.strip_quotes('"x"'), "x")
        self.assertEqual(config.strip_quotes('""x""'), '"x"')
        self.assertEqual(config.strip_quotes('"x'), '"x')
        self.assertEqual(config.strip_quotes('"'), '"')

    def test_http_keeps_configured_port(self) -> None:
        """EG_PROTOCOL=http keeps MEP_APIGW_PORT and needs no CA."""
        env = seed_environ(
            EG_PROTOCOL="HTTP", MEP_APIGW_PORT="8000", CA_CERT=None, CA_CERT_DOMAIN_NAME=None
        )
        cfg = load(env=env, reader=files(**{"/usr/mep/ssl/ca.crt": b"junk"}))
        self.assertEqual(cfg.base_url, "http://mep-api-gw.mep:8000")
        self.assertEqual(cfg.ca_pems, ())

    def test_ipv6_host_header_bracketed(self) -> None:
        """An IPv6 MEP address is bracketed in the Host header and URL."""
        cfg = load(env=seed_environ(MEP_IP="::1"))
        self.assertEqual(cfg.host_header, "[::1]:8443")

    def test_enable_wait_false(self) -> None:
        """ENABLE_WAIT '"false"' selects one-shot mode."""
        self.assertFalse(load(env=seed_environ(ENABLE_WAIT='"false"')).enable_wait)


class PrecedenceTests(SynchronousTestCase):
    def test_cli_over_env(self) -> None:
        """A command-line value wins over the environment."""
        self.assertEqual(load(cli={"mep_port": "30443"}).mep_port, 30443)

    def test_env_over_file(self) -> None:
        """AK in the environment wins over AK_FILE."""
        other = "B" * 20
        cfg = load(env=seed_environ(AK_FILE="/s/ak"), reader=files(**{"/s/ak": other}))
        self.assertEqual(reveal(cfg.credentials.access_key), AK)

    def test_secrets_from_files(self) -> None:
        """Secrets are read from *_FILE paths, with a trailing newline removed."""
        env = seed_environ(
            AK=None,
            SK=None,
            APPINSTID=None,
            AK_FILE="/s/ak",
            SK_FILE="/s/sk",
            APPINSTID_FILE="/s/id",
        )
        reader = files(**{"/s/ak": AK + "\n", "/s/sk": SK, "/s/id": APP_ID + "\n"})
        creds = load(env=env, reader=reader).credentials
        self.assertEqual([s.reveal() for s in creds.all()], [AK, SK, APP_ID])

    def test_conf_dir(self) -> None:
        """The conf directory moves both YAML files."""
        reader = files(**{"/usr/mep/conf/app_instance_info.yaml": "serviceInfoPosts:\n"})
        cfg = load(env=seed_environ(MEP_AGENT_CONF_DIR="/usr/mep/conf"), reader=reader)
        self.assertEqual(cfg.app_instance_info_path, "/usr/mep/conf/app_instance_info.yaml")
        self.assertIn("/usr/mep/conf/app_conf.yaml", reader.read)

    def test_default_ciphers_without_app_conf(self) -> None:
        """A missing app_conf.yaml at its default path: EdgeGallery's Go mep-agent's two suites."""
        reader = files()
        del reader.files["./conf/app_conf.yaml"]
        self.assertEqual(load(reader=reader).ciphers, tls.DEFAULT_CIPHERS)


class ErrorTests(SynchronousTestCase):
    def assert_error(self, where: str, problem_part: str, **kw: Any) -> ConfigError:
        error: ConfigError = self.assertRaises(ConfigError, load, **kw)
        self.assertEqual(error.where, where)
        self.assertIn(problem_part, error.problem)
        self.assertNotIn("\n", str(error))
        for secret in SECRETS:
            self.assertNotIn(secret, str(error))
        return error

    def test_access_log_is_a_boolean(self) -> None:
        """MEP_AGENT_ACCESS_LOG is off by default, true/false when given, else named."""
        self.assertFalse(load().access_log)
        self.assertTrue(load(env=seed_environ(MEP_AGENT_ACCESS_LOG='"true"')).access_log)
        self.assertTrue(load(cli={"access_log": "on"}).access_log)
        self.assert_error(
            "MEP_AGENT_ACCESS_LOG",
            "must be true or false",
            env=seed_environ(MEP_AGENT_ACCESS_LOG="maybe"),
        )

    def test_missing_and_empty_credentials(self) -> None:
        """Missing or empty AK, SK or APPINSTID is named."""
        self.assert_error("AK", "missing or empty", env=seed_environ(AK=None))
        self.assert_error("SK", "missing or empty", env=seed_environ(SK=""))
        self.assert_error("SK", "missing or empty", env=seed_environ(SK='""'))
        self.assert_error("APPINSTID", "missing", env=seed_environ(APPINSTID=None))

    def test_malformed_credentials_not_echoed(self) -> None:
        """A malformed key is reported without its value."""
        self.assert_error("AK", "20 characters", env=seed_environ(AK=AK[:-1] + "!"))
        self.assert_error("SK", "64 characters", env=seed_environ(SK=SK[:10]))
        self.assert_error(
            "APPINSTID", "lower-case UUID", env=seed_environ(APPINSTID=APP_ID.upper())
        )
        self.assert_error("--ak", "20 characters", cli={"ak": "short"})

    def test_unreadable_secret_file(self) -> None:
        """An unreadable AK_FILE is named with the path."""
        error = self.assert_error(
            "AK_FILE", "cannot read /nope", env=seed_environ(AK=None, AK_FILE="/nope")
        )
        self.assertIn("No such file", error.problem)

    def test_bad_hosts(self) -> None:
        """Hosts that are neither a name nor a unicast IP are refused."""
        for bad in ("bad host", "-x.y", "a..b", "224.0.0.1", "0.0.0.0", "x" * 254):
            self.assert_error("MEP_IP", "", env=seed_environ(MEP_IP=bad))
        self.assert_error("MEP_IP", "missing", env=seed_environ(MEP_IP=None))

    def test_bad_ports(self) -> None:
        """Ports outside 1-65535, with leading zeros or not numbers are refused."""
        for bad in ("0", "65536", "0443", "abc", "-1", "8443 "):
            self.assert_error(
                "MEP_APIGW_PORT", "port number", env=seed_environ(MEP_APIGW_PORT=bad)
            )

    def test_bad_protocol(self) -> None:
        """EG_PROTOCOL other than http/https is refused."""
        self.assert_error("EG_PROTOCOL", "https or http", env=seed_environ(EG_PROTOCOL="ftp"))

    def test_ca_problems(self) -> None:
        """A missing, unreadable or non-PEM CA file is named."""
        self.assert_error("CA_CERT", "missing", env=seed_environ(CA_CERT=None))
        self.assert_error("CA_CERT", "cannot read /x.crt", env=seed_environ(CA_CERT="/x.crt"))
        self.assert_error(
            "CA_CERT", "no PEM certificate", reader=files(**{"/usr/mep/ssl/ca.crt": b"not a cert"})
        )
        broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        self.assert_error(
            "CA_CERT", "does not load", reader=files(**{"/usr/mep/ssl/ca.crt": broken})
        )
        self.assert_error(
            "CA_CERT_DOMAIN_NAME", "missing", env=seed_environ(CA_CERT_DOMAIN_NAME=None)
        )

    def test_cipher_problems(self) -> None:
        """Unknown, weak, empty or mistyped cipher settings are named."""
        for text, part in (
            ("sslCiphers: TLS_FOO\n", "unknown or unsupported"),
            ("sslCiphers: TLS_RSA_WITH_AES_128_CBC_SHA\n", "unsupported"),
            ("sslCiphers: ' , '\n", "is empty"),
            ("sslCiphers: [1]\n", "comma-separated"),
        ):
            self.assert_error(
                "./conf/app_conf.yaml: sslCiphers",
                part,
                reader=files(**{"./conf/app_conf.yaml": text}),
            )
        self.assert_error(
            "./conf/app_conf.yaml: ciphers",
            "unknown key",
            reader=files(**{"./conf/app_conf.yaml": "ciphers: x\n"}),
        )
        self.assert_error("--app-conf", "cannot read", cli={"app_conf": "/missing.yaml"})

    def test_cipher_list_parsed(self) -> None:
        """A comma list of IANA names is accepted, spaces trimmed."""
        text = (
            "sslCiphers: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\n"
        )
        cfg = load(reader=files(**{"./conf/app_conf.yaml": text}))
        self.assertEqual(
            cfg.ciphers,
            (
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            ),
        )

    def test_missing_app_instance_info(self) -> None:
        """A missing file names its path, the working directory and --conf-dir (#11.6)."""
        reader = files()
        del reader.files["./conf/app_instance_info.yaml"]
        error = self.assertRaises(
            ConfigError, config.load, {}, seed_environ(), reader, "/srv/agent"
        )
        self.assertEqual(error.where, "app_instance_info.yaml")
        self.assertIn("cannot read ./conf/app_instance_info.yaml", error.problem)
        self.assertIn("working directory /srv/agent", error.problem)
        self.assertIn("--conf-dir (MEP_AGENT_CONF_DIR, now ./conf)", error.problem)
        explicit = seed_environ(MEP_AGENT_APP_INSTANCE_INFO="/x/info.yaml")
        error = self.assertRaises(ConfigError, config.load, {}, explicit, reader, "/srv")
        self.assertEqual(error.where, "MEP_AGENT_APP_INSTANCE_INFO")

    def test_every_missing_setting_in_one_run(self) -> None:
        """All the missing required settings are named at once (#11.6)."""
        env = seed_environ(
            AK=None, SK=None, APPINSTID=None, MEP_IP=None, CA_CERT=None, CA_CERT_DOMAIN_NAME=None
        )
        error = self.assert_error("settings", "missing or empty", env=env)
        self.assertIn("MEP_IP, APPINSTID, AK, SK, CA_CERT, CA_CERT_DOMAIN_NAME", error.problem)

    def test_help_marks_required_settings(self) -> None:
        """--help marks the required settings, and when they are required."""
        from mep_agent.config.settings import BY_KEY

        self.assertTrue(BY_KEY["mep_ip"].describe().startswith("[required]"))
        self.assertTrue(BY_KEY["ca_cert"].describe().startswith("[required with https]"))
        self.assertIsNone(BY_KEY["listen"].required)

    def test_other_settings(self) -> None:
        """Booleans, timeouts and the listener are validated."""
        self.assert_error("ENABLE_WAIT", "true or false", env=seed_environ(ENABLE_WAIT="maybe"))
        self.assert_error("--request-timeout", "number of seconds", cli={"request_timeout": "x"})
        self.assert_error("--request-timeout", "between", cli={"request_timeout": "0"})


class SecretReprTests(SynchronousTestCase):
    def test_config_repr_has_no_secret(self) -> None:
        """The whole configuration's repr and summary contain no credential."""
        cfg = load()
        for text in (repr(cfg), str(cfg.summary()), repr(cfg.credentials), str(Secret(AK))):
            for secret in SECRETS:
                self.assertNotIn(secret, text)


class DialectTests(SynchronousTestCase):
    """--dialect, --api-root, --auth and OAuth2 settings (with the sample, valid in both)."""

    def sample(self, **extra: bytes | str) -> FakeFiles:
        return files(
            **{"./conf/app_instance_info.yaml": data_text("../../conf/app_instance_info.yaml")},
            **extra,
        )

    def etsi(self, **env: str | None) -> dict[str, str]:
        base: dict[str, str | None] = {
            "MEP_AGENT_DIALECT": "etsi",
            "AK": None,
            "SK": None,
            "MEP_AGENT_OAUTH2_TOKEN_URL": "https://mep-api-gw.mep:8443/oauth2/token",
            "MEP_AGENT_OAUTH2_CLIENT_ID": "client",
            "MEP_AGENT_OAUTH2_CLIENT_SECRET": "s3cret",
        }
        base.update(env)
        return seed_environ(**base)

    def test_edgegallery_defaults(self) -> None:
        """The default dialect keeps everything the seed had: AK/SK, /mep, auto beats."""
        cfg = load()
        self.assertEqual(
            (cfg.dialect.name, cfg.auth, cfg.api_root, cfg.heartbeat_method),
            ("edgegallery", "aksk", "/mep", "auto"),
        )

    def test_etsi_with_token_url_is_oauth2(self) -> None:
        """etsi with a token URL: OAuth2 client credentials; AK/SK not needed."""
        cfg = load(env=self.etsi(), reader=self.sample())
        self.assertEqual(cfg.auth, "oauth2")
        assert cfg.credentials.oauth2 is not None
        self.assertEqual(cfg.credentials.oauth2.client_secret.reveal(), "s3cret")
        self.assertIsNone(cfg.credentials.access_key)
        self.assertNotIn("s3cret", repr(cfg) + str(cfg.summary()))

    def test_etsi_without_token_url_is_none(self) -> None:
        """etsi without a token URL: no token at all (an ingress authenticates)."""
        cfg = load(env=self.etsi(MEP_AGENT_OAUTH2_TOKEN_URL=None), reader=self.sample())
        self.assertEqual(cfg.auth, "none")

    def test_oauth2_needs_its_settings(self) -> None:
        """--auth oauth2 without a URL, id or secret names the missing setting."""
        for missing, name in (
            ("MEP_AGENT_OAUTH2_TOKEN_URL", "MEP_AGENT_OAUTH2_TOKEN_URL"),
            ("MEP_AGENT_OAUTH2_CLIENT_ID", "MEP_AGENT_OAUTH2_CLIENT_ID"),
            ("MEP_AGENT_OAUTH2_CLIENT_SECRET", "MEP_AGENT_OAUTH2_CLIENT_SECRET"),
        ):
            env = self.etsi(**{missing: None, "MEP_AGENT_AUTH": "oauth2"})
            error = self.assertRaises(ConfigError, load, env=env)
            self.assertEqual(error.where, name)

    def test_client_secret_from_file(self) -> None:
        """The client secret can come from a *_FILE (a secret volume)."""
        env = self.etsi(
            MEP_AGENT_OAUTH2_CLIENT_SECRET=None, MEP_AGENT_OAUTH2_CLIENT_SECRET_FILE="/s/c"
        )
        cfg = load(env=env, reader=self.sample(**{"/s/c": "from-file\n"}))
        assert cfg.credentials.oauth2 is not None
        self.assertEqual(cfg.credentials.oauth2.client_secret.reveal(), "from-file")

    def test_bad_values(self) -> None:
        """A bad dialect, auth, root or method is one line naming the setting."""
        for env, where in (
            ({"MEP_AGENT_DIALECT": "kong"}, "MEP_AGENT_DIALECT"),
            ({"MEP_AGENT_AUTH": "basic"}, "MEP_AGENT_AUTH"),
            ({"MEP_AGENT_API_ROOT": "no-slash"}, "MEP_AGENT_API_ROOT"),
            ({"MEP_AGENT_HEARTBEAT_METHOD": "POST"}, "MEP_AGENT_HEARTBEAT_METHOD"),
            ({"MEP_AGENT_OAUTH2_TOKEN_URL": "ftp://x"}, "MEP_AGENT_OAUTH2_TOKEN_URL"),
        ):
            error = self.assertRaises(ConfigError, load, env=seed_environ(**env))
            self.assertEqual(error.where, where)

    def test_etsi_validation(self) -> None:
        """etsi applies ServiceInfoPost's rules to app_instance_info.yaml."""
        from mep_agent.config import model

        service: dict[str, Any] = {
            "serName": "rnis.v2",
            "version": "1",
            "state": "ACTIVE",
            "serializer": "JSON",
            "transportInfo": {"type": "REST_HTTP", "protocol": "HTTP", "endpoint": {}},
        }
        text = model.yaml.safe_dump({"serviceInfoPosts": [service]})
        error = self.assertRaises(ConfigError, model.parse_app_instance_info, "f.yaml", text, True)
        self.assertEqual(error.where, "f.yaml: serviceInfoPosts[0].transportInfo.id")
        both = dict(
            service,
            transportId="t",
            transportInfo=dict(
                service["transportInfo"], id="t", name="n", version="1", security={}
            ),
        )
        text = model.yaml.safe_dump({"serviceInfoPosts": [both]})
        error = self.assertRaises(ConfigError, model.parse_app_instance_info, "f.yaml", text, True)
        self.assertIn("exactly one of transportId and transportInfo", error.problem)
        links = dict(both, _links={"self": {}})
        del links["transportId"]
        text = model.yaml.safe_dump({"serviceInfoPosts": [links]})
        error = self.assertRaises(ConfigError, model.parse_app_instance_info, "f.yaml", text, True)
        self.assertEqual(error.where, "f.yaml: serviceInfoPosts[0]._links")
        # The same name is not allowed by mepserver's rules (edgegallery):
        error = self.assertRaises(
            ConfigError, model.parse_app_instance_info, "f.yaml", text, False
        )
        self.assertEqual(error.where, "f.yaml: serviceInfoPosts[0].serName")

    def test_sample_valid_in_both_dialects(self) -> None:
        """The shipped conf/app_instance_info.yaml loads in both dialects."""
        from mep_agent.config import model

        text = data_text("../../conf/app_instance_info.yaml")
        for etsi in (False, True):
            self.assertEqual(len(model.parse_app_instance_info("f", text, etsi).services), 2)


class WholeFileRuleTests(SynchronousTestCase):
    """One rule for app_instance_info.yaml, at start as at reload."""

    def test_empty_file_refused_at_start(self) -> None:
        """A 0-byte or keyless file stops load() with one line naming the file."""
        for text in ("", "serAvailabilityNotificationSubscriptions: []\n"):
            error = self.assertRaises(
                ConfigError, load, reader=files(**{"./conf/app_instance_info.yaml": text})
            )
            self.assertTrue(str(error).startswith("./conf/app_instance_info.yaml: "), error)
            self.assertIn("to register no services write serviceInfoPosts: []", str(error))

    def test_explicit_empty_list_starts_with_no_services(self) -> None:
        """serviceInfoPosts: [] is how a file says "no services"."""
        reader = files(**{"./conf/app_instance_info.yaml": "serviceInfoPosts: []\n"})
        self.assertEqual(load(reader=reader).app.services, ())

    def test_shipped_files_pass_the_rule(self) -> None:
        """conf/, the tests' seed file and the benchmarks' generated files all pass."""
        from benchmarks.soak import services_yaml
        from mep_agent.config import model

        texts = [data_text("../../conf/app_instance_info.yaml")]
        texts.append(data_text("seed_app_instance_info.yaml"))
        for count in (0, 2):
            path = self.mktemp()
            services_yaml(path, count)
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
        for text in texts:
            model.parse_app_instance_info("f", text)


class SummaryTests(SynchronousTestCase):
    def test_summary_holds_plain_values(self) -> None:
        """summary() holds only plain str, numbers, booleans, lists and dicts: no enums."""

        def plain(value: Any) -> bool:
            if isinstance(value, dict):
                return all(type(k) is str and plain(v) for k, v in value.items())
            if isinstance(value, list):
                return all(plain(v) for v in value)
            return type(value) in (str, int, float, bool, type(None))

        for auth in ("aksk", "none"):
            summary = load(env=seed_environ(MEP_AGENT_AUTH=auth)).summary()
            self.assertTrue(plain(summary), summary)
            self.assertEqual(summary["auth"], auth)


class NewSettingsTests(SynchronousTestCase):
    def test_mep_public_url(self) -> None:
        """MEP_AGENT_MEP_PUBLIC_URL: origins, comma-separated; a path is one clear error."""
        cfg = load(env=seed_environ(MEP_AGENT_MEP_PUBLIC_URL="https://a.example, http://b:8080"))
        self.assertEqual(
            cfg.mep_public_origins, (("https", "a.example", 443), ("http", "b", 8080))
        )
        self.assertEqual(
            cfg.summary()["mep_public_origins"], ["https://a.example:443", "http://b:8080"]
        )
        error = self.assertRaises(
            ConfigError, load, env=seed_environ(MEP_AGENT_MEP_PUBLIC_URL="https://a/mep")
        )
        self.assertEqual(error.where, "MEP_AGENT_MEP_PUBLIC_URL")
        self.assertIn("without a path", error.problem)

    def test_termination_settings(self) -> None:
        """--termination auto|off and --termination-wait-app; auto needs --notify-url."""
        cfg = load()
        self.assertEqual((cfg.termination, cfg.termination_wait_app), ("auto", False))
        self.assertFalse(cfg.handles_termination)  # nowhere to be told without --notify-url
        notify = "http://10.0.0.1:9090/mep-agent/v1/notifications"
        cfg = load(env=seed_environ(MEP_AGENT_NOTIFY_URL=notify))
        self.assertTrue(cfg.handles_termination)
        cfg = load(env=seed_environ(MEP_AGENT_NOTIFY_URL=notify, MEP_AGENT_TERMINATION="off"))
        self.assertFalse(cfg.handles_termination)
        error = self.assertRaises(
            ConfigError, load, env=seed_environ(MEP_AGENT_TERMINATION="sometimes")
        )
        self.assertEqual(error.where, "MEP_AGENT_TERMINATION")


class CredentialFilesConfigTests(SynchronousTestCase):
    def test_credentials_from_files_are_followed(self) -> None:
        """AK_FILE/SK_FILE given (no AK/SK): both files are listed to be followed."""
        env = seed_environ(AK=None, SK=None, AK_FILE="/s/ak", SK_FILE="/s/sk")
        cfg = load(env=env, reader=files(**{"/s/ak": AK, "/s/sk": SK}))
        self.assertEqual(cfg.credential_files, (("ak", "/s/ak"), ("sk", "/s/sk")))
        self.assertEqual(load().credential_files, ())  # given directly: nothing to follow


class TableTests(SynchronousTestCase):
    """The settings table is the one place for defaults, parsers and requirements."""

    def test_every_default_parses(self) -> None:
        """Each default, read by its own parser, is a valid value (paths aside)."""
        from mep_agent.config.settings import SETTINGS

        for setting in SETTINGS:
            if setting.parse is not None and setting.default is not None:
                setting.parse(setting.default, setting.option)  # no ConfigError

    def test_agent_config_has_no_defaults(self) -> None:
        """AgentConfig states no default of its own: they are the table's."""
        import attrs

        from mep_agent.config.load import AgentConfig

        with_default = [
            f.name for f in attrs.fields(AgentConfig) if f.default is not attrs.NOTHING
        ]
        self.assertEqual(with_default, [])

    def test_closed_choices_are_enums(self) -> None:
        """A closed choice loads as its enum, which compares equal to its text."""
        from mep_agent.config.parsers import Auth, HeartbeatMethod, Protocol

        cfg = load({"heartbeat_method": "patch"})
        self.assertIs(cfg.heartbeat_method, HeartbeatMethod.PATCH)
        self.assertIs(cfg.protocol, Protocol.HTTPS)
        self.assertEqual((cfg.auth, f"{cfg.auth}"), ("aksk", "aksk"))
        self.assertIs(cfg.auth, Auth.AKSK)

    def test_requirement_words_from_the_table(self) -> None:
        """--help's [required …] comes from the condition and the *_file setting."""
        from mep_agent.config.settings import BY_KEY

        self.assertEqual(BY_KEY["ak"].requirement(), "with --auth aksk (or --ak-file)")
        self.assertEqual(BY_KEY["mep_ip"].requirement(), "")
        self.assertIsNone(BY_KEY["mep_port"].requirement())


class HelpTextTests(SynchronousTestCase):
    """Each help text says what the code does (--help, README)."""

    def help(self, key: str) -> str:
        from mep_agent.config.settings import BY_KEY

        return BY_KEY[key].help

    def test_confirm_ready_goes_first(self) -> None:
        """--confirm-ready's help says READY is confirmed before registering, not after."""
        self.assertIn("at start, before registering", self.help("confirm_ready"))
        self.assertNotIn("once every service is registered", self.help("confirm_ready"))

    def test_api_root_none_is_a_slash(self) -> None:
        """An empty --api-root is the default /mep and '/' is none, as the help says."""
        self.assertEqual(load(cli={"api_root": ""}).api_root, "/mep")
        self.assertEqual(load(cli={"api_root": "/"}).api_root, "")
        self.assertIn("'/' for none", self.help("api_root"))
        self.assertNotIn("'' for none", self.help("api_root"))

    def test_log_level_leaves_logfile(self) -> None:
        """Another --log-level replaces twistd's logger (so --logfile): both helps say so."""
        from twisted.scripts.twistd import ServerOptions

        from mep_agent import tap

        for level, replaced in (("info", False), ("warn", True)):
            options, twistd = tap.Options(), ServerOptions()
            options.parent = twistd  # as twistd sets it for a plugin's options
            options.parseOptions(["--log-level", level])
            self.assertEqual(twistd["logger"] is not None, replaced)
        self.assertIn("--logfile applies only with --log-level info", self.help("log_format"))
        self.assertIn("--logfile does not apply", self.help("log_level"))

    def test_termination_not_in_one_shot(self) -> None:
        """One-shot mode subscribes to no termination notice, as --termination's help says."""
        env = seed_environ(MEP_AGENT_NOTIFY_URL="http://10.0.0.1:9090/n", ENABLE_WAIT="false")
        self.assertFalse(load(env=env).handles_termination)
        self.assertIn("not in one-shot mode", self.help("termination"))

    def test_other_corrected_helps(self) -> None:
        """One-shot keeps registrations; notices and credential files are named."""
        self.assertNotIn("daemon", self.help("enable_wait"))
        self.assertIn("leaving the registrations in place", self.help("enable_wait"))
        self.assertIn("app termination notice", self.help("app_notify_url"))
        self.assertIn("credential files", self.help("reload_interval"))
        self.assertIn("deleting the subscriptions", self.help("shutdown_timeout"))
