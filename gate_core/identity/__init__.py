"""Identity as a port: who principals are, where they come from, how identities compare, and who
a caller is. The layer below the gate domain: it imports nothing of gates, policy or the store.

    Principal, Actor, AuthMethod        who, and how we know (re-exported by gate_core)

    IdentitySource (port)  ◄── Directory         the directory.yaml file; load_source(settings)
          ▲
          │ looks up                    one canonical form (canonical_identity, identity_key):
    caller_from_token                   Principal.identity_keys / person_key, the directory's
    caller_from_oidc_claims             e-mail index, self-approval and one-person-counts-once
    caller_from_proxy                   all compare through it
    caller_from_slack_email
    caller_from_teams_member
    caller_from_os_account ─► Caller(principal, via: AuthMethod, scope)   (the kernel's account)
    caller_from_sandbox    ─► the same, via sandbox: `--as NAME`, sandbox homes only
    local_actor_name       ─► lineage's unverified actor outside a pipeline (os_account(), named
                              by the source when it knows the account)

The Gatekeeper holds an ``IdentitySource``, never the YAML class. Channels (the HTTP service's
auth, the console's OIDC sign-in, Slack's buttons, the CLI, lineage's local actor) read their proof
off the wire and ask this package which principal it names; none maps a proof to a principal itself.
"""

from __future__ import annotations

from gate_core.identity._callers import (
    Caller,
    OidcClaimNames,
    TokenAuthenticator,
    caller_from_oidc_claims,
    caller_from_os_account,
    caller_from_proxy,
    caller_from_sandbox,
    caller_from_slack_email,
    caller_from_teams_member,
    caller_from_token,
    claim_groups,
    local_actor_name,
    os_account,
)
from gate_core.identity._canonical import (
    canonical_identity,
    canonical_key,
    identity_key,
    person_key,
    same_person,
)
from gate_core.identity._directory import Directory
from gate_core.identity._principal import SYSTEM_ACTOR, Actor, AuthMethod, Principal, PrincipalKind
from gate_core.identity._source import IdentitySource, load_source

__all__ = [
    "SYSTEM_ACTOR",
    "Actor",
    "AuthMethod",
    "Caller",
    "Directory",
    "IdentitySource",
    "OidcClaimNames",
    "Principal",
    "PrincipalKind",
    "TokenAuthenticator",
    "caller_from_oidc_claims",
    "caller_from_os_account",
    "caller_from_proxy",
    "caller_from_sandbox",
    "caller_from_slack_email",
    "caller_from_teams_member",
    "caller_from_token",
    "canonical_identity",
    "canonical_key",
    "claim_groups",
    "identity_key",
    "load_source",
    "local_actor_name",
    "os_account",
    "person_key",
    "same_person",
]
