"""Notifier types, instances and targets: the registry, config validation, the legacy keys.

No server here (see test_notifier_plugin.py for a plugin in a real `gatehouse serve`); plugins
are installed into a temporary directory on ``sys.path``, as pip would install them.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from gate_core import ConfigError, GateRequest, PolicyError, parse_policy
from gate_core.service import ServiceConfig, notify
from gate_core.service._app import build_notifiers
from gate_core.service.notify import NotifierContext, NotifierType, NotifyTarget, _registry
from gate_core.service.notify._slack import SlackNotifier
from gate_core.service.notify._teams import TeamsNotifier
from gate_core.service.notify._webhook import WebhookDeliveryFailed, WebhookNotifier
from gate_core.testing import actor, example_gatekeeper
from tests.service.http_receiver import HttpReceiver
from tests.service.notifier_plugin import install_plugin

BUILT_IN = ["slack", "teams", "teams-bot", "webhook"]


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, NotifierType[Any]]:
    """Each test registers into (and loads plugins into) its own copy of the registry."""
    types = dict(_registry._types)
    monkeypatch.setattr(_registry, "_types", types)
    return types


def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    module = f"gatehouse_pager_{uuid.uuid4().hex[:8]}"
    monkeypatch.syspath_prepend(str(install_plugin(tmp_path / "site", module)))
    return module


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str


class _Quiet:
    def __init__(self, config: _Config, context: NotifierContext) -> None:
        self.config, self.context = config, context

    def post_request(self, gate: Any, target: NotifyTarget) -> None:
        return None

    def post_outcome(self, gate: Any, ref: Any) -> None:
        return None

    def post_reminder(self, gate: Any, target: NotifyTarget) -> None:
        return None


# ---------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("text", "instance", "address", "canonical"),
    [
        ("slack:#data-approvals", "slack", "#data-approvals", "slack:#data-approvals"),
        ("slack:@U0123", "slack", "@U0123", "slack:@U0123"),
        ("  Teams : governance ", "teams", "governance", "teams:governance"),
        ("webhook:siem", "webhook", "siem", "webhook:siem"),
        ("pager", "pager", "", "pager"),
        ("pager:", "pager", "", "pager"),
        ("on-call_2:urgent: now", "on-call_2", "urgent: now", "on-call_2:urgent: now"),
    ],
)
def test_one_parser_reads_every_target(text: str, instance: str, address: str, canonical: str) -> None:
    target = NotifyTarget.parse(text)
    assert (target.instance, target.address, str(target)) == (instance, address, canonical)
    assert NotifyTarget.parse(str(target)) == target


@pytest.mark.parametrize("text", ["", ":#chan", "#chan", "sl ack:x", "-slack:x", "slack!:x", "x" * 64, "é:x"])
def test_malformed_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="want INSTANCE:ADDRESS"):
        NotifyTarget.parse(text)


def test_a_policy_with_a_malformed_target_does_not_load() -> None:
    policy = """\
version: 1
rules:
  - name: pii
    match: {action: [export]}
    outcome: require
    approvers: {groups: [data-governance]}
    notify: ["slack:#ok", "#data-approvals"]
