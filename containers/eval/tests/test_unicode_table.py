"""The shipped Unicode table is what its generator writes, and its NFKC is the version's own."""

from __future__ import annotations

import random
import unicodedata

import pytest

from dapt_eval import unicode_table

ON_TABLE_VERSION = pytest.mark.skipif(
    unicodedata.unidata_version != unicode_table.UNICODE_VERSION,
    reason=f"this Python's unicodedata is not Unicode {unicode_table.UNICODE_VERSION}",
)


@ON_TABLE_VERSION
def test_the_shipped_table_is_what_the_generator_writes() -> None:
    expected = unicode_table.render_table(unicode_table.build_table())
    assert unicode_table.TABLE_PATH.read_text(encoding="utf-8") == expected


@ON_TABLE_VERSION
def test_nfkc_between_unassigned_code_points_is_the_versions_nfkc() -> None:
    # Decomposable, combining and Hangul characters beside code points the version does not
    # assign (Cyrillic Extended-D, Kawi, a combining mark of Unicode 17, an unassigned plane).
    alphabet = "ﬁＡé\u0301\u0327\u1100\u1161\u11a8가ẛ\u0323x \U0001e030\U00011f04\u1acf\U000e0300"
    rng = random.Random(0)
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert unicode_table.nfkc(text) == unicodedata.normalize("NFKC", text), ascii(text)


@ON_TABLE_VERSION
def test_the_table_path_equals_this_pythons_own_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a Python of another Unicode version runs, checked here against 3.11's own data.
    rng = random.Random(1)
    alphabet = "aZ_9ßẞİΣς\u0301\u1ace\u1acf\u1c89\ua7dc\U00010d50\U0001e030\uff21ﬁ \u3042"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10))) for _ in range(300)]
    native = [(unicode_table.nfkc(t), unicode_table.casefold(t)) for t in texts]
    words = [unicode_table.is_word_char(c) for c in alphabet]
    monkeypatch.setattr(unicode_table, "NATIVE", False)
    assert [(unicode_table.nfkc(t), unicode_table.casefold(t)) for t in texts] == native
    assert [unicode_table.is_word_char(c) for c in alphabet] == words


def test_the_generator_refuses_another_unicode_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unicode_table, "UNICODE_VERSION", "99.0.0")
    with pytest.raises(ValueError, match=r"unicodedata is Unicode .*, the table is defined as"):
        unicode_table.build_table()
