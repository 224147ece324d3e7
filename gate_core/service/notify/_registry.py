"""Which notifier types exist, and turning service.yaml's ``notifiers:`` into instances.

    notifiers:
      slack:   {type: slack, bot_token: xoxb-…, signing_secret: …}       # targets slack:#chan, slack:@U1
      teams:   {type: teams, webhooks: {governance: https://…}}          # target  teams:governance
      teamsbot: {type: teams-bot, app_id: …, app_password: …, tenant_id: …,
                 conversations: {governance: {service_url: …, conversation_id: …}}}  # teamsbot:governance
      webhook: {type: webhook, endpoints: {siem: {url: https://…, secret: …}}}   # webhook:siem
      pager:   {type: pager, …whatever PagerConfig accepts}              # target  pager or pager:ADDRESS

Types come from two places, looked up by the ``type:`` name:
- built in, or registered in code with :func:`register` (tests, embedding);
- installed distributions, through the ``gatehouse.notifiers`` entry point group, whose entry
  name is the type name and whose value is a :class:`NotifierType`:

      [project.entry-points."gatehouse.notifiers"]
      pager = "gatehouse_pager:pager"

An entry point is loaded only when service.yaml names its type, so a broken plugin nobody uses
cannot stop the service; one that is named and broken stops start-up with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from gate_core._errors import ConfigError
from gate_core._gatekeeper import Gatekeeper
from gate_core.service.notify._port import Notifier, NotifierContext, NotifierType
from gate_core.service.notify._slack import SLACK
from gate_core.service.notify._teams import TEAMS
from gate_core.service.notify._teams_bot import TEAMS_BOT
from gate_core.service.notify._webhook import WEBHOOK

ENTRY_POINT_GROUP = "gatehouse.notifiers"

_lock = threading.Lock()
_types: dict[str, NotifierType[Any]] = {t.name: t for t in (SLACK, TEAMS, TEAMS_BOT, WEBHOOK)}


def register(notifier_type: NotifierType[Any]) -> NotifierType[Any]:
    """Make a type available by name (returns it, so it can decorate a module-level value).
    Registering the same object twice is harmless; another type under a taken name is refused."""
    with _lock:
        known = _types.setdefault(notifier_type.name, notifier_type)
    if known is not notifier_type:
        raise ValueError(f"a notifier type named {notifier_type.name!r} is already registered")
    return notifier_type


def installed_types() -> list[str]:
    """Every type name service.yaml may use: registered ones and installed entry points."""
    with _lock:
        names = set(_types)
    return sorted(names | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def notifier_type(name: str) -> NotifierType[Any]:
    with _lock:
        known = _types.get(name)
    if known is not None:
        return known
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise ConfigError(f"unknown notifier type {name!r}; installed types: {', '.join(installed_types())}")
    entry = found[0]
    try:
        loaded = entry.load()
    except Exception as exc:  # whatever a plugin's import raises, start-up reports it as config
        raise ConfigError(
            f"notifier type {name!r} ({entry.value}) could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(loaded, NotifierType) or loaded.name != name:
        raise ConfigError(
            f"notifier type {name!r}: entry point {entry.value} must name a NotifierType called {name!r}"
        )
    return register(loaded)


@dataclass(frozen=True)
class ConfiguredNotifier:
    """One validated ``notifiers:`` entry, ready to build once the service has its gatekeeper."""

    name: str
    type: NotifierType[Any]
    config: BaseModel

    def create(self, *, public_url: str, gatekeeper: Gatekeeper) -> Notifier:
        return self.type.create(self.config, NotifierContext(self.name, public_url, gatekeeper))


def configure(name: str, entry: Mapping[str, Any], *, where: str, hoisted: str = "") -> ConfiguredNotifier:
    """Validate one instance's entry (``type:`` + the type's own settings). Errors name ``where``
    (e.g. ``service.yaml: notifiers.pager``) and the path of the bad field, never a value.

    ``hoisted`` is for the legacy keys, whose whole mapping became one field of the config
    (``teams: {…}`` is ``webhooks: {…}``): errors then name the field where the user wrote it."""
    settings = dict(entry)
    type_name = settings.pop("type", None)
    if not isinstance(type_name, str) or not type_name:
        raise ConfigError(f"{where}.type: required (one of: {', '.join(installed_types())})")
    try:
        kind = notifier_type(type_name)
    except ConfigError as exc:
        raise ConfigError(f"{where}.type: {exc}") from exc
    try:
        config = kind.config_class.model_validate(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        field = ".".join(loc[1:] if hoisted and loc[:1] == [hoisted] else loc)
        problem = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}{'.' + field if field else ''}: {problem}") from exc
    return ConfiguredNotifier(name, kind, config)
