"""Service configuration: ``$GATEHOUSE_HOME/service.yaml`` (optional) plus environment overrides.

    public_url: https://gatehouse.example.com     # links in Slack/Teams messages
    notifiers:                                     # instances by name; a rule's target is NAME:ADDRESS
      slack:   {type: slack, bot_token: xoxb-…, signing_secret: …}          # slack:#chan, slack:@U0123
      teams:   {type: teams, webhooks: {governance: https://…webhook…}}    # teams:governance
      teamsbot: {type: teams-bot, app_id: …, app_password: …, tenant_id: …, conversations: {…}}  # teamsbot:N
      webhook: {type: webhook, endpoints: {siem: {url: https://…, secret: …}}}   # webhook:siem
      pager:   {type: pager, …}            # a plugin's type (entry point gatehouse.notifiers)
    oidc:      {issuer: https://idp/, audience: gatehouse, jwks_url: https://idp/jwks, groups_claim: groups}
    proxy:     {user_header: X-Forwarded-Email, groups_header: X-Forwarded-Groups, trusted_ips: [127.0.0.1]}
    console:   {local_signin: true}                   # default: on only when serving on loopback

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
GATEHOUSE_OIDC_ISSUER / _AUDIENCE / _JWKS_URL / _GROUPS_CLAIM, GATEHOUSE_PROXY_USER_HEADER.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from gate_core._errors import ConfigError
from gate_core._notify_target import NotifyTarget
from gate_core.service.notify._registry import ConfiguredNotifier, configure
from gate_core.service.notify._slack import SlackConfig
from gate_core.service.notify._teams_bot import TeamsBotConfig

log = logging.getLogger("gatehouse.service")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OidcConfig(_Strict):
    issuer: str
    audience: str
    jwks_url: str
    groups_claim: str = "groups"
    email_claim: str = "email"
    algorithms: tuple[str, ...] = ("RS256", "ES256")


class ProxyConfig(_Strict):
    user_header: str
    groups_header: str | None = None
    trusted_ips: tuple[str, ...] = ("127.0.0.1", "::1")


class ConsoleConfig(_Strict):
    local_signin: bool | None = None


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
    notifiers: dict[str, dict[str, Any]] = {}  # checked by each entry's type: see _configure_notifiers
    slack: SlackConfig | None = None  # legacy keys, translated to instances (module docstring)
    teams: dict[str, Any] = {}
    webhooks: dict[str, Any] = {}
    oidc: OidcConfig | None = None
    proxy: ProxyConfig | None = None
    console: ConsoleConfig = ConsoleConfig()
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
                "groups_claim": env.get("GATEHOUSE_OIDC_GROUPS_CLAIM", "groups"),
            }
        if env.get("GATEHOUSE_PROXY_USER_HEADER"):
            data["proxy"] = {
                "user_header": env["GATEHOUSE_PROXY_USER_HEADER"],
                "groups_header": env.get("GATEHOUSE_PROXY_GROUPS_HEADER") or None,
            }
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
