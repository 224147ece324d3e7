"""Notifiers: the port, the registry of notifier types, the built-in types and the hub.

    policy rule   notify: ["slack:#data-approvals", "teams:governance", "pager"]
                            │ INSTANCE:ADDRESS (NotifyTarget)
    service.yaml  notifiers: {slack: {type: slack, …}, teams: {type: teams, …}, pager: {type: pager, …}}
                            │ type: picks a NotifierType — built in (slack, teams, teams-bot,
                            │ webhook), registered with register(), or installed under the
                            │ ``gatehouse.notifiers`` entry point
    hub           NotificationHub ─► Notifier.post_request / post_outcome / post_reminder

A plugin distribution ships a :class:`NotifierType` (a name, a pydantic config class that forbids
unknown keys, and a factory taking that config and a :class:`NotifierContext`) and declares it:

    [project.entry-points."gatehouse.notifiers"]
    pager = "gatehouse_pager:pager"
"""

from __future__ import annotations

from gate_core._notify_target import NotifyTarget
from gate_core._ports import NotificationRef
from gate_core.service.notify._hub import NotificationHub
from gate_core.service.notify._port import Notifier, NotifierContext, NotifierType
from gate_core.service.notify._registry import ENTRY_POINT_GROUP, installed_types, notifier_type, register

__all__ = [
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
