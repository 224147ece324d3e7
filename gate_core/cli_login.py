"""``gatehouse login`` / ``logout`` and where the remote CLI's credentials live.

    gatehouse login --url URL            OAuth 2.0 device authorization grant (RFC 8628) against the
                                         IdP the service names at ``GET /v1/auth/login``, with
                                         authlib's OAuth2Client; the IdP's access token is the
                                         bearer credential (the service verifies it against the
                                         IdP's JWKS and maps its subject through the directory)
    gatehouse login --url URL --token -  a personal token created in the console (read from stdin,
                                         so it never sits in the shell's history)

Credentials are one JSON file, ``$GATEHOUSE_CONFIG_DIR/credentials.json`` (default
``$XDG_CONFIG_HOME/gatehouse``, else ``~/.config/gatehouse``), written with mode 0600 in a 0700
directory and refused when anyone else can read it. The OS keyring is not used: one file whose
permissions the CLI checks works the same on every host a terminal user meets (servers, CI, WSL).
Each login is kept per service URL; the last one is the default service of every command.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from gate_core._client import Me
from gate_core._errors import AuthenticationFailed, ConfigError

__all__ = ["CredentialStore", "Login", "device_login", "refreshed"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PUBLIC_CLIENT = "none"  # RFC 8628 §3.1: a terminal is a public client; it authenticates with no secret
REFRESH_MARGIN_S = 30.0  # refresh an access token this long before it expires


@dataclass(frozen=True)
class Login:
    """One service's credential: a personal API token, or the IdP's tokens from the device flow."""

    url: str
    kind: str  # "token" | "oidc"
    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    token_endpoint: str | None = None
    client_id: str | None = None
    issuer: str | None = None


def config_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("GATEHOUSE_CONFIG_DIR"):
        return Path(env["GATEHOUSE_CONFIG_DIR"]).expanduser()
    base = (
        Path(env["XDG_CONFIG_HOME"]).expanduser() if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    )
    return base / "gatehouse"


class CredentialStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.path = self.directory / "credentials.json"

    def _read(self) -> dict[str, Any]:
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return {"current": None, "logins": {}}
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{self.path} can be read by other users (mode {stat.S_IMODE(mode):o}); "
                f"run `chmod 600 {self.path}` or log in again"
            )
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{self.path}: not valid JSON ({exc}); log in again") from exc
        if not isinstance(data, dict) or not isinstance(data.get("logins"), dict):
            raise ConfigError(f"{self.path}: not a Gatehouse credentials file; log in again")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.unlink(missing_ok=True)
        # created 0600 from the start: never a moment in which the file is readable by others
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        os.replace(temporary, self.path)

    def current_url(self) -> str | None:
        current = self._read().get("current")
        return current if isinstance(current, str) else None

    def get(self, url: str) -> Login | None:
        entry = self._read()["logins"].get(_key(url))
        return Login(**entry) if isinstance(entry, dict) else None

    def save(self, login: Login) -> None:
        data = self._read()
        data["logins"][_key(login.url)] = asdict(login)
        data["current"] = _key(login.url)
        self._write(data)

    def remove(self, url: str) -> bool:
        data = self._read()
        removed = data["logins"].pop(_key(url), None) is not None
        if data.get("current") == _key(url):
            data["current"] = next(iter(data["logins"]), None)
        self._write(data)
        return removed


def _key(url: str) -> str:
    return url.rstrip("/")


def service_login_config(url: str) -> dict[str, Any] | None:
    """What the service says about signing in from a terminal (``GET /v1/auth/login``)."""
    try:
        response = httpx.get(f"{_key(url)}/v1/auth/login", timeout=10)
    except httpx.HTTPError as exc:
        raise AuthenticationFailed(f"cannot reach the gate service at {url}: {exc}") from exc
    if response.status_code != 200:
        raise AuthenticationFailed(f"{url} did not answer as a gate service (HTTP {response.status_code})")
    oidc = response.json().get("oidc")
    return oidc if isinstance(oidc, dict) else None


def _discover(issuer: str) -> dict[str, Any]:
    try:
        response = httpx.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration", timeout=10)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise AuthenticationFailed(f"cannot read the identity provider's configuration: {exc}") from exc
    if str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise AuthenticationFailed("the identity provider's configuration names another issuer")
    if "device_authorization_endpoint" not in document:
        raise AuthenticationFailed(
            f"the identity provider at {issuer} offers no device authorization endpoint (RFC 8628); "
            "create a personal token in the console and use `gatehouse login --token -`"
        )
    return document


def device_login(url: str, oidc: dict[str, Any], *, timeout_s: float = 600.0) -> Login:
    """RFC 8628: ask the IdP for a device code, tell the person where to approve it, and poll the
    token endpoint (``authorization_pending`` → wait; ``slow_down`` → wait 5 s longer)."""
    from authlib.integrations.httpx_client import OAuth2Client, OAuthError

    issuer, client_id = str(oidc["issuer"]), str(oidc["client_id"])
    document = _discover(issuer)
    token_endpoint = str(document["token_endpoint"])
    with OAuth2Client(client_id=client_id, token_endpoint_auth_method=PUBLIC_CLIENT, timeout=10) as client:
        started = client.request(
            "POST",
            str(document["device_authorization_endpoint"]),
            data={
                "client_id": client_id,
                "scope": str(oidc.get("scope", "openid")),
                "audience": oidc["audience"],
            },
            withhold_token=True,  # nothing to present yet: this request is what starts the login
        )
        grant = (
            started.json() if started.headers.get("content-type", "").startswith("application/json") else {}
        )
        if started.status_code != 200 or "device_code" not in grant:
            refusal = grant.get("error") or started.status_code
            raise AuthenticationFailed(f"the identity provider refused the device login ({refusal})")
        where = grant.get("verification_uri_complete") or grant["verification_uri"]
        click.echo(
            f"To sign in, open {where} and enter the code {grant['user_code']} (it expires in "
            f"{int(grant.get('expires_in', 600)) // 60} minutes).",
            err=True,
        )
        interval = float(grant.get("interval", 5))
        deadline = time.monotonic() + min(float(grant.get("expires_in", timeout_s)), timeout_s)
        while time.monotonic() < deadline:
            time.sleep(interval)
            try:
                token = client.fetch_token(
                    token_endpoint, grant_type=DEVICE_GRANT, device_code=grant["device_code"]
                )
            except OAuthError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += 5
                    continue
                raise AuthenticationFailed(
                    f"device login failed: {exc.error} {exc.description or ''}".strip()
                ) from exc
            return Login(
                url=_key(url),
                kind="oidc",
                access_token=str(token["access_token"]),
                refresh_token=token.get("refresh_token"),
                expires_at=float(token["expires_at"]) if token.get("expires_at") else None,
                token_endpoint=token_endpoint,
                client_id=client_id,
                issuer=issuer,
            )
    raise AuthenticationFailed("device login expired before it was approved; run `gatehouse login` again")


def refreshed(login: Login, store: CredentialStore) -> Login:
    """The login with a fresh access token when it is about to expire (refresh_token grant)."""
    if login.kind != "oidc" or login.expires_at is None or time.time() < login.expires_at - REFRESH_MARGIN_S:
        return login
    if not login.refresh_token or not login.token_endpoint:
        raise AuthenticationFailed(
            f"your login to {login.url} has expired; run `gatehouse login --url {login.url}`"
        )
    from authlib.integrations.httpx_client import OAuth2Client, OAuthError

    with OAuth2Client(
        client_id=login.client_id, token_endpoint_auth_method=PUBLIC_CLIENT, timeout=10
    ) as client:
        try:
            token = client.refresh_token(login.token_endpoint, refresh_token=login.refresh_token)
        except (OAuthError, httpx.HTTPError) as exc:
            raise AuthenticationFailed(
                f"your login to {login.url} has expired and could not be refreshed ({exc}); "
                f"run `gatehouse login --url {login.url}`"
            ) from exc
    fresh = Login(
        **{
            **asdict(login),
            "access_token": str(token["access_token"]),
            "refresh_token": token.get("refresh_token") or login.refresh_token,
            "expires_at": float(token["expires_at"]) if token.get("expires_at") else None,
        }
    )
    store.save(fresh)
    return fresh


def who(me: Me, url: str) -> str:
    """``bob <bob@example.com> at URL, via oidc (subject … at …), scope decide``."""
    mail = f" <{me.email}>" if me.email else ""
    link = f" (subject {me.subject} at {me.issuer})" if me.subject else ""
    return f"{me.principal_id}{mail} at {url}, via {me.via}{link}, scope {me.scope}"


def read_token(value: str) -> str:
    token = sys.stdin.readline().strip() if value == "-" else value.strip()
    if not token:
        raise click.BadParameter("no token given", param_hint="--token")
    return token
