"""Service configuration: ``$GATEHOUSE_HOME/service.yaml`` (optional) plus environment overrides.

    public_url: https://gatehouse.example.com     # links in Slack/Teams messages
    notifiers:                                     # instances by name; a rule's target is NAME:ADDRESS
      slack:   {type: slack, bot_token: xoxb-…, signing_secret: …}          # slack:#chan, slack:@U0123
      teams:   {type: teams, webhooks: {governance: https://…webhook…}}    # teams:governance
      teamsbot: {type: teams-bot, app_id: …, app_password: …, tenant_id: …, conversations: {…}}  # teamsbot:N
      webhook: {type: webhook, endpoints: {siem: {url: https://…, secret: …}}}   # webhook:siem
      pager:   {type: pager, …}            # a plugin's type (entry point gatehouse.notifiers)
    oidc:                                          # the IdP: console, API bearer JWTs, `gatehouse login`
      issuer: https://idp/                         #   iss of its tokens (discovery at /.well-known/…)
      audience: gatehouse-console                  #   the console's client id (an id_token's aud)
      api_audience: gatehouse-api                  #   aud of access tokens for the API (default: audience)
      cli_client_id: gatehouse-cli                 #   public client for the device flow of `gatehouse login`
      jwks_url: https://idp/jwks
      always_verifies_email: false                 #   true only if the IdP never asserts an unverified e-mail
      groups_claim: groups                         #   optional; only narrows the directory's groups
    proxy:     {user_header: X-Forwarded-Email, groups_header: X-Forwarded-Groups, trusted_ips: [10.0.0.5]}
    forwarded_allow_ips: [10.0.0.9]                # a load balancer whose X-Forwarded-For/-Proto to believe
    console:                                       # for client addresses and the scheme (default: none)
      local_signin: true        # default: on for a sandbox home served on loopback, without oidc/proxy
      allowed_hosts: [gatehouse.example.com]       # Host names the console answers (plus loopback
      session_lifetime: 8h                         #   names and public_url's); sessions end after this
    metrics:   {token: …, min_interval_s: 1, expiring_within_s: 3600}   # /metrics (open without token)
    log_format: json                                  # text (default) | json: one JSON event per line

The identity-aware proxy's headers are believed only from ``trusted_ips`` — the socket peer of the
connection, never an address named in a forwarded header — and its groups header only narrows the
directory's groups. ``forwarded_allow_ips`` never widens who may assert an identity.

Each ``notifiers:`` entry is validated by its type's config class when the configuration loads
(see ``gate_core.service.notify``). The keys used before notifier instances existed still work
and log one deprecation line each: ``slack: {…}`` is the instance ``slack`` of type slack,
``teams: {NAME: url}`` the instance ``teams`` with ``webhooks: {NAME: url}``, and ``webhooks:
{NAME: {url, secret}}`` the instance ``webhook`` with ``endpoints: {…}`` — so the targets
``slack:#chan``, ``teams:NAME`` and ``webhook:NAME`` of existing policies keep their meaning.

Secrets may come from the environment instead: GATEHOUSE_SLACK_BOT_TOKEN,
GATEHOUSE_SLACK_SIGNING_SECRET, GATEHOUSE_SLACK_APP_TOKEN (Socket Mode) and GATEHOUSE_SLACK_API_URL
fill the notifier instance named ``slack`` (the legacy ``slack:`` key when the file uses it);
GATEHOUSE_TEAMS_APP_PASSWORD the client secret of the ``teams-bot`` instance; also
GATEHOUSE_PUBLIC_URL,
GATEHOUSE_OIDC_ISSUER / _AUDIENCE / _API_AUDIENCE / _CLI_CLIENT_ID / _JWKS_URL / _GROUPS_CLAIM /
_ALWAYS_VERIFIES_EMAIL, GATEHOUSE_PROXY_USER_HEADER / _GROUPS_HEADER / _TRUSTED_IPS (comma-separated),
GATEHOUSE_METRICS_TOKEN, GATEHOUSE_LOG_FORMAT.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gate_core._durations import parse_duration
from gate_core._errors import ConfigError
from gate_core._notify_target import NotifyTarget
from gate_core.identity._provisioned import ProvisioningConfig
from gate_core.service.notify._registry import ConfiguredNotifier, configure
from gate_core.service.notify._slack import SlackConfig
from gate_core.service.notify._teams_bot import TeamsBotConfig

log = logging.getLogger("gatehouse.service")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def ip_networks(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Addresses or CIDR networks, checked now; ``*`` is refused: it would believe anyone."""
    for value in values:
        if value.strip() == "*":
            raise ValueError(f"{what}: '*' would trust every client; name the proxy's address or network")
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"{what}: {value!r} is not an IP address or network") from exc
    return tuple(v.strip() for v in values)


