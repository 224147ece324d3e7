"""Requesters (R), lone approvers (A) and whoever holds a session (N) against passkey-signed
decisions (issue 19). Property 1: a signed rule's decision is made only by the person whose
registered passkey signed exactly that decision, user verified — never by another channel, another
key, another verdict or a phishing origin; property 2 still holds for the requester with a passkey.

Assertions and registrations are built by hand (tests/passkey_authenticator.py: P-256 keys, the
WebAuthn byte layout), the core runs on SQLite and PostgreSQL, and registration goes through the
real console over HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import closing

import httpx
import pytest

from gate_core import Gatekeeper
from gate_core._errors import DecisionRefused, PermissionDenied, SelfApprovalRefused
from gate_core._models import Gate, Verdict
from gate_core._passkeys import PasskeyAssertion, SignatureInvalid, SignatureRequired, decision_challenge
from gate_core._policy import parse_policy
from gate_core.testing import _example_text, actor, example_gatekeeper
from tests.conftest import Report
from tests.gate_core.conftest import prod_redeploy
from tests.passkey_authenticator import SoftAuthenticator
from tests.service.conftest import Service


def signed_policy_text() -> str:
    marker = "    break_glass_groups: [sre-oncall]\n"
    return _example_text("policy.yaml").replace(marker, marker + "    signature: passkey\n")


@pytest.fixture
def core(database_url: str) -> Iterator[Gatekeeper]:
    gatekeeper = example_gatekeeper(
        database_url=database_url, policy=parse_policy(signed_policy_text(), source="signed policy")
    )
    yield gatekeeper
    gatekeeper.store.close()


def backend(database_url: str) -> str:
    return "SQLite" if database_url.startswith("sqlite") else "PostgreSQL"


def challenge(gate: Gate, verdict: str = "approve", comment: str = "") -> bytes:
    return decision_challenge(gate.id, gate.binding_hash, verdict, comment)


def refusal_reasons(gatekeeper: Gatekeeper, gate_id: str) -> list[str]:
    return [
        e.decoded()["payload"]["reason"]
        for e in gatekeeper.audit.entries()
        if e.event == "decision.refused" and e.gate_id == gate_id
    ]


def test_forged_and_misused_signatures_never_decide(
    core: Gatekeeper, database_url: str, report: Report
) -> None:
    bobs, daves = SoftAuthenticator(), SoftAuthenticator(counter=10)  # dave's has signed before
    core.passkeys.register(bobs.passkey("bob"), actor=actor("bob"))
    core.passkeys.register(daves.passkey("dave"), actor=actor("dave"))
    gate = core.open(prod_redeploy(), submitted_by=actor("alice"))

    # dave signs with his own key but names bob's credential (bob's key is the one looked up)
    daves_key_as_bobs = daves.sign(challenge(gate))
    as_bob = PasskeyAssertion(bobs.credential_id, *[getattr(daves_key_as_bobs, f) for f in (
        "authenticator_data", "client_data_json", "signature")])  # fmt: skip
    attempts: dict[str, tuple[str, Verdict, str, PasskeyAssertion | None]] = {
        "no signature (API, Slack, Teams, CLI)": ("dave", Verdict.APPROVE, "", None),
        "bob's signature used by dave": ("dave", Verdict.APPROVE, "", bobs.sign(challenge(gate))),
        "dave's key under bob's credential id": ("bob", Verdict.APPROVE, "", as_bob),
        "signed approve, submitted as reject": ("dave", Verdict.REJECT, "no", daves.sign(challenge(gate))),
        "signed comment differs": (
            "dave",
            Verdict.APPROVE,
            "LGTM",
            daves.sign(challenge(gate, comment="ok")),
        ),
        "no user verification": (
            "dave",
            Verdict.APPROVE,
            "",
            daves.sign(challenge(gate), user_verified=False),
        ),
        "phishing origin": (
            "dave",
            Verdict.APPROVE,
            "",
            daves.sign(challenge(gate), origin="http://localhost.evil.example"),
        ),
        "counter not increasing (cloned)": (
            "dave",
            Verdict.APPROVE,
            "",
            daves.sign(challenge(gate), counter=10),
        ),
    }
    for what, (who, verdict, comment, assertion) in attempts.items():
        with pytest.raises((SignatureRequired, SignatureInvalid)) as refused:
            core.decide(gate.id, actor=actor(who), verdict=verdict, comment=comment, assertion=assertion)
        assert ("counter" in str(refused.value)) == ("counter" in what), (what, refused.value)
        assert core.get(gate.id).decisions == (), what
    assert len(refusal_reasons(core, gate.id)) == len(attempts)  # every attempt audited

    # the genuine one still decides, and verify checks it
    decided = core.decide(
        gate.id, actor=actor("dave"), verdict=Verdict.APPROVE, assertion=daves.sign(challenge(gate))
    )
    assert len(decided.decisions) == 1
    assert core.audit.verify().signed_decisions == 1
    report(
        f"Passkey-signed decisions R/A/N ({backend(database_url)}): forged, misused, replayed, unverified",
        f"{len(attempts)} tried, 0 accepted",
    )


def test_the_requester_with_a_passkey_is_still_the_requester(core: Gatekeeper) -> None:
    alices = SoftAuthenticator()
    core.passkeys.register(alices.passkey("alice"), actor=actor("alice"))
    gate = core.open(prod_redeploy(), submitted_by=actor("alice"))
    with pytest.raises(SelfApprovalRefused):
        core.decide(
            gate.id, actor=actor("alice"), verdict=Verdict.APPROVE, assertion=alices.sign(challenge(gate))
        )


def test_a_removed_or_reset_passkey_signs_nothing_and_both_are_audited(core: Gatekeeper) -> None:
    bobs, spare = SoftAuthenticator(), SoftAuthenticator()
    core.passkeys.register(bobs.passkey("bob", "laptop"), actor=actor("bob"))
    core.passkeys.register(spare.passkey("bob", "spare"), actor=actor("bob"))
    assert core.passkeys.remove("bob", bobs.credential_id, actor=actor("bob"))
    assert not core.passkeys.remove("dave", spare.credential_id, actor=actor("dave"))  # not dave's
    with pytest.raises(PermissionDenied):  # only gatehouse-admins reset someone's passkeys
        core.passkeys.reset("bob", actor=actor("dave"), admin=core.directory.get("dave"))
    frank = core.directory.get("frank")
    assert core.passkeys.reset("bob", actor=actor("frank"), admin=frank, reason="lost phone") == 1
    gate = core.open(prod_redeploy(), submitted_by=actor("alice"))
    for key in (bobs, spare):
        with pytest.raises(DecisionRefused, match="not registered to you"):
            core.decide(
                gate.id, actor=actor("bob"), verdict=Verdict.APPROVE, assertion=key.sign(challenge(gate))
            )
    events = [
        (e.event, e.decoded()["payload"]) for e in core.audit.entries() if e.event.startswith("passkey.")
    ]
    assert [name for name, _ in events] == [
        "passkey.registered",
        "passkey.registered",
        "passkey.removed",
        "passkey.reset",
    ]
    assert events[0][1]["public_key_cose"] and events[0][1]["credential_id"] == bobs.credential_id
    assert events[3][1] == {"principal": "bob", "reason": "lost phone"}
    assert core.audit.verify().ok


# ---------------------------------------------------------------- registration over HTTP


def signed_in(service: Service, who: str) -> httpx.Client:
    client = httpx.Client(base_url=service.base_url, timeout=30)
    page = client.get("/console/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    client.post("/console/login/local", data={"csrf_token": csrf[1], "principal": who, "next": "/console/"})
    return client


def page_csrf(client: httpx.Client) -> str:
    found = re.search(r'data-csrf="([^"]+)"', client.get("/console/passkeys").text)
    assert found is not None
    return found[1]


def test_registration_refuses_other_origins_no_uv_replays_and_forged_forms(
    service_factory: Callable[..., Service], database_url: str, report: Report
) -> None:
    service = service_factory(local_signin=True)
    key = SoftAuthenticator(rp_id="127.0.0.1", origin=service.base_url)
    with closing(signed_in(service, "bob")) as bob:
        csrf = page_csrf(bob)
        headers = {"X-CSRF-Token": csrf}

        def begin() -> bytes:
            options = bob.post("/console/passkeys/options", headers=headers, json={})
            assert options.status_code == 200, options.text
            assert options.json()["authenticatorSelection"]["userVerification"] == "required"
            from webauthn.helpers import base64url_to_bytes

            return base64url_to_bytes(options.json()["challenge"])

        refused = {
            "phishing origin": key.attestation(begin(), origin="http://127.0.0.1.evil.example"),
            "no user verification": key.attestation(begin(), user_verified=False),
            "another challenge": key.attestation(b"x" * 32),
        }
        for what, credential in refused.items():
            if what == "another challenge":
                begin()
            answer = bob.post(
                "/console/passkeys/register", headers=headers, json={"name": what, "credential": credential}
            )
            assert answer.status_code == 400, (what, answer.text)
        no_csrf = bob.post("/console/passkeys/options", json={})
        assert no_csrf.status_code == 403

        genuine = key.attestation(begin())
        ok = bob.post(
            "/console/passkeys/register", headers=headers, json={"name": "laptop", "credential": genuine}
        )
        assert ok.status_code == 200, ok.text
        replay = bob.post(
            "/console/passkeys/register", headers=headers, json={"name": "again", "credential": genuine}
        )
        assert replay.status_code == 400  # the challenge was used up
    [kept] = service.gatekeeper.passkeys.of("bob")
    assert (kept.credential_id, kept.rp_id, kept.origin) == (key.credential_id, "127.0.0.1", service.base_url)
    registered = [e for e in service.gatekeeper.audit.entries() if e.event == "passkey.registered"]
    assert len(registered) == 1
    report(
        f"Passkey registration N ({backend(database_url)}): other origin, no UV, replay, no CSRF",
        "4 tried, 0 accepted",
    )
