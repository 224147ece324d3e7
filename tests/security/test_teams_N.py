"""Adversary N (anyone on the network) against the Teams bot's messaging endpoint.

Property (THREATS.md 1, nobody acts as someone else): an activity at ``/v1/teams/messages`` acts
only when its bearer token is a Bot Connector JWT as Microsoft's "Authentication with the Bot
Connector API" requires — signed with a key the Bot Framework's OpenID metadata publishes (and that
endorses the activity's channel), issued by https://api.botframework.com, for this bot's app id,
unexpired (5 minutes of skew), for the activity's own serviceUrl. Everything else is 401 (403 for
an endorsement), and changes nothing: no decision, no audit entry, no member lookup, no card update,
and no request to a service URL the attacker named (where the bot's own token would go).

Real ``gatehouse serve`` over a socket, on SQLite and PostgreSQL; every token is built by hand with
PyJWT and ``cryptography``; Microsoft's side is the Bot Connector stand-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from tests.conftest import Report
from tests.security.conftest import Home
from tests.service.http_receiver import HttpReceiver
from tests.service.teams_standin import BotConnectorStandIn, invoke, member, new_key

APP_ID = "5c0a2e3e-8f1d-4c6b-9a57-0b7a1e2f9d11"
APP_PASSWORD = "gatehouse~test~client~secret"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CONVERSATION = "19:0a1b2c3d4e5f@thread.tacv2"
EXPORT = {
    "action": "export",
    "target": "s3://exports/customers.csv",
    "datasets": [{"namespace": "warehouse", "name": "customers", "tags": ["pii"]}],
    "requester": "alice",
}


@pytest.fixture
def connector() -> Iterator[BotConnectorStandIn]:
    members = {
        "29:1bob": member("29:1bob", "Bob Builder", "bob@example.com", "bob@example.com", "aad-bob", TENANT),
        "29:1alice": member(
            "29:1alice", "Alice", "alice@example.com", "alice@example.com", "aad-alice", TENANT
        ),
    }
    with BotConnectorStandIn(
        app_id=APP_ID,
        app_password=APP_PASSWORD,
        tenant_id=TENANT,
        members=members,
        conversation_id=CONVERSATION,
    ) as standin:
        webchat_only = new_key(endorsements=["webchat"])  # a key Microsoft publishes for another channel
        standin.keys.append(webchat_only)
        yield standin


def hs256_by_hand(connector: BotConnectorStandIn, secret: bytes, kid: str) -> str:
    """The algorithm-confusion token, built as an attacker would (PyJWT refuses to make it): HMAC
    keyed with the published RSA public key, hoping the verifier uses that key as an HMAC secret."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": "https://api.botframework.com", "aud": APP_ID, "nbf": now - 5, "exp": now + 600}
    header = part({"alg": "HS256", "typ": "JWT", "kid": kid})
    signing_input = f"{header}.{part({**claims, 'serviceUrl': connector.service_url})}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


class Bot:
    """The served home, its Teams conversation, and how to click there."""

    def __init__(self, home: Home, base: str, connector: BotConnectorStandIn, pipeline_token: str) -> None:
        self.home, self.base, self.connector, self.pipeline_token = home, base, connector, pipeline_token

    def open_gate(self) -> tuple[str, str]:
        """A gate, and the id of the card the service posted for it."""
        response = httpx.post(
            f"{self.base}/v1/gates", json=EXPORT, headers={"Authorization": f"Bearer {self.pipeline_token}"}
        )
        assert response.status_code == 200, response.text
        gate_id = str(response.json()["id"])
        posted = self.connector.wait_for("POST", lambda c: f'"gate": "{gate_id}"' in c.text)
        deadline = time.monotonic() + 10  # until the reference is stored: clicks are checked against it
        while not self.home.sql("SELECT 1 FROM gh_notifications WHERE gate_id = :g", g=gate_id):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        return gate_id, str(posted.answer["id"])

    def click(self, gate_id: str, card_id: str, user: str = "29:1bob", **changes: Any) -> dict[str, Any]:
        activity = invoke(
            service_url=self.connector.service_url,
            conversation_id=CONVERSATION,
            reply_to_id=card_id,
            user_id=user,
            aad_object_id=f"aad-{user.removeprefix('29:1')}",
            tenant_id=TENANT,
            app_id=APP_ID,
            verb="approve",
            data={"gate": gate_id},
        )
        activity.update(changes)
        return activity

    def post(self, activity: dict[str, Any], authorization: str | None) -> httpx.Response:
        headers = {"Authorization": authorization} if authorization is not None else {}
        return httpx.post(f"{self.base}/v1/teams/messages", json=activity, headers=headers, timeout=30)

    def status(self, gate_id: str) -> str:
        [(status,)] = self.home.sql("SELECT status FROM gh_gates WHERE id = :g", g=gate_id)
        return str(status)

    def audit_size(self) -> int:
        [(count,)] = self.home.sql("SELECT count(*) FROM gh_audit_log")
        return int(str(count))


