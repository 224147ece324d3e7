"""lineage._ol_events on its own: the depth count read from the raw body agrees with the depth of
the JSON it encodes, whatever its strings hold."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lineage._ol_events import MAX_DEPTH, body_facts

# Text that looks like structure: brackets, quotes, backslashes and escapes of every kind.
_TRICKY_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\/\n\x1f\x00é☃a:,'), max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY_TEXT, inner, max_size=4),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(value=_JSON, nest=st.integers(min_value=0, max_value=MAX_DEPTH + 4), ascii_only=st.booleans())
def test_body_depth_is_the_depth_of_the_json(value: Any, nest: int, ascii_only: bool) -> None:
    for _ in range(nest):
        value = [value] if nest % 2 else {"k]{": value}
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    expected = _depth(value)
    counted = body_facts(body).depth
    # counted exactly up to the limit and one past it; deeper bodies stop counting there (refused)
    assert counted == expected if expected <= MAX_DEPTH + 2 else counted > MAX_DEPTH + 1