def address_in(address: str, networks: tuple[str, ...]) -> bool:
    """Is ``address`` (a socket peer) in one of ``networks``? IPv4-mapped IPv6 counts as IPv4."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a unix socket or a test client: no address, not the proxy
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


class OidcConfig(_Strict):
    issuer: str
    audience: str  # the console's client id: an id_token's aud
    jwks_url: str
    api_audience: str | None = None  # access tokens for the API (`gatehouse login`); default: audience
    cli_client_id: str | None = None  # the public client of `gatehouse login`'s device flow
    groups_claim: str | None = None  # honoured only to narrow the directory's groups
    email_claim: str = "email"
    always_verifies_email: bool = False
    algorithms: tuple[str, ...] = ("RS256", "ES256")

    @property
    def audiences(self) -> list[str]:
        """Every aud a bearer token may carry: the console's client id and the API's audience."""
        return list(dict.fromkeys([self.audience, self.api_audience or self.audience]))


class ProxyConfig(_Strict):
    user_header: str
    groups_header: str | None = None
    trusted_ips: tuple[str, ...] = Field(min_length=1)  # the proxy's own address: no default

    @field_validator("trusted_ips")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return ip_networks(value, "proxy.trusted_ips")

    def trusts(self, peer: str) -> bool:
        return address_in(peer, self.trusted_ips)


class ConsoleConfig(_Strict):
    local_signin: bool | None = None
    allowed_hosts: tuple[str, ...] = ()
    session_lifetime: str | int = "8h"

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_host_name(host) for host in value)

    @field_validator("session_lifetime")
    @classmethod
    def _lifetime(cls, value: str | int) -> str | int:
        parse_duration(value)  # a ValueError names the problem
        return value

    @property
    def session_lifetime_s(self) -> float:
        return parse_duration(self.session_lifetime).total_seconds()


_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def _host_name(host: str) -> str:
    """A host name (``*.example.com`` for its subdomains) or an IP address, lower-cased."""
    name = host.strip().lower().strip("[]")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not _HOST.match(name):
        raise ValueError(
            f"console.allowed_hosts: {host!r} is not a host name (no '*' alone, port or scheme; "
            "'*.example.com' allows the subdomains of example.com)"
        )
    return name


class MetricsConfig(_Strict):
    """``/metrics`` (gate_core.service._metrics). Unauthenticated unless ``token`` is set, as
    Prometheus endpoints usually are: it holds counts by policy rule, channel and status, never a
    gate's content or a person. Set a token (or GATEHOUSE_METRICS_TOKEN) when the service is
    reachable by people who should not see even those counts; Prometheus then sends it with
    ``authorization: {credentials_file: …}``."""

    enabled: bool = True
    token: SecretStr | None = Field(default=None, min_length=16)
    min_interval_s: float = Field(default=1.0, ge=0, le=300)  # one database read per interval per replica
    # what "about to expire" means in gatehouse_gates_expiring_undecided
    expiring_within_s: float = Field(default=3600.0, gt=0)


LogFormat = Literal["text", "json"]


def _is_instance_name(name: str) -> bool:
    try:
        target = NotifyTarget.parse(name)
    except ValueError:
        return False
    return (target.instance, target.address) == (name, "")


class ServiceConfig(_Strict):
    public_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_wait_s: float = Field(default=60.0, gt=0, le=600)
    sweep_interval_s: float = Field(default=1.0, gt=0)
    # at most one out-of-scope alert per gate and notify target this often; the rest are summarised
    # (notify/_hub.py); 0 sends every finding on its own
    alert_interval_s: float = Field(default=300.0, ge=0, le=86_400)
    notifiers: dict[str, dict[str, Any]] = {}  # checked by each entry's type: see _configure_notifiers
    slack: SlackConfig | None = None  # legacy keys, translated to instances (module docstring)
    teams: dict[str, Any] = {}
    webhooks: dict[str, Any] = {}
    oidc: OidcConfig | None = None
    proxy: ProxyConfig | None = None
    scim: ProvisioningConfig | None = None  # SCIM provisioning at /scim/v2 (identity/_provisioned.py)
    console: ConsoleConfig = ConsoleConfig()
    metrics: MetricsConfig = MetricsConfig()
    log_format: LogFormat = "text"  # json: one JSON object per line (gate_core.service._logs)
    forwarded_allow_ips: tuple[str, ...] = ()

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _forwarders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return ip_networks(value, "forwarded_allow_ips")

    @property
    def console_hosts(self) -> tuple[str, ...]:
        """Host names the console answers: loopback, public_url's host, console.allowed_hosts."""
        public = urlsplit(self.public_url).hostname
        return tuple(
            dict.fromkeys([*LOOPBACK_NAMES, *([public] if public else []), *self.console.allowed_hosts])
        )

    session_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)))
    _instances: dict[str, ConfiguredNotifier] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _configure_notifiers(self, info: ValidationInfo) -> ServiceConfig:
        """Every instance validated by its type's config class now, so a bad entry stops start-up
        with its file and field path (ConfigError passes through pydantic untouched)."""
        source = str((info.context or {}).get("source", "service.yaml"))
        instances: dict[str, ConfiguredNotifier] = {}
        for name, entry in self.notifiers.items():
            if not _is_instance_name(name):
                raise ConfigError(
                    f"{source}: notifiers.{name}: an instance name is lower-case letters, digits, "
                    "'-' or '_' (it is the INSTANCE of the notify targets INSTANCE:ADDRESS)"
                )
            instances[name] = configure(name, entry, where=f"{source}: notifiers.{name}")
        for key, name, entry, hoisted in self._legacy():
            if name in instances:
                raise ConfigError(f"{source}: {key}: and notifiers.{name}: both configure {name!r}; keep one")
            moved = f"{hoisted}: <the {key}: mapping>" if hoisted else "bot_token: …, signing_secret: …"
            log.warning(
                "%s: %s: is deprecated; write notifiers: {%s: {type: %s, %s}} (targets unchanged)",
                *(source, key, name, entry["type"], moved),
            )
            instances[name] = configure(name, entry, where=f"{source}: {key}", hoisted=hoisted)
        slack_apps = [i.name for i in instances.values() if i.type.name == "slack"]
        if len(slack_apps) > 1:
            raise ConfigError(
                f"{source}: notifiers: {', '.join(slack_apps)} are all of type slack; one Slack app "
                "receives the button clicks at /v1/slack/interactions, so configure one"
            )
        bots = [i.name for i in instances.values() if isinstance(i.config, TeamsBotConfig)]
        if len(bots) > 1:
            raise ConfigError(
                f"{source}: notifiers: {', '.join(bots)} are all of type teams-bot; one bot receives "
                "the card clicks at /v1/teams/messages, so configure one (with several conversations)"
            )
        self._instances = instances
        return self

    def _legacy(self) -> Iterator[tuple[str, str, dict[str, Any], str]]:
        """(old key, instance name, instance entry, the field the old mapping moved into)."""
        if self.slack is not None:
            yield "slack", "slack", {"type": "slack", **self.slack.model_dump()}, ""
        if self.teams:
            yield "teams", "teams", {"type": "teams", "webhooks": self.teams}, "webhooks"
        if self.webhooks:
            yield "webhooks", "webhook", {"type": "webhook", "endpoints": self.webhooks}, "endpoints"

    @property
    def notifier_instances(self) -> dict[str, ConfiguredNotifier]:
        """Every configured notifier instance by name, the legacy keys included."""
        return dict(self._instances)

    def slack_app(self) -> SlackConfig | None:
        """The Slack app whose signed button clicks the interactivity endpoint accepts."""
        for instance in self._instances.values():
            if isinstance(instance.config, SlackConfig):
                return instance.config
        return None

    def teams_bot(self) -> TeamsBotConfig | None:
        """The Teams bot whose card clicks ``/v1/teams/messages`` accepts."""
        for instance in self._instances.values():
            if isinstance(instance.config, TeamsBotConfig):
                return instance.config
        return None

    @classmethod
    def load(cls, home: Path, environ: dict[str, str] | None = None) -> ServiceConfig:
        env = dict(os.environ if environ is None else environ)
        path = home / "service.yaml"
        data: dict[str, Any] = {}
        if path.exists():
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"{path}: must be a mapping")
            data = loaded
        if env.get("GATEHOUSE_PUBLIC_URL"):
            data["public_url"] = env["GATEHOUSE_PUBLIC_URL"]
        if any(env.get(f"GATEHOUSE_SLACK_{key.upper()}") for key in _SLACK_ENV):
            _slack_from_env(data, env, path)
        if env.get("GATEHOUSE_TEAMS_APP_PASSWORD"):
            _teams_password_from_env(data, env["GATEHOUSE_TEAMS_APP_PASSWORD"], path)
        if env.get("GATEHOUSE_OIDC_ISSUER"):
            data["oidc"] = {
                "issuer": env["GATEHOUSE_OIDC_ISSUER"],
                "audience": env.get("GATEHOUSE_OIDC_AUDIENCE", "gatehouse"),
                "jwks_url": env.get("GATEHOUSE_OIDC_JWKS_URL", ""),
                "api_audience": env.get("GATEHOUSE_OIDC_API_AUDIENCE") or None,
                "cli_client_id": env.get("GATEHOUSE_OIDC_CLI_CLIENT_ID") or None,
                "groups_claim": env.get("GATEHOUSE_OIDC_GROUPS_CLAIM") or None,
                "always_verifies_email": env.get("GATEHOUSE_OIDC_ALWAYS_VERIFIES_EMAIL", "").lower()
                == "true",
            }
        if env.get("GATEHOUSE_PROXY_USER_HEADER"):
            data["proxy"] = {
                "user_header": env["GATEHOUSE_PROXY_USER_HEADER"],
                "groups_header": env.get("GATEHOUSE_PROXY_GROUPS_HEADER") or None,
                "trusted_ips": [
                    ip for ip in env.get("GATEHOUSE_PROXY_TRUSTED_IPS", "").split(",") if ip.strip()
                ],
            }
        if env.get("GATEHOUSE_METRICS_TOKEN"):
            metrics = data.setdefault("metrics", {})
            if isinstance(metrics, dict):  # else model validation names the problem
                metrics["token"] = env["GATEHOUSE_METRICS_TOKEN"]
        if env.get("GATEHOUSE_LOG_FORMAT"):
            data["log_format"] = env["GATEHOUSE_LOG_FORMAT"]
        secret_file = home / "console-session.key"
        if "session_secret" not in data:
            if not secret_file.exists():
                secret_file.write_text(secrets.token_urlsafe(32))
                secret_file.chmod(0o600)
            data["session_secret"] = secret_file.read_text().strip()
        try:
            return cls.model_validate(data, context={"source": str(path)})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{path}: {where}: {first['msg']}") from exc


