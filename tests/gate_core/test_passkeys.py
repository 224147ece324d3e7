"""The passkey domain (gate_core._passkeys): the challenge is the decision, and an assertion
verifies for exactly that decision — properties over random decisions, with a software
authenticator building WebAuthn assertions byte for byte."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gate_core._errors import InvalidInput, SignatureInvalid
from gate_core._passkeys import (
    PasskeyAssertion,
    counter_problem,
    decision_challenge,
    verify_assertion,
)
from gate_core.testing import actor, example_gatekeeper
from tests.passkey_authenticator import SoftAuthenticator

AUTHENTICATOR = SoftAuthenticator()
KEY = AUTHENTICATOR.passkey("bob")
decisions = st.tuples(
    st.from_regex(r"g[0-9A-Z]{26}", fullmatch=True),
    st.text("0123456789abcdef", min_size=64, max_size=64),
    st.sampled_from(["approve", "reject"]),
    st.text(max_size=200),
)


@settings(max_examples=60, deadline=None)
@given(decisions, decisions)
def test_an_assertion_verifies_for_its_own_decision_and_no_other(
    signed: tuple[str, str, str, str], other: tuple[str, str, str, str]
) -> None:
    assertion = AUTHENTICATOR.sign(decision_challenge(*signed))
    assert verify_assertion(assertion, KEY, decision_challenge(*signed)) == AUTHENTICATOR.counter
    if other != signed:
        with pytest.raises(SignatureInvalid, match="does not verify"):
            verify_assertion(assertion, KEY, decision_challenge(*other))


@given(decisions)
def test_the_challenge_covers_each_field_and_hashes_the_comment(decision: tuple[str, str, str, str]) -> None:
    gate, binding, verdict, comment = decision
    base = decision_challenge(gate, binding, verdict, comment)
    assert len(base) == 32
    assert decision_challenge(gate + "x", binding, verdict, comment) != base
    assert decision_challenge(gate, binding[::-1] + "0", verdict, comment) != base
    assert decision_challenge(gate, binding, "reject" if verdict == "approve" else "approve", comment) != base
    assert decision_challenge(gate, binding, verdict, comment + " ") != base
    assert hashlib.sha256(comment.encode()).hexdigest() not in base.hex()  # hashed again, not embedded


def test_malformed_assertions_are_refused_before_decoding() -> None:
    good: dict[str, object] = dict(AUTHENTICATOR.sign(b"x" * 32).record())
    broken: object
    for broken in ({**good, "signature": "not base64!"}, {**good, "client_data_json": ""}, [], "text"):
        with pytest.raises(SignatureInvalid):
            PasskeyAssertion.from_json(broken)
    with pytest.raises(SignatureInvalid):
        PasskeyAssertion.from_json({**good, "authenticator_data": "A" * 20_000})


def test_counters_must_move_forward_unless_the_authenticator_has_none() -> None:
    assert counter_problem(0, 0) is None
    assert counter_problem(4, 5) is None
    assert counter_problem(5, 5) is not None and counter_problem(5, 3) is not None
    assert counter_problem(0, 1) is None


def test_a_passkey_is_registered_once() -> None:
    gatekeeper = example_gatekeeper()
    key = SoftAuthenticator()
    gatekeeper.passkeys.register(key.passkey("bob"), actor=actor("bob"))
    with pytest.raises(InvalidInput, match="already registered"):
        gatekeeper.passkeys.register(key.passkey("bob"), actor=actor("bob"))
    with pytest.raises(InvalidInput, match="registered by its owner"):
        gatekeeper.passkeys.register(SoftAuthenticator().passkey("bob"), actor=actor("dave"))
    assert len(gatekeeper.passkeys.of("bob")) == 1
