"""Who is this caller: each channel's proof resolved to one verified principal, or refused.

    channel       proof, checked by the channel's adapter       resolved here                 via
    API token     gh_… secret, hashed in the store              the token's principal         api-token
    OIDC claims   JWT signature, iss, aud, exp (OidcVerifier)   (iss, sub) link → source, or   oidc
                                                                an e-mail the IdP verified;
                                                                else unlinked: reads only
    proxy header  sent by the socket peer in trusted_ips        id/alias or e-mail → source   proxy-header
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

Groups come from the source (the directory), read on every request, so a decision is judged on
the groups the person has *now*. A channel's own groups (an IdP's groups claim, a proxy's groups
header) are honoured only where configured, and then only narrow: they can take a group away (the
person was just removed at the IdP), never add one the directory does not give.
"""

from __future__ import annotations

import functools
import os
import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gate_core._errors import (
    AuthenticationFailed,
    GatehouseError,
    PermissionDenied,
    PrincipalDeparted,
    UnknownPrincipal,
)
from gate_core._tokens import ApiToken, Scope
from gate_core.identity._principal import Actor, AuthMethod, IdpSubject, Principal, PrincipalKind
from gate_core.identity._source import IdentitySource, has_departed, load_source

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
    subject: IdpSubject | None = None  # the IdP identity that proved it (via oidc)
    unlinked: str | None = None  # why this IdP identity names no principal: it reads, never acts

    @property
    def actor(self) -> Actor:
        link = self.subject
        return Actor(
            principal_id=self.principal.id,
            via=self.via,
            email=self.principal.email,
            issuer=link.issuer if link else None,
            subject=link.subject if link else None,
        )

    @property
    def linked(self) -> bool:
        return self.unlinked is None

    @property
    def asserted_principal(self) -> Principal | None:
        """The principal for the core to decide with, when this channel asserts groups of its own
        (an IdP's claim, the proxy's header) that narrow the directory's. Otherwise None: the core
        reads the directory's person at decision time, so a caller remembered by the token cache
        never decides with groups the directory has since changed (a SCIM leaver or joiner)."""
        return self.principal if self.via in (AuthMethod.OIDC, AuthMethod.PROXY_HEADER) else None

    def require(self, scope: Scope) -> None:
        if self.unlinked is not None:
            raise PermissionDenied(self.unlinked)
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


class OidcIdentityRules(Protocol):
    """How an IdP's verified claims name people (the service's ``OidcConfig``)."""

    @property
    def email_claim(self) -> str: ...

    @property
    def groups_claim(self) -> str | None:
        """The claim carrying the IdP's groups, which can only narrow the directory's; None: ignored."""
        ...

    @property
    def always_verifies_email(self) -> bool:
        """The IdP only ever asserts e-mails it verified (so ``email_verified`` may be absent)."""
        ...


def caller_from_token(tokens: TokenAuthenticator, credential: str) -> Caller:
    principal, token = tokens.authenticate(credential)
    if token.scope is Scope.SCIM:  # the IdP's provisioning credential does nothing else
        raise AuthenticationFailed(f"token {token.id} is a SCIM credential: it is accepted only at /scim/v2")
    return Caller(principal, AuthMethod.API_TOKEN, token.scope, token)


def claim_groups(claims: Mapping[str, Any], groups_claim: str) -> frozenset[str]:
    """The groups an identity token names: a list of strings or one string; anything else is ignored."""
    raw = claims.get(groups_claim) or []
    return frozenset(g for g in (raw if isinstance(raw, list) else [raw]) if isinstance(g, str))


def narrowed(principal: Principal, asserted: Iterable[str] | None) -> Principal:
    """The principal with only those of its directory groups the channel also asserts (when it
    asserts any set at all): a channel takes groups away, never adds one."""
    if asserted is None:
        return principal
    return principal.model_copy(update={"groups": principal.groups & frozenset(asserted)})


def email_verified(claims: Mapping[str, Any], rules: OidcIdentityRules) -> bool:
    """OpenID Connect's ``email_verified`` is a boolean; some IdPs send the string ``"true"``."""
    if rules.always_verifies_email:
        return True
    flag = claims.get("email_verified")
    return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")


