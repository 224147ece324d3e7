"""Time windows as people type them: ``--since 30d``, ``--since 2026-10-01``, an ISO time, and
retention periods like ``400d``. Every time Gatehouse keeps is UTC."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from lineage._errors import BadTimeWindow

_PART = re.compile(r"(\d+)([smhdw])")
_DURATION = re.compile(r"(\d+[smhdw])+")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_FORMS = "a duration back from now (90m, 12h, 30d, 2w), a date (2026-10-01) or an ISO time"


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``400d``, ``2w``, ``1d12h``. Raises BadTimeWindow."""
    compact = text.replace(" ", "").lower()
    if not compact or _PART.sub("", compact):
        raise BadTimeWindow(f"{text!r} is not a duration like 90m, 12h, 30d or 2w")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(compact))
    if seconds <= 0:
        raise BadTimeWindow(f"{text!r}: a duration must be positive")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise BadTimeWindow(f"{text!r} is too long a duration") from None


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The start of a window: a duration back from ``now``, a date (midnight UTC) or an ISO time
    (UTC when it names no zone)."""
    text = text.strip()
    if _DURATION.fullmatch(text.replace(" ", "").lower()):
        try:
            return (now or datetime.now(UTC)) - parse_duration(text)
        except OverflowError:
            raise BadTimeWindow(f"{text!r} reaches back before year 1") from None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTimeWindow(f"since {text!r} is not {_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise BadTimeWindow(f"{text!r} is out of range") from None
