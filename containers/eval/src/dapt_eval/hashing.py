"""Canonical JSON and content hashes shared by the Python runner and the TypeScript fan-out.

Everything here is a *file-format contract*: the Step Functions/Lambda fan-out computes the
same `cache_key` in TypeScript, so any change here is a breaking change (see README.md).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

JsonValue = Any


class CanonicalJsonError(ValueError):
    """A value cannot be written identically by Python's json and JavaScript's JSON.stringify."""


def canonicalize(value: JsonValue, path: str = "$") -> JsonValue:
    """Return `value` with numbers normalised so Python and JavaScript print them identically.

    Why: Python prints 1.0 as "1.0" and 1e-05 as "1e-05"; JavaScript prints "1" and "0.00001".
    Integral floats become ints; other floats must lie in [1e-4, 1e16) in magnitude, where both
    languages print the shortest round-trip decimal the same way. Anything else is rejected
    rather than silently hashed differently by the two runners.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return _check_int(value, path)
    if isinstance(value, float):
        return _canonical_float(value, path)
    if isinstance(value, dict):
        return {str(k): canonicalize(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonicalize(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise CanonicalJsonError(f"{path}: value {value!r} of type {type(value).__name__} is not JSON")


def canonical_json(value: JsonValue) -> str:
    """Serialise with sorted keys, no whitespace and raw (unescaped) UTF-8, like the TS side."""
    return json.dumps(
        canonicalize(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def sha256_text(text: str) -> str:
    """Hex SHA-256 of the UTF-8 bytes of `text`."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_sha256(row: JsonValue) -> str:
    """Hex SHA-256 of an item row's canonical JSON: its content, in the cache key.

    `row` is the object as read from `items.jsonl` (the fields it set, no defaults added), so
    the TypeScript fan-out, which keeps the parsed row, hashes the same bytes. Editing any field
    of a row (a gold label, a reference answer) changes the key, so no stale record is reused.
    """
    return sha256_text(canonical_json(row))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's raw bytes (no newline or encoding normalisation)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(DEFAULT_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_int(value: int, path: str) -> int:
    if abs(value) > MAX_SAFE_INTEGER:
        raise CanonicalJsonError(
            f"{path}: integer {value} exceeds JavaScript's safe integer range (2^53-1)"
        )
    return value


def _canonical_float(value: float, path: str) -> float | int:
    if not math.isfinite(value):
        raise CanonicalJsonError(f"{path}: {value} is not a finite number")
    if value.is_integer():
        return _check_int(int(value), path)
    if not MIN_PORTABLE_FLOAT <= abs(value) < MAX_PORTABLE_FLOAT:
        raise CanonicalJsonError(
            f"{path}: float {value!r} is outside [1e-4, 1e16); Python and JavaScript print it "
            "differently, so it cannot be part of a content hash"
        )
    return value


DEFAULT_CHUNK_BYTES = 1 << 20
MAX_SAFE_INTEGER = 2**53 - 1
MIN_PORTABLE_FLOAT = 1e-4
MAX_PORTABLE_FLOAT = 1e16
