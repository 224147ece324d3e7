"""The gate service: REST API, Slack and Teams approvals, the web console (``gatehouse serve``).

Plugins that add routes or console pages import from ``gate_core.service.extension``.
"""

from __future__ import annotations

from gate_core.service._app import create_app
from gate_core.service._config import ServiceConfig
from gate_core.service._console import Console, Viewer, console_of
from gate_core.service.notify import NotificationHub, Notifier
from gate_core.service.notify._webhook import verify_webhook_signature

__all__ = [
    "Console",
    "NotificationHub",
    "Notifier",
    "ServiceConfig",
    "Viewer",
    "console_of",
    "create_app",
    "verify_webhook_signature",
]
