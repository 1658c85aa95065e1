"""Manifest: weights hit the target domain share; versions are immutable."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from dapt_data.manifest import (
    SHARE_TOLERANCE,
    ManifestError,
    SourceData,
    build_manifest,
    make_counter,
    publish,
    read_manifest,
    write_version,
)
from dapt_data.records import Origin

WHITESPACE: dict[str, str | bool] = {"kind": "whitespace", "approximate": True}


def _sources(domain: list[int], public: list[int]) -> list[SourceData]:
    rows = [
        SourceData(f"d{i}", "completion", Origin.DOMAIN, f"d{i}.jsonl", "0" * 64, 1, t)
        for i, t in enumerate(domain)
    ]
    rows += [
        SourceData(f"p{i}", "completion", Origin.PUBLIC, f"p{i}.jsonl", "0" * 64, 1, t)
        for i, t in enumerate(public)
    ]
    return rows


@pytest.mark.parametrize(
    ("domain", "public", "target"),
    [
        ([7_000], [25_000], 0.02),
        ([1_000_000, 5_000], [9_000_000_000], 0.02),
        ([50_000_000], [1_000_000], 0.02),
        ([123], [456, 789], 0.5),
    ],
)
def test_weights_hit_the_target_share(domain: list[int], public: list[int], target: float) -> None:
    # GIVEN token counts and a target domain share
    # WHEN building the manifest
    manifest = build_manifest("m", _sources(domain, public), target, WHITESPACE, "c")
    # THEN the weighted domain share equals the target within the stated tolerance
    weights = {s.name: s.sampling_weight for s in manifest.sources}
    tokens = {s.name: s.tokens for s in manifest.sources}
    weighted = {n: weights[n] * tokens[n] for n in weights}
    share = sum(v for n, v in weighted.items() if n.startswith("d")) / sum(weighted.values())
    assert abs(share - target) <= SHARE_TOLERANCE
    assert abs(sum(s.mix_probability for s in manifest.sources) - 1) <= SHARE_TOLERANCE
    assert all(weights[n] == 1.0 for n in weights if n.startswith("p"))


def test_target_without_public_data_is_an_error() -> None:
    with pytest.raises(ManifestError, match="public_tokens=0"):
        build_manifest("m", _sources([100], []), 0.02, WHITESPACE, "c")


def test_versions_are_never_overwritten(tmp_path: Path) -> None:
    # GIVEN a published manifest
    root = str(tmp_path)
    first = build_manifest("train", _sources([100], [900]), 0.02, WHITESPACE, "c1")
    v1, uri1, created = publish(root, first)
    assert (v1.version, created) == (1, True)
    # WHEN publishing the same content again, THEN the existing version is returned
    again, uri_again, created_again = publish(root, first)
    assert (again.version, uri_again, created_again) == (1, uri1, False)
    # WHEN publishing different content, THEN it becomes v2 and v1 is unchanged
    second = build_manifest("train", _sources([200], [900]), 0.02, WHITESPACE, "c2")
    v2, _, _ = publish(root, second)
    assert v2.version == 2
    assert read_manifest(uri1) == v1
    # WHEN writing v1 explicitly with other content, THEN it is refused
    with pytest.raises(ManifestError, match="already exists with different content"):
        write_version(root, second.model_copy(update={"version": 1}))


def test_huggingface_tokenizer_counts_tokens(tmp_path: Path) -> None:
    # GIVEN a tokenizer.json (a word-level vocabulary, built here: no hub download)
    vocab = {"[UNK]": 0, "connect": 1, "a": 2, "domain": 3}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    # WHEN counting
    counter = make_counter(str(path))
    # THEN tokens are the tokenizer's, and the manifest records which tokenizer (not approximate)
    assert counter.count(["connect a domain", "domain!"]) == 5
    assert counter.describe()["approximate"] is False
    assert make_counter(None).describe()["approximate"] is True


def test_source_weights_shift_the_mix_within_a_group_and_keep_the_domain_share() -> None:
    # GIVEN two domain sources of equal size, one weighted 3x, and a public source
    sources = [
        SourceData("kb", "completion", Origin.DOMAIN, "kb.jsonl", "0" * 64, 1, 1000, 3.0),
        SourceData("chats", "completion", Origin.DOMAIN, "c.jsonl", "0" * 64, 1, 1000, 1.0),
        SourceData("web", "completion", Origin.PUBLIC, "w.jsonl", "0" * 64, 1, 8000),
    ]
    # WHEN the manifest is built for a 50% domain share
    manifest = build_manifest("m", sources, 0.5, {"kind": "whitespace"}, "2" * 64)
    shares = {s.name: s.mix_probability for s in manifest.sources}
    # THEN the domain keeps its half, split 3:1 between the two sources
    assert manifest.mix.achieved_domain_share == pytest.approx(0.5)
    assert shares == pytest.approx({"kb": 0.375, "chats": 0.125, "web": 0.5}, abs=1e-6)
