"""Service configuration: ``$GATEHOUSE_HOME/service.yaml`` (optional) plus environment overrides.

    public_url: https://gatehouse.example.com     # links in Slack/Teams messages
    slack:     {bot_token: xoxb-…, signing_secret: …, api_url: https://slack.com/api/}
    teams:     {governance: https://…webhook…}       # notify target teams:governance
    webhooks:  {siem: {url: https://…, secret: …}}   # notify target webhook:siem (HMAC-SHA256 signed)
    oidc:      {issuer: https://idp/, audience: gatehouse, jwks_url: https://idp/jwks, groups_claim: groups}
    proxy:     {user_header: X-Forwarded-Email, groups_header: X-Forwarded-Groups, trusted_ips: [127.0.0.1]}
    console:   {local_signin: true}                   # default: on only when serving on loopback

Secrets may come from the environment instead: GATEHOUSE_SLACK_BOT_TOKEN,
GATEHOUSE_SLACK_SIGNING_SECRET (and GATEHOUSE_SLACK_API_URL, GATEHOUSE_PUBLIC_URL,
GATEHOUSE_OIDC_ISSUER / _AUDIENCE / _JWKS_URL / _GROUPS_CLAIM, GATEHOUSE_PROXY_USER_HEADER).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from gate_core._errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SlackConfig(_Strict):
    bot_token: SecretStr
    signing_secret: SecretStr
    api_url: str = "https://slack.com/api/"


class WebhookTarget(_Strict):
    url: str
    secret: SecretStr


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


class ServiceConfig(_Strict):
    public_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_wait_s: float = Field(default=60.0, gt=0, le=600)
    sweep_interval_s: float = Field(default=1.0, gt=0)
    slack: SlackConfig | None = None
    teams: dict[str, str] = {}
    webhooks: dict[str, WebhookTarget] = {}
    oidc: OidcConfig | None = None
    proxy: ProxyConfig | None = None
    console: ConsoleConfig = ConsoleConfig()
    session_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)))

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
        if env.get("GATEHOUSE_SLACK_BOT_TOKEN") or env.get("GATEHOUSE_SLACK_SIGNING_SECRET"):
            slack = dict(data.get("slack") or {})
            for key in ("bot_token", "signing_secret", "api_url"):
                if env.get(f"GATEHOUSE_SLACK_{key.upper()}"):
                    slack[key] = env[f"GATEHOUSE_SLACK_{key.upper()}"]
            data["slack"] = slack
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
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{path}: {where}: {first['msg']}") from exc
