"""The notifier port, and what a notifier *type* is: a name, a config class and a factory.

A type is what a plugin ships; an *instance* is one entry under ``notifiers:`` in service.yaml,
built by the type's factory from the entry's validated config:

    pager = NotifierType("pager", PagerConfig, PagerNotifier)   # PagerNotifier(config, context)

The config class is a pydantic model that forbids unknown keys, so a misspelt setting fails
start-up with its field path instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from gate_core._gatekeeper import Gatekeeper
from gate_core._models import Gate
from gate_core._notify_target import NotifyTarget
from gate_core._ports import NotificationRef


class Notifier(Protocol):
    """What the hub calls; every call runs on the hub's pool, and raising means "retry later"."""

    def post_request(self, gate: Gate, target: NotifyTarget) -> NotificationRef | None:
        """Tell ``target`` a gate is waiting. A returned ref is stored, and every later change of
        the gate comes back through :meth:`post_outcome` with it."""

    def post_outcome(self, gate: Gate, ref: NotificationRef) -> None:
        """The gate changed (a decision, approval, rejection, expiry, cancellation)."""

    def post_reminder(self, gate: Gate, target: NotifyTarget) -> None:
        """The rule's reminder is due and the gate is still open."""


@dataclass(frozen=True)
class NotifierContext:
    """What an instance is built with besides its own config."""

    name: str  # the instance's name in service.yaml: the INSTANCE of its targets
    public_url: str  # where the console lives, for links in messages
    gatekeeper: Gatekeeper  # the directory and stored references (Slack updates its cards)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


@dataclass(frozen=True)
class NotifierType(Generic[ConfigT]):
    """A kind of notifier: ``type: NAME`` in service.yaml picks it; ``create`` builds an instance."""

    name: str
    config_class: type[ConfigT]
    create: Callable[[ConfigT, NotifierContext], Notifier]

    def __post_init__(self) -> None:
        extra: Any = self.config_class.model_config.get("extra")
        if extra != "forbid":
            raise TypeError(
                f"notifier type {self.name!r}: {self.config_class.__name__} must set "
                "model_config = ConfigDict(extra='forbid'), or a misspelt setting would be ignored"
            )