def caller_from_oidc_claims(
    source: IdentitySource, claims: Mapping[str, Any], rules: OidcIdentityRules
) -> Caller:
    """Claims of an already verified identity or access token (``iss`` and ``sub`` required).

    1. the source's link for (iss, sub) names the principal;
    2. else an e-mail the IdP verified names it — unless that principal is linked to other
       subjects at this same IdP (an e-mail never overrides a link: refused);
    3. else the identity is *unlinked*: a caller that may read and never decides or opens a gate,
       whose refusals say what to configure. It carries no groups and no e-mail.
    """
    link = IdpSubject.of(str(claims["iss"]), str(claims["sub"]))
    raw_email = claims.get(rules.email_claim)
    email = raw_email.strip() if isinstance(raw_email, str) and raw_email.strip() else None
    _refuse_departed(source, AuthMethod.OIDC, email, f"oidc:{link.subject}")
    principal = source.by_subject(link.issuer, link.subject)
    why_not = ""
    if principal is None and email is not None:
        if not email_verified(claims, rules):
            why_not = f"its e-mail {email} is not verified by the IdP (email_verified is not true)"
        else:
            try:
                principal = source.by_email(email)
            except UnknownPrincipal:
                why_not = f"its verified e-mail {email} is in no directory entry"
            else:
                others = [s for s in source.subjects_of(principal.id) if s.issuer == link.issuer]
                if principal.kind is PrincipalKind.SERVICE:
                    raise AuthenticationFailed(
                        f"{email} is the mailbox of service principal {principal.id}; a service is "
                        "never an IdP person by e-mail (it holds an API token, or a subject link)"
                    )
                if others:
                    raise AuthenticationFailed(
                        f"{principal.id} is linked to other IdP subjects at {link.issuer}; "
                        f"{link.subject} is not one of them, and an e-mail never overrides a link"
                    )
    elif principal is None:
        why_not = "the token carries no e-mail"
    if principal is None:
        display = claims.get("name") or claims.get("preferred_username") or link.subject
        return Caller(
            Principal(id=f"oidc:{link.subject}", display_name=str(display)),
            AuthMethod.OIDC,
            Scope.REQUEST,
            subject=link,
            unlinked=(
                f"IdP identity {link.subject} at {link.issuer} is linked to no principal ({why_not}): "
                "it may read, never decide. To let this person decide, add "
                f"`idp_subjects: [{{issuer: {link.issuer}, subject: {link.subject}}}]` to their entry "
                "in directory.yaml (or, if this IdP verifies every e-mail it asserts, set "
                "`oidc.always_verifies_email: true` in service.yaml)"
            ),
        )
    groups_claim = rules.groups_claim
    asserted = claim_groups(claims, groups_claim) if groups_claim and groups_claim in claims else None
    return Caller(narrowed(principal, asserted), AuthMethod.OIDC, Scope.DECIDE, subject=link)


def caller_from_proxy(source: IdentitySource, user: str, groups: Iterable[str] | None = None) -> Caller:
    """The user a trusted identity-aware proxy names (id, alias or e-mail). ``groups``, the
    proxy's groups header when it is configured and present, only narrows the directory's groups.
    Whether the header came from the proxy (the socket peer) is the HTTP adapter's check."""
    _refuse_departed(source, AuthMethod.PROXY_HEADER, user)
    try:
        principal = source.by_email(user) if "@" in user else source.get(user)
    except UnknownPrincipal as exc:
        raise AuthenticationFailed(f"{user!r} (from the proxy) is not in the directory") from exc
    return Caller(narrowed(principal, groups), AuthMethod.PROXY_HEADER, Scope.DECIDE)


def caller_from_slack_email(source: IdentitySource, email: str) -> Caller:
    """The person behind a Slack user, by the profile e-mail Slack vouches for."""
    _refuse_departed(source, AuthMethod.SLACK, email)
    try:
        principal = source.by_email(email)
    except UnknownPrincipal as exc:
        raise AuthenticationFailed(f"Slack e-mail {email} is not in the directory") from exc
    return Caller(principal, AuthMethod.SLACK, Scope.DECIDE)


def _refuse_departed(source: IdentitySource, via: AuthMethod, *names: str | None) -> None:
    for name in names:
        if name and has_departed(source, name):
            raise PrincipalDeparted(name, via.value)


def caller_from_teams_member(source: IdentitySource, email: str | None, upn: str | None) -> Caller:
    """The person behind a Teams member, by what the Bot Connector's member lookup says of them:
    the mailbox (``email``), else the sign-in name (``userPrincipalName``, e-mail shaped).

    Both come from the tenant's directory, not from the person. When both are given and each
    names a principal, they must name the same one: a member whose mailbox is one person and
    whose sign-in name is another decides nothing rather than whichever lookup ran first."""
    found: dict[str, Principal] = {}
    _refuse_departed(source, AuthMethod.TEAMS, email, upn)
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
