"""One Unicode definition for tokenization and case-folding, shared with the TypeScript fan-out.

Python's ``unicodedata`` and Node's ICU carry different Unicode versions (Python 3.11: 14.0.0;
Node 20 here: 17.0), so ``NFKC``, ``str.casefold`` and "is this a letter" disagreed: 13,569
code points tokenized differently, and ROUGE-L differed by up to 1.0 on such text
(``conformance/unicode.json``). Both runtimes therefore follow ``unicode_table.json``
(Unicode 14.0.0, Python 3.11's data, the version the Lambda and Batch images run) instead of
asking their own Unicode data:

- ``assigned``: code-point ranges assigned in that version. NFKC runs on the text between code
  points outside them; those are kept as they are (that version's NFKC leaves them alone and
  they block composition, so this is its NFKC exactly; the stability policy makes a newer
  runtime's NFKC of the other runs the same).
- ``word``: ranges of word characters (``str.isalnum()``, ``_`` or a combining mark).
- ``printable``: ranges of ``str.isprintable()`` code points, which ``repr`` leaves unescaped
  (error messages quote replies with it; the TypeScript ``pyRepr`` reads these).
- ``casefold``: every code point whose full case-folding (``str.casefold``) is not itself.

On a Python with that ``unicodedata`` (``NATIVE``) the functions call it directly; elsewhere
they read the table.

Regenerate (only with a Python whose ``unicodedata`` is the table's version):
``cd containers/eval && PYTHONPATH=src python3.11 -m dapt_eval.unicode_table --write``;
``tests/test_unicode_table.py`` fails when the shipped file is not what this writes.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).with_name("unicode_table.json")


def build_table() -> dict[str, Any]:
    """The table from the running Python's ``unicodedata`` (refused if it is another version)."""
    if unicodedata.unidata_version != UNICODE_VERSION:
        raise ValueError(
            f"unicodedata is Unicode {unicodedata.unidata_version}, the table is defined as "
            f"Unicode {UNICODE_VERSION}: regenerate with a Python that has it (3.11)"
        )
    chars = [chr(c) for c in range(MAX_CODE_POINT + 1)]
    return {
        "unicode_version": UNICODE_VERSION,
        "regenerate": REGENERATE,
        "assigned": _ranges(chars, lambda ch: unicodedata.category(ch) != "Cn"),
        "word": _ranges(chars, _is_word_char),
        "printable": _ranges(chars, str.isprintable),
        "casefold": {str(ord(ch)): ch.casefold() for ch in chars if ch.casefold() != ch},
    }


def render_table(table: dict[str, Any]) -> str:
    """The file's text: fixed key order, one range or mapping a line."""
    lines = ["{"]
    lines.append(f'  "unicode_version": {json.dumps(table["unicode_version"])},')
    lines.append(f'  "regenerate": {json.dumps(table["regenerate"])},')
    for key in ("assigned", "word", "printable"):
        body = ",\n".join(f"    [{low}, {high}]" for low, high in table[key])
        lines.append(f'  "{key}": [\n{body}\n  ],')
    body = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in table["casefold"].items())
    lines.append(f'  "casefold": {{\n{body}\n  }}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def nfkc(text: str) -> str:
    """NFKC as the table's Unicode version defines it, whatever this Python's version."""
    if NATIVE or text.isascii():
        return unicodedata.normalize("NFKC", text)
    parts = _compiled().unassigned.split(text)
    # re.split with one capturing group: even indexes are runs, odd ones the unassigned chars.
    return "".join(
        unicodedata.normalize("NFKC", part) if i % 2 == 0 else part for i, part in enumerate(parts)
    )


def casefold(text: str) -> str:
    """``str.casefold`` as the table's Unicode version defines it."""
    return text.casefold() if NATIVE else text.translate(_compiled().casefold)


def is_word_char(char: str) -> bool:
    """A letter, number, ``_`` or combining mark in the table's Unicode version."""
    if NATIVE:
        return _is_word_char(char)
    return _compiled().word.fullmatch(char) is not None


@dataclass(frozen=True)
class _Compiled:
    unassigned: re.Pattern[str]
    word: re.Pattern[str]
    casefold: dict[int, str]


@functools.cache
def _compiled() -> _Compiled:
    """The shipped table, read once, as the matchers the functions above use."""
    table = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    if table["unicode_version"] != UNICODE_VERSION:
        version = table["unicode_version"]
        raise ValueError(f"{TABLE_PATH} is Unicode {version}, not {UNICODE_VERSION}")
    return _Compiled(
        unassigned=re.compile(f"([{_char_class(_complement(table['assigned']))}])"),
        word=re.compile(f"[{_char_class(table['word'])}]"),
        casefold={int(code): fold for code, fold in table["casefold"].items()},
    )


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_" or unicodedata.category(char).startswith("M")


def _ranges(chars: list[str], keep: Callable[[str], bool]) -> list[list[int]]:
    """Inclusive [low, high] runs of the code points `keep` is true for."""
    out: list[list[int]] = []
    for char in chars:
        if not keep(char):
            continue
        code = ord(char)
        if out and out[-1][1] == code - 1:
            out[-1][1] = code
        else:
            out.append([code, code])
    return out


def _char_class(ranges: Iterable[Sequence[int]]) -> str:
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges)


def _complement(ranges: list[list[int]]) -> Iterator[tuple[int, int]]:
    """The code points outside `ranges` (sorted, disjoint)."""
    start = 0
    for low, high in ranges:
        if start < low:
            yield start, low - 1
        start = high + 1
    if start <= MAX_CODE_POINT:
        yield start, MAX_CODE_POINT


def main(argv: list[str] | None = None) -> int:
    """``--write`` regenerates the table; ``--check`` exits 1 when the shipped one differs."""
    parser = argparse.ArgumentParser(prog="python -m dapt_eval.unicode_table", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help=f"rewrite {TABLE_PATH.name}")
    mode.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    try:
        text = render_table(build_table())
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.write:
        TABLE_PATH.write_text(text, encoding="utf-8")
        return 0
    if TABLE_PATH.read_text(encoding="utf-8") != text:
        print(f"{TABLE_PATH} is stale: run with --write", file=sys.stderr)
        return 1
    return 0


UNICODE_VERSION = "14.0.0"
NATIVE = unicodedata.unidata_version == UNICODE_VERSION
"""This Python's own data is the table's version (3.11, as in the images): the functions above
then call ``unicodedata`` and ``str`` directly, which is the table's definition exactly (the
table is generated from them; tests/test_unicode_table.py checks both paths agree), and fast.
The table path's NFKC scans a long character class per character (~2 us)."""
MAX_CODE_POINT = 0x10FFFF
REGENERATE = "cd containers/eval && PYTHONPATH=src python3.11 -m dapt_eval.unicode_table --write"


if __name__ == "__main__":
    sys.exit(main())
