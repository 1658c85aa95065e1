"""Strict parsing of model-emitted JSON, shared by the judge and MCQ distractor generation.

Accepted: the whole reply is one JSON object, or the whole reply is one ```json fenced block
holding one JSON object (surrounding whitespace allowed). Nothing looser: no prose around it,
no "first {...} in the text" search, no repair. A lenient parser would turn garbage into
verdicts; counting garbage as `unparseable` keeps judge quality visible.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"\A```json[ \t]*\n(?P<body>.*?)\n?```\Z", re.DOTALL)


class StrictJsonError(ValueError):
    """The reply is not exactly one JSON object (optionally in a ```json fence)."""


def json_body(text: str) -> str:
    """The text `parse_json_object` parses: the fenced block's body, or the stripped reply."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    return fenced.group("body") if fenced else stripped


def parse_json_object(text: str) -> dict[str, Any]:
    """Return the single JSON object in `text` or raise StrictJsonError saying why."""
    stripped = text.strip()
    body = json_body(text)
    try:
        value = json.loads(body)
    except json.JSONDecodeError as err:
        raise StrictJsonError(
            f"not valid JSON ({err.msg} at column {err.colno}): {stripped[:120]!r}"
        ) from err
    if not isinstance(value, dict):
        raise StrictJsonError(f"expected a JSON object, got {type(value).__name__}")
    return value