@pytest.fixture
def bot(home_for: Callable[..., Home], serve: Callable[[Home], str], connector: BotConnectorStandIn) -> Bot:
    home = home_for(kernel_is="frank")
    pipeline = home.run("token", "create", "--principal", "etl-bot", "--scope", "request").last_line
    policy = home.settings.policy_path
    policy.write_text(
        policy.read_text(encoding="utf-8").replace('"slack:#data-approvals"', '"teamsbot:governance"'),
        encoding="utf-8",
    )
    service_yaml = {
        "public_url": "https://gatehouse.example.test",
        "notifiers": {
            "teamsbot": {
                "type": "teams-bot",
                "app_id": APP_ID,
                "app_password": APP_PASSWORD,
                "tenant_id": TENANT,
                "conversations": {
                    "governance": {"service_url": connector.service_url, "conversation_id": CONVERSATION}
                },
                "token_url": connector.token_url,
                "openid_metadata_url": connector.metadata_url,
            }
        },
    }
    (home.settings.home / "service.yaml").write_text(yaml.safe_dump(service_yaml), encoding="utf-8")
    return Bot(home, serve(home), connector, pipeline)


def test_forged_expired_and_misdirected_tokens_change_nothing(
    bot: Bot, connector: BotConnectorStandIn, report: Report
) -> None:
    gate_id, card_id = bot.open_gate()
    genuine = bot.click(gate_id, card_id)
    now = int(time.time())
    attacker_key = new_key()
    [teams_key, webchat_only] = connector.keys
    public_pem = teams_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with HttpReceiver() as attacker_server:
        attacker_url = f"{attacker_server.url}/smba/amer/"
        attempts: dict[str, tuple[dict[str, Any], str | None, int]] = {
            "no Authorization header": (genuine, None, 401),
            "not a bearer token": (genuine, f"Basic {APP_ID}:{APP_PASSWORD}", 401),
            "not a JWT": (genuine, "Bearer not.a.jwt", 401),
            "forged: the attacker's key under the published kid": (
                genuine,
                f"Bearer {connector.connector_token(key=attacker_key, kid=teams_key.kid)}",
                401,
            ),
            "forged: the attacker's key under its own kid": (
                genuine,
                f"Bearer {connector.connector_token(key=attacker_key)}",
                401,
            ),
            "alg none": (
                genuine,
                "Bearer "
                + jwt.encode(
                    {
                        "iss": "https://api.botframework.com",
                        "aud": APP_ID,
                        "exp": now + 600,
                        "serviceUrl": connector.service_url,
                    },
                    None,  # type: ignore[arg-type]  # PyJWT accepts no key for "none"
                    algorithm="none",
                    headers={"kid": teams_key.kid},
                ),
                401,
            ),
            "HS256 keyed with the published public key": (
                genuine,
                f"Bearer {hs256_by_hand(connector, public_pem, teams_key.kid)}",
                401,
            ),
            "expired beyond the 5-minute skew": (
                genuine,
                f"Bearer {connector.connector_token(exp=now - 360, nbf=now - 3600)}",
                401,
            ),
            "not yet valid beyond the skew": (
                genuine,
                f"Bearer {connector.connector_token(nbf=now + 600, exp=now + 3600)}",
                401,
            ),
            "no expiry": (genuine, f"Bearer {connector.connector_token(exp=None)}", 401),
            "another bot's token (audience)": (
                genuine,
                f"Bearer {connector.connector_token(aud='00000000-0000-0000-0000-00000000dead')}",
                401,
            ),
            "wrong issuer": (
                genuine,
                f"Bearer {connector.connector_token(iss='https://sts.windows.net/' + TENANT + '/')}",
                401,
            ),
            "look-alike issuer": (
                genuine,
                f"Bearer {connector.connector_token(iss='https://api.botframework.com.evil.example')}",
                401,
            ),
            "genuine token, activity names the attacker's serviceUrl": (
                {**genuine, "serviceUrl": attacker_url},
                f"Bearer {connector.connector_token()}",
                401,
            ),
            "token without a serviceUrl claim": (
                genuine,
                f"Bearer {connector.connector_token(serviceUrl=None)}",
                401,
            ),
            "a key that endorses another channel only": (
                genuine,
                f"Bearer {connector.connector_token(key=webchat_only)}",
                403,
            ),
        }
        audit_before = bot.audit_size()
        accepted = []
        for name, (activity, authorization, expected) in attempts.items():
            response = bot.post(activity, authorization)
            if response.status_code != expected:
                accepted.append(f"{name}: {response.status_code} {response.text[:200]}")
            elif response.headers["content-type"] != "application/problem+json":
                accepted.append(f"{name}: answered {response.headers['content-type']}")
        assert accepted == []
        assert attacker_server.requests() == []  # the bot's token never went to the attacker's URL
    assert bot.status(gate_id) == "PENDING"
    assert bot.audit_size() == audit_before
    assert connector.member_lookups() == []
    assert connector.calls("PUT") == []

    # the control: the genuine click, with the genuine token, decides
    response = bot.post(genuine, f"Bearer {connector.connector_token()}")
    assert response.status_code == 200, response.text
    assert response.json()["statusCode"] == 200
    assert bot.status(gate_id) == "APPROVED"
    assert connector.member_lookups() == ["29:1bob"]
    report(
        f"Hostile input: forged, expired or misdirected Teams invokes accepted ({len(attempts)} kinds, "
        f"{bot.home.backend})",
        len(accepted),
        "accepted",
        "0",
    )


