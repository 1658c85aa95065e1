"""JSON text as JavaScript's `JSON.stringify` writes it, for files both runtimes write.

A result record is written by this runner and by the TypeScript worker (`recordLine`), so its
bytes must not depend on who wrote it. Strings, key order and compact separators already agree;
numbers do not: Python writes `1e-06`, pydantic `1e-6`, JavaScript `0.000001` (and `1e+16` vs
`10000000000000000`, `1.0` vs `1`). `js_number` is ECMA-262's Number::toString, applied to the
shortest round-trip digits Python's `repr` gives (the same digits JavaScript chooses).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any


def js_number(value: float | int) -> str:
    """`String(value)` in JavaScript (ECMA-262 Number::toString, radix 10)."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a JSON number")
    if isinstance(value, int):
        # JavaScript holds a larger integer as the nearest double, and prints that.
        return str(value) if abs(value) <= MAX_SAFE_INTEGER else js_number(float(value))
    if not math.isfinite(value):
        raise ValueError(f"{value!r} has no JSON form (JavaScript writes null)")
    if value == 0:
        return "0"  # -0 too
    if value < 0:
        return "-" + js_number(-value)
    shortest = Decimal(repr(value)).normalize().as_tuple()
    return _number_text("".join(map(str, shortest.digits)), int(shortest.exponent))


def _number_text(digits: str, exponent: int) -> str:
    """Number::toString of `int(digits) * 10**exponent` (digits without trailing zeros)."""
    k = len(digits)
    n = k + exponent  # the value is 0.<digits> x 10^n
    if k <= n <= MAX_PLAIN_EXPONENT:
        return digits + "0" * (n - k)
    if 0 < n <= MAX_PLAIN_EXPONENT:
        return f"{digits[:n]}.{digits[n:]}"
    if MIN_PLAIN_EXPONENT < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"


def js_json(value: Any) -> str:
    """`JSON.stringify(value)`: compact, keys in insertion order, non-ASCII raw."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ",".join(js_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{js_json(str(k))}:{js_json(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"{type(value).__name__} is not JSON")


MAX_SAFE_INTEGER = 2**53 - 1
"""JavaScript's `Number.MAX_SAFE_INTEGER`: integers up to it are exact doubles."""
# Number::toString writes plain digits for 1e-7 < |x| < 1e21, exponent notation outside.
MAX_PLAIN_EXPONENT = 21
MIN_PLAIN_EXPONENT = -6