"""
    with pytest.raises(PolicyError) as raised:
        parse_policy(policy, source="policy.yaml")
    assert raised.value.field_path == "rules.0.notify.1"
    assert "want INSTANCE:ADDRESS" in raised.value.problem
    # the text is kept as written: gates store it and the policy's hash is the file's
    assert parse_policy(policy.replace("#data-approvals", "Slack : #x")).rules[0].notify[1] == "Slack : #x"


# ---------------------------------------------------------------- the registry


def test_the_public_api_of_notify_is_exactly_this() -> None:
    assert sorted(notify.__all__) == sorted(
        [
            "ENTRY_POINT_GROUP",
            "NotificationHub",
            "NotificationRef",
            "Notifier",
            "NotifierContext",
            "NotifierType",
            "NotifyTarget",
            "installed_types",
            "notifier_type",
            "register",
        ]
    )
    assert notify.ENTRY_POINT_GROUP == "gatehouse.notifiers"


def test_built_in_types_are_registered_in_code() -> None:
    assert [t for t in notify.installed_types() if t in BUILT_IN] == BUILT_IN
    assert {name: notify.notifier_type(name).name for name in BUILT_IN} == {n: n for n in BUILT_IN}


def test_a_config_class_must_forbid_unknown_keys() -> None:
    class Lenient(BaseModel):
        url: str

    with pytest.raises(TypeError, match=r"Lenient must set model_config = ConfigDict\(extra='forbid'\)"):
        NotifierType("lenient", Lenient, _Quiet)  # type: ignore[arg-type]


def test_register_refuses_a_second_type_under_a_taken_name() -> None:
    quiet = notify.register(NotifierType("quiet", _Config, _Quiet))
    assert notify.register(quiet) is quiet
    assert notify.notifier_type("quiet") is quiet
    with pytest.raises(ValueError, match="'slack' is already registered"):
        notify.register(NotifierType("slack", _Config, _Quiet))


def test_a_type_registered_in_code_builds_instances_with_their_context() -> None:
    notify.register(NotifierType("quiet", _Config, _Quiet))
    config = ServiceConfig.model_validate(
        {"public_url": "https://gh.test", "notifiers": {"hush": {"type": "quiet", "url": "u"}}}
    )
    gatekeeper = example_gatekeeper()
    [(name, built)] = build_notifiers(config, gatekeeper).items()
    assert name == "hush" and isinstance(built, _Quiet)
    assert built.config == _Config(url="u")
    assert built.context == NotifierContext("hush", "https://gh.test", gatekeeper)


def test_unknown_type_names_the_type_and_the_installed_types() -> None:
    with pytest.raises(ConfigError) as raised:
        ServiceConfig.model_validate({"notifiers": {"pager": {"type": "pagerduty", "key": "s3cr3t"}}})
    assert str(raised.value) == (
        "service.yaml: notifiers.pager.type: unknown notifier type 'pagerduty'; "
        f"installed types: {', '.join(notify.installed_types())}"
    )
    assert set(BUILT_IN) <= set(notify.installed_types())
    with pytest.raises(ConfigError, match=r"^service.yaml: notifiers.pager.type: required \(one of: slack"):
        ServiceConfig.model_validate({"notifiers": {"pager": {"url": "x"}}})


def test_plugins_are_found_through_the_entry_point_and_loaded_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = plugin_site(tmp_path, monkeypatch)
    assert {"pager", "broken-pager"} <= set(notify.installed_types())
    config = ServiceConfig.model_validate(
        {"notifiers": {"oncall": {"type": "pager", "url": "http://x.test"}}}
    )
    [(name, built)] = build_notifiers(config, example_gatekeeper()).items()
    assert name == "oncall"
    assert type(built).__module__ == module
    assert (type(built).__name__, built.instance) == ("Pager", "oncall")  # type: ignore[attr-defined]


def test_a_plugin_that_does_not_load_fails_start_up_only_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = plugin_site(tmp_path, monkeypatch)
    (tmp_path / "site" / module / "__init__.py").write_text("raise ImportError('no pager library')\n")
    # not named: the service starts without it
    assert ServiceConfig.model_validate({"teams": {"governance": "https://x.test/w"}}).notifier_instances
    with pytest.raises(ConfigError) as raised:
        ServiceConfig.model_validate({"notifiers": {"oncall": {"type": "pager", "url": "http://x.test"}}})
    assert str(raised.value) == (
        f"service.yaml: notifiers.oncall.type: notifier type 'pager' ({module}:pager) could not be "
        "loaded: ImportError: no pager library"
    )


def test_an_entry_point_must_name_a_notifier_type_of_its_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = plugin_site(tmp_path, monkeypatch)
    entry_points = tmp_path / "site" / f"{module}-0.1.dist-info" / "entry_points.txt"
    entry_points.write_text(f"[gatehouse.notifiers]\npager = {module}:broken\nfire = {module}:Pager\n")
    for type_name, value in (("pager", f"{module}:broken"), ("fire", f"{module}:Pager")):
        with pytest.raises(ConfigError, match=re.escape(f"entry point {value} must name a NotifierType")):
            ServiceConfig.model_validate({"notifiers": {"x": {"type": type_name, "url": "u"}}})


# ---------------------------------------------------------------- service.yaml


@pytest.mark.parametrize(
    ("notifiers", "message"),
    [
        (
            {"siem": {"type": "webhook", "endpoints": {"a": {"url": "ftp://x.test/s3cr3t", "secret": "s"}}}},
            "notifiers.siem.endpoints.a.url: not an http(s) URL",
        ),
        (
            {"siem": {"type": "webhook", "endpoints": {"a": {"url": "https://x.test", "secret": ""}}}},
            "notifiers.siem.endpoints.a.secret: must not be empty",
        ),
        (
            {"gov": {"type": "teams", "webhooks": {"a": "not a url s3cr3t"}}},
            "notifiers.gov.webhooks.a: not an http(s) webhook URL",
        ),
        (
            {"gov": {"type": "teams", "webhooks": {}, "colour": "red"}},
            "notifiers.gov.colour: Extra inputs are not permitted",
        ),
        ({"chat": {"type": "slack", "signing_secret": "s3cr3t"}}, "notifiers.chat.bot_token: Field required"),
        (
            {"chat": {"type": "slack", "bot_token": "s3cr3t"}},  # no way for clicks to come back
            "notifiers.chat: set signing_secret (clicks at the Request URL) or app_token",
        ),
        (
            {"chat": {"type": "slack", "bot_token": "s3cr3t", "app_token": "xoxb-s3cr3t"}},
            "notifiers.chat: app_token must be the app-level token",
        ),
        ({"Chat": {"type": "slack"}}, "notifiers.Chat: an instance name is lower-case letters"),
        ({"a:b": {"type": "slack"}}, "notifiers.a:b: an instance name is lower-case letters"),
    ],
)
def test_instance_config_errors_name_the_field_path_never_a_secret(
    notifiers: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match="^service.yaml: " + re.escape(message)) as raised:
        ServiceConfig.model_validate({"notifiers": notifiers})
    assert "s3cr3t" not in str(raised.value)


def test_errors_from_service_yaml_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text("notifiers:\n  siem: {type: webhook, endpoints: {a: {url: 'https://x.test'}}}\n")
    with pytest.raises(
        ConfigError, match=f"^{re.escape(str(path))}: notifiers.siem.endpoints.a.secret: Field"
    ):
        ServiceConfig.load(tmp_path, environ={})


LEGACY: dict[str, Any] = {
    "slack": {"bot_token": "xoxb-1", "signing_secret": "sig", "api_url": "http://127.0.0.1:9/api/"},
    "teams": {"governance": "https://x.test/w"},
    "webhooks": {"siem": {"url": "https://x.test/h", "secret": "s"}},
}
CURRENT: dict[str, Any] = {
    "notifiers": {
        "slack": {"type": "slack", **LEGACY["slack"]},
        "teams": {"type": "teams", "webhooks": LEGACY["teams"]},
        "webhook": {"type": "webhook", "endpoints": LEGACY["webhooks"]},
    }
}


def test_legacy_keys_are_the_same_instances_with_one_deprecation_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gatehouse.service"):
        legacy = ServiceConfig.model_validate(LEGACY)
    assert [r.getMessage() for r in caplog.records] == [
        "service.yaml: slack: is deprecated; write notifiers: {slack: {type: slack, bot_token: …, "
        "signing_secret: …}} (targets unchanged)",
        "service.yaml: teams: is deprecated; write notifiers: {teams: {type: teams, webhooks: "
        "<the teams: mapping>}} (targets unchanged)",
        "service.yaml: webhooks: is deprecated; write notifiers: {webhook: {type: webhook, endpoints: "
        "<the webhooks: mapping>}} (targets unchanged)",
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gatehouse.service"):
        current = ServiceConfig.model_validate(CURRENT)
    assert caplog.records == []

    for config in (legacy, current):
        instances = config.notifier_instances
        assert {n: (i.type.name, i.config) for n, i in instances.items()} == {
            n: (i.type.name, i.config) for n, i in current.notifier_instances.items()
        }
        assert config.slack_app() == instances["slack"].config
        built = build_notifiers(config, example_gatekeeper())
        assert {name: type(n) for name, n in built.items()} == {
            "slack": SlackNotifier,
            "teams": TeamsNotifier,
            "webhook": WebhookNotifier,
        }
    # so the targets of existing policies pick the same instances and addresses
    assert NotifyTarget.parse("teams:governance") == NotifyTarget("teams", "governance")
    assert NotifyTarget.parse("webhook:siem") == NotifyTarget("webhook", "siem")


def test_a_legacy_key_and_an_instance_of_the_same_name_are_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"^service\.yaml: teams: and notifiers\.teams: both configure 'teams'"
    ):
        ServiceConfig.model_validate(
            {"teams": LEGACY["teams"], "notifiers": {"teams": CURRENT["notifiers"]["teams"]}}
        )


def test_one_slack_app_receives_the_clicks() -> None:
    second = {"type": "slack", "bot_token": "b", "signing_secret": "s"}
    with pytest.raises(ConfigError, match="notifiers: slack, slack2 are all of type slack; one Slack app"):
        ServiceConfig.model_validate({"notifiers": {**CURRENT["notifiers"], "slack2": second}})
    assert ServiceConfig().slack_app() is None


def test_slack_secrets_from_the_environment_fill_the_slack_instance(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"GATEHOUSE_SLACK_BOT_TOKEN": "xoxb-env", "GATEHOUSE_SLACK_SIGNING_SECRET": "sig-env"}
    with caplog.at_level(logging.WARNING, logger="gatehouse.service"):
        config = ServiceConfig.load(tmp_path, environ=env)
    assert caplog.records == []  # nothing to rewrite: the file has no legacy key
    app = config.slack_app()
    assert app is not None
    assert (app.bot_token.get_secret_value(), app.signing_secret.get_secret_value()) == (
        "xoxb-env",
        "sig-env",
    )

    (tmp_path / "service.yaml").write_text(
        "notifiers:\n  slack: {type: slack, api_url: 'http://127.0.0.1:9/'}\n"
    )
    app = ServiceConfig.load(tmp_path, environ=env).slack_app()
    assert app is not None and (app.api_url, app.bot_token.get_secret_value()) == (
        "http://127.0.0.1:9/",
        "xoxb-env",
    )

    (tmp_path / "service.yaml").write_text(
        "slack: {api_url: 'http://127.0.0.1:9/'}\n"
    )  # legacy: filled there
    app = ServiceConfig.load(tmp_path, environ=env).slack_app()
    assert app is not None and app.signing_secret.get_secret_value() == "sig-env"

    (tmp_path / "service.yaml").write_text("notifiers:\n  slack: {type: teams, webhooks: {}}\n")
    with pytest.raises(
        ConfigError, match=r"notifiers\.slack: GATEHOUSE_SLACK_\* are set; this instance is not"
    ):
        ServiceConfig.load(tmp_path, environ=env)


def test_rules_notifying_an_unconfigured_instance_are_reported_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gatekeeper = example_gatekeeper()  # the example policy notifies slack:#data-approvals and others
    notified = sorted({NotifyTarget.parse(t).instance for r in gatekeeper.policy.rules for t in r.notify})
    assert "slack" in notified
    with caplog.at_level(logging.ERROR, logger="gatehouse.service"):
        build_notifiers(ServiceConfig.model_validate({"teams": LEGACY["teams"]}), gatekeeper)
    reported = [r.getMessage() for r in caplog.records if "configures no notifier instance" in r.getMessage()]
    assert len(reported) == len([n for n in notified if n != "teams"])
    assert any("notify 'slack', but service.yaml configures no notifier instance" in m for m in reported)
    assert all("(configured: teams)" in m for m in reported)


def test_built_in_instances_under_other_names_say_which_target_failed() -> None:
    gatekeeper = example_gatekeeper()
    gate = gatekeeper.open(GateRequest(action="export", requester="alice"), submitted_by=actor("etl-bot"))
    with HttpReceiver(status=400) as receiver:
        endpoints = {"siem": {"url": receiver.url, "secret": "s"}}
        config = ServiceConfig.model_validate(
            {"notifiers": {"alerts": {"type": "webhook", "endpoints": endpoints}}}
        )
        alerts = build_notifiers(config, gatekeeper)["alerts"]
        with pytest.raises(WebhookDeliveryFailed, match=r"^alerts:siem: HTTP 400"):
            alerts.post_request(gate, NotifyTarget.parse("alerts:siem"))
