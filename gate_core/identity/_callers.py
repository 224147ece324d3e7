"""Who is this caller: each channel's proof resolved to one verified principal, or refused.

    channel       proof, checked by the channel's adapter       resolved here                 via
    API token     gh_… secret, hashed in the store              the token's principal         api-token
    OIDC claims   JWT signature, iss, aud, exp (OidcVerifier)   e-mail → source, else the     oidc
                                                                IdP's person with its groups
    proxy header  sent by a trusted hop (trusted_ips)           id/alias or e-mail → source   proxy-header
    Slack user    signed callback, users.info e-mail            e-mail → source               slack
    Teams member  Bot Framework JWT, Bot Connector member       e-mail, else UPN → source     teams
                  lookup (e-mail, UPN, AAD object id)
    OS account    the kernel's passwd entry of the euid         id/alias → source             local-os-user
    --as NAME     nothing: a sandbox home only, unverified      id/alias → source             sandbox

Reading the proof off the wire (headers, Slack payloads, verifying a JWT) stays with the channel —
``gate_core/service/_auth.py``, ``_slack.py``, the console, the CLI; what the proof means, and
which principal it names, is decided here once. Every ``caller_from_*`` returns a ``Caller`` or
raises ``AuthenticationFailed`` naming what was not recognised. ``local_actor_name`` is the one
answer that names without proving: lineage's actor outside a pipeline, an unverified label.
"""

from __future__ import annotations

import functools
import os
import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gate_core._errors import AuthenticationFailed, GatehouseError, PermissionDenied, UnknownPrincipal
from gate_core._tokens import ApiToken, Scope
from gate_core.identity._principal import Actor, AuthMethod, Principal, PrincipalKind
from gate_core.identity._source import IdentitySource, load_source

