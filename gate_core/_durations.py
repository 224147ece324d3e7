"""Human durations in config files: ``90s``, ``30m``, ``4h``, ``2d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> timedelta:
    """Parse a duration; a bare number is seconds. Raises ValueError with the accepted forms."""
    if isinstance(text, bool):
        raise ValueError("expected a duration like '30m', '4h' or '2d'")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        compact = text.replace(" ", "").lower()
        if not compact or _PART.sub("", compact):
            raise ValueError(f"{text!r} is not a duration like '90s', '30m', '4h', '2d' or '1h30m'")
        seconds = float(sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(compact)))
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
