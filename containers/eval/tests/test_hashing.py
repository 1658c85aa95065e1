"""Canonical JSON is the contract with the TypeScript cache-key implementation."""

from __future__ import annotations

import pytest

from dapt_eval.hashing import CanonicalJsonError, canonical_json, sha256_text


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert (
        canonical_json({"b": 1, "a": [1, {"d": 2, "c": "x"}]}) == '{"a":[1,{"c":"x","d":2}],"b":1}'
    )


def test_canonical_json_prints_integral_floats_like_javascript() -> None:
    # JSON.stringify({t: 0.0, p: 1.0, q: 0.7}) === '{"t":0,"p":1,"q":0.7}'
    assert canonical_json({"t": 0.0, "p": 1.0, "q": 0.7}) == '{"p":1,"q":0.7,"t":0}'


def test_canonical_json_keeps_unicode_unescaped() -> None:
    assert canonical_json({"q": "שלום 東京"}) == '{"q":"שלום 東京"}'


@pytest.mark.parametrize("value", [1e-5, 1e20, float("nan"), 2**60])
def test_canonical_json_rejects_numbers_javascript_prints_differently(value: float) -> None:
    with pytest.raises(CanonicalJsonError, match=r"\$\.x"):
        canonical_json({"x": value})


def test_sha256_text_is_hex_of_utf8() -> None:
    assert sha256_text("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