if TYPE_CHECKING:
    from gate_core._home import Settings


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified caller: the principal, how we know it is them, and what the credential allows.

    People proven by the IdP, the proxy or Slack act with the ``decide`` scope; what they may
    actually decide is still the core's rules (approver groups, never their own gate). The local
    OS account holds the database and the signing key already, so it is not narrowed."""

    principal: Principal
    via: AuthMethod
    scope: Scope
    token: ApiToken | None = None  # the API token that proved it, when one did

    @property
    def actor(self) -> Actor:
        return Actor(principal_id=self.principal.id, via=self.via, email=self.principal.email)

    def require(self, scope: Scope) -> None:
        if not self.scope.allows(scope):
            raise PermissionDenied(
                f"this {self.via.value} credential has scope {self.scope.value!r}; {scope.value!r} is needed"
            )
        token = self.token
        if (
            token is not None
            and scope is not Scope.REQUEST
            and self.principal.kind is PrincipalKind.HUMAN
            and not token.issued_by_owner
        ):
            # A person's token that someone else minted (before issue 14 anyone could) never
            # decides nor administers: only the credential's owner may make it speak for them.
            raise PermissionDenied(
                f"token {token.id} acts as {token.principal_id} but was issued by {token.created_by}; "
                f"a token decides only when its own principal created it ({token.principal_id} must "
                "create their own)"
            )

    def require_pipeline(self, pipeline: str) -> None:
        """Refuse a service token limited to other pipelines (see ``ApiToken.pipelines``)."""
        if self.token is not None and not self.token.allows_pipeline(pipeline):
            raise PermissionDenied(
                f"token {self.token.id} of {self.principal.id} may open gates only for pipelines "
                f"{', '.join(self.token.pipelines or ())}; not for {pipeline!r}"
            )


class TokenAuthenticator(Protocol):
    """Checks an API token against the store (the Gatekeeper's ``TokenService``)."""

    def authenticate(self, token_string: str, /) -> tuple[Principal, ApiToken]: ...


class OidcClaimNames(Protocol):
    """Which claims carry the e-mail and the groups (the service's ``OidcConfig``)."""

    @property
    def email_claim(self) -> str: ...

    @property
    def groups_claim(self) -> str: ...


def caller_from_token(tokens: TokenAuthenticator, credential: str) -> Caller:
    principal, token = tokens.authenticate(credential)
    return Caller(principal, AuthMethod.API_TOKEN, token.scope, token)


def claim_groups(claims: Mapping[str, Any], groups_claim: str) -> frozenset[str]:
    """The groups an identity token names: a list of strings or one string; anything else is ignored."""
    raw = claims.get(groups_claim) or []
    return frozenset(g for g in (raw if isinstance(raw, list) else [raw]) if isinstance(g, str))


def caller_from_oidc_claims(
    source: IdentitySource, claims: Mapping[str, Any], names: OidcClaimNames
) -> Caller:
    """Claims of an already verified identity token (``sub`` required). A source principal when
    the e-mail is known there (its groups plus the token's), else a human principal built from the
    token — an IdP-verified person, with the IdP's groups."""
    groups = claim_groups(claims, names.groups_claim)
    email = claims.get(names.email_claim)
    known = None
    if isinstance(email, str) and email:
        try:
            known = source.by_email(email)  # by e-mail only: an IdP's e-mail never names a directory id
        except UnknownPrincipal:
            known = None
    if known is not None:
        principal = known.model_copy(update={"groups": known.groups | groups})
    else:
        principal = Principal(
            id=f"oidc:{claims['sub']}",
            email=email if isinstance(email, str) else None,
            display_name=str(claims.get("name") or claims.get("preferred_username") or claims["sub"]),
            groups=groups,
        )
    return Caller(principal, AuthMethod.OIDC, Scope.DECIDE)


def caller_from_proxy(source: IdentitySource, user: str, groups: Iterable[str] = ()) -> Caller:
    """The user a trusted identity-aware proxy names (id, alias or e-mail), with the extra groups
    it asserts. Whether the header came from the proxy is the HTTP adapter's check."""
    try:
        principal = source.by_email(user) if "@" in user else source.get(user)
    except UnknownPrincipal as exc:
        raise AuthenticationFailed(f"{user!r} (from the proxy) is not in the directory") from exc
    extra = frozenset(groups)
    if extra:
        principal = principal.model_copy(update={"groups": principal.groups | extra})
    return Caller(principal, AuthMethod.PROXY_HEADER, Scope.DECIDE)


def caller_from_slack_email(source: IdentitySource, email: str) -> Caller:
    """The person behind a Slack user, by the profile e-mail Slack vouches for."""
    try:
        principal = source.by_email(email)
    except UnknownPrincipal as exc:
        raise AuthenticationFailed(f"Slack e-mail {email} is not in the directory") from exc
    return Caller(principal, AuthMethod.SLACK, Scope.DECIDE)


def caller_from_teams_member(source: IdentitySource, email: str | None, upn: str | None) -> Caller:
    """The person behind a Teams member, by what the Bot Connector's member lookup says of them:
    the mailbox (``email``), else the sign-in name (``userPrincipalName``, e-mail shaped).

    Both come from the tenant's directory, not from the person. When both are given and each
    names a principal, they must name the same one: a member whose mailbox is one person and
    whose sign-in name is another decides nothing rather than whichever lookup ran first."""
    found: dict[str, Principal] = {}
    for label, name in (("e-mail", email), ("user principal name", upn)):
        if name and "@" in name:
            try:
                found[label] = source.by_email(name)
            except UnknownPrincipal:
                continue
    named = {p.id for p in found.values()}
    if not named:
        shown = " / ".join(dict.fromkeys(n for n in (email, upn) if n)) or "no e-mail or user principal name"
        raise AuthenticationFailed(f"Teams member ({shown}) is not in the directory")
    if len(named) > 1:
        raise AuthenticationFailed(
            f"Teams member's e-mail {email} and user principal name {upn} name different principals "
            f"({', '.join(sorted(named))})"
        )
    return Caller(next(iter(found.values())), AuthMethod.TEAMS, Scope.DECIDE)


def os_account() -> str:
    """The operating-system account running this process, as the kernel records it: the effective
    uid's passwd entry (``pwd.getpwuid(os.geteuid())``), or "" when the uid has none.

    Never an environment variable: ``$USER`` and ``$LOGNAME`` are whatever the caller's shell says,
    and ``USER=bob gatehouse approve`` must not make anyone bob."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return ""


def caller_from_os_account(source: IdentitySource, account: str | None = None) -> Caller:
    """The local user of the CLI: the kernel's OS account (``os_account()`` unless given), which
    must be a principal or alias in the source."""
    account = os_account() if account is None else account
    if not account:
        raise AuthenticationFailed(
            f"cannot tell who you are: uid {os.geteuid()} has no passwd entry (operating-system account)"
        )
    principal = source.find(account)
    if principal is None:
        raise AuthenticationFailed(
            f"{account!r} is not a principal in the directory (identified by your operating-system "
            "account, as the kernel records it; add it as an alias of your principal)"
        )
    return Caller(principal, AuthMethod.LOCAL_OS_USER, Scope.ADMIN)


def caller_from_sandbox(source: IdentitySource, name: str) -> Caller:
    """A person chosen with ``--as NAME`` in a sandbox home: named, never verified, and recorded as
    ``sandbox`` wherever it acts (a policy rule's ``identified_by`` can refuse it). Whether the home
    is a sandbox is the CLI's check (``gate_core.cli_identity``)."""
    principal = source.find(name)
    if principal is None:
        raise AuthenticationFailed(
            f"{name!r} is not a principal in the directory (chosen with --as in this sandbox)"
        )
    return Caller(principal, AuthMethod.SANDBOX, Scope.ADMIN)


def local_actor_name(settings: Settings) -> str:
    """Who a process outside any pipeline acts as, for records that name rather than prove (lineage
    events): the OS account as the home's identity source names it (aliases), else as is — also
    when there is no usable source. Cached per account and settings."""
    return _named_locally(os_account() or f"uid-{os.geteuid()}", settings)


@functools.cache
def _named_locally(account: str, settings: Settings) -> str:
    try:
        principal = load_source(settings).find(account)
    except GatehouseError:
        principal = None
    return principal.id if principal is not None else account
