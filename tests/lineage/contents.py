"""Sentinels and surfaces for the never-contents proof (tests/lineage/test_never_contents.py).

A *surface* is any place content could leak to: a database file, a table dump, a log, a query's
output, an emitted OpenLineage event. The proof feeds DataFrames full of sentinel values through
every path and then searches every surface for every sentinel, as text and as packed binary.

Other legs join the proof by appending a factory to ``EXTRA_LEGS``: it gets a scratch directory
and returns a ``Leg`` — an extra sink that receives every recorded event (e.g. the OpenLineage
emitter writing to a file transport) and a function listing the surfaces it produced::

    from tests.lineage.contents import EXTRA_LEGS, Leg
    EXTRA_LEGS.append(lambda scratch: Leg(sink=my_emitter(scratch), surfaces=lambda: read_files(scratch)))
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lineage import LineageSink


@dataclass
class Leg:
    sink: LineageSink
    surfaces: Callable[[], Iterable[tuple[str, bytes]]]


EXTRA_LEGS: list[Callable[[Path], Leg]] = []


@dataclass
class Sentinels:
    strings: set[str] = field(default_factory=set)
    ints: set[int] = field(default_factory=set)
    floats: set[float] = field(default_factory=set)

    def needles(self) -> list[tuple[str, bytes]]:
        """Every sentinel as it could appear: UTF-8 text (also JSON-escaped is identical for
        these ASCII values), decimal text, and SQLite/PostgreSQL binary (both byte orders)."""
        found: list[tuple[str, bytes]] = [(s, s.encode()) for s in self.strings]
        for n in self.ints:
            found += [
                (str(n), str(n).encode()),
                (f"{n} >q", struct.pack(">q", n)),
                (f"{n} <q", struct.pack("<q", n)),
            ]
        for x in self.floats:
            found += [
                (repr(x), repr(x).encode()),
                (f"{x} >d", struct.pack(">d", x)),
                (f"{x} <d", struct.pack("<d", x)),
            ]
        return found


def leaks(needles: list[tuple[str, bytes]], surfaces: Iterable[tuple[str, bytes]]) -> list[str]:
    """``surface: sentinel`` for every sentinel found on any surface (empty = no content leaked)."""
    found = []
    for name, blob in surfaces:
        for label, needle in needles:
            if needle in blob:
                found.append(f"{name}: {label}")
    return found