_SLACK_ENV = ("bot_token", "signing_secret", "app_token")


def _slack_from_env(data: dict[str, Any], env: dict[str, str], path: Path) -> None:
    """GATEHOUSE_SLACK_* fill the legacy ``slack:`` key when the file uses it, else the
    notifier instance named ``slack`` (created when the file has none)."""
    if "slack" in data:
        slack = dict(data.get("slack") or {})
        data["slack"] = slack
    else:
        notifiers = data.setdefault("notifiers", {})
        if not isinstance(notifiers, dict):
            return  # model validation names the problem
        slack = dict(notifiers.get("slack") or {"type": "slack"})
        if slack.get("type") != "slack":
            raise ConfigError(
                f"{path}: notifiers.slack: GATEHOUSE_SLACK_* are set; this instance is not of type slack"
            )
        notifiers["slack"] = slack
    for key in (*_SLACK_ENV, "api_url"):
        if env.get(f"GATEHOUSE_SLACK_{key.upper()}"):
            slack[key] = env[f"GATEHOUSE_SLACK_{key.upper()}"]


def _teams_password_from_env(data: dict[str, Any], password: str, path: Path) -> None:
    """GATEHOUSE_TEAMS_APP_PASSWORD is the client secret of the one ``teams-bot`` instance."""
    notifiers = data.get("notifiers")
    bots = [
        entry
        for entry in (notifiers.values() if isinstance(notifiers, dict) else ())
        if isinstance(entry, dict) and entry.get("type") == "teams-bot"
    ]
    if not bots:
        raise ConfigError(
            f"{path}: GATEHOUSE_TEAMS_APP_PASSWORD is set, but no notifier of type teams-bot is"
        )
    for bot in bots:  # several are refused when the configuration validates, with the reason
        bot["app_password"] = password