def test_the_skew_is_five_minutes_and_keys_are_refetched_on_rotation_not_on_every_unknown_kid(
    bot: Bot, connector: BotConnectorStandIn
) -> None:
    first, first_card = bot.open_gate()
    now = int(time.time())
    # expired two minutes ago: inside the Bot Framework's 5-minute clock skew, so accepted
    skewed = connector.connector_token(exp=now - 120, nbf=now - 3600)
    assert bot.post(bot.click(first, first_card), f"Bearer {skewed}").json()["statusCode"] == 200
    assert bot.status(first) == "APPROVED"
    fetched = connector.key_fetches

    # Microsoft rotates its key: the first token with the new kid makes the service look once more
    connector.rotate()
    second, second_card = bot.open_gate()
    assert (
        bot.post(bot.click(second, second_card), f"Bearer {connector.connector_token()}").status_code == 200
    )
    assert bot.status(second) == "APPROVED"
    assert connector.key_fetches == fetched + 1

    # a flood of tokens with made-up kids does not turn into a flood of key fetches
    third, third_card = bot.open_gate()
    for _ in range(5):
        forged = connector.connector_token(key=new_key())
        assert bot.post(bot.click(third, third_card), f"Bearer {forged}").status_code == 401
    assert connector.key_fetches == fetched + 1
    assert bot.status(third) == "PENDING"


def test_unreachable_key_metadata_fails_closed(bot: Bot, connector: BotConnectorStandIn) -> None:
    gate_id, card_id = bot.open_gate()
    connector.reachable = False
    response = bot.post(bot.click(gate_id, card_id), f"Bearer {connector.connector_token()}")
    assert response.status_code == 503
    assert "cannot fetch the Bot Framework OpenID metadata" in response.json()["detail"]
    assert bot.status(gate_id) == "PENDING"
    assert connector.member_lookups() == []


def test_hostile_activity_bodies_are_refused_before_parsing_and_never_a_server_error(
    bot: Bot, connector: BotConnectorStandIn
) -> None:
    """The SDK's Activity model raises a plain Exception (not a ValidationError) for a channelId
    whose sub-channel contradicts a productInfo entity; before this test that was a 500, reachable
    without any token because the body was parsed before the token was checked."""
    gate_id, card_id = bot.open_gate()
    genuine = bot.click(gate_id, card_id)
    conflicting = {
        **genuine,
        "channelId": "msteams:abc",
        "entities": [{"type": "ProductInfo", "id": "other"}],
    }
    bodies: list[Any] = [
        conflicting,
        {**genuine, "entities": "not a list"},
        {**genuine, "from": [1, 2]},
        {
            **genuine,
            "value": {"action": {"type": "Action.Execute", "verb": "approve", "data": {"gate": ["x"]}}},
        },
        {**genuine, "type": None},
        [genuine],
        "a string",
    ]
    forged = f"Bearer {connector.connector_token(key=new_key())}"
    for body in bodies:
        for authorization in (None, forged):
            response = bot.post(body, authorization)
            assert response.status_code in (400, 401), (body, response.status_code, response.text)
    for body in bodies:  # with the genuine token: a clear 400 or Teams' own error response, never a 5xx
        response = bot.post(body, f"Bearer {connector.connector_token()}")
        assert response.status_code < 500, (body, response.text)
        if response.status_code == 200:
            assert response.json()["statusCode"] == 400
    assert bot.status(gate_id) == "PENDING"
    assert connector.member_lookups() == []
