"""One spelling for the words a policy matches on: actions, environments and dataset tags.

``Export``, ``EXPORT``, `` export`` and ``ｅｘｐｏｒｔ`` (fullwidth) are the same action; the rule that
applies must never depend on which one a caller typed (THREATS.md, property 4). Every term is
NFKC-normalised, case-folded (NFKC again, since folding can leave non-normal text) and trimmed,
here and only here: the request's models, the policy's loader and the CLI all call this.

Characters that cannot be seen — controls, zero-width and bidi formatting, unassigned or
private-use code points, fillers and variation selectors — are not normalised away but refused:
``p\u200bii`` must neither miss the ``pii`` rule nor quietly become ``pii`` in one reader and not
in another. ``invisible`` finds them; writers refuse the term with the field's name.
"""

from __future__ import annotations

import unicodedata

# Category codes of characters that render as nothing or steer rendering: controls, format
# (zero-width, bidi), surrogates, private use, unassigned, line/paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Default-ignorable code points Unicode files under other categories (fillers, selectors).
_IGNORABLE = frozenset(
    {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0}
    | set(range(0x180B, 0x1810))
    | set(range(0xFE00, 0xFE10))
    | set(range(0xE0100, 0xE01F0))
)


def normalise_term(text: str) -> str:
    """NFKC, case-folded, trimmed: the form every action, environment and tag is matched in."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold()).strip()


def invisible(text: str) -> str | None:
    """The first invisible or control character in ``text`` as ``U+XXXX``, or None."""
    for char in text:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES or ord(char) in _IGNORABLE:
            return f"U+{ord(char):04X}"
    return None


def visible_term_problem(field: str, text: str) -> str | None:
    """``"FIELD: …"`` when ``text`` holds an invisible character, else None."""
    found = invisible(text)
    if found is None:
        return None
    return f"{field}: contains an invisible or control character ({found}); type the term plainly"
