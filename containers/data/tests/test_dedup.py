"""Dedup: exact copies and constructed near-duplicates go; distinct texts stay."""

from __future__ import annotations

import random

from dapt_data.config import DedupConfig
from dapt_data.dedup import dedup_records, signature
from pipeline_fixtures import english_paragraph, record


def _near_copy(text: str, rng: random.Random, edits: int) -> str:
    """Change `edits` words: a near-duplicate (boilerplate footer, typo fix, date change)."""
    words = text.split()
    for _ in range(edits):
        words[rng.randrange(len(words))] = rng.choice(["quickly", "2025", "indeed", "very"])
    return " ".join(words)


def test_near_duplicates_are_caught_and_distinct_texts_kept() -> None:
    # GIVEN 40 distinct paragraphs, then a near copy (2 words changed) of each of the first 10
    rng = random.Random(3)
    originals = [english_paragraph(rng, sentences=12) for _ in range(40)]
    copies = [_near_copy(text, rng, edits=2) for text in originals[:10]]
    records = [record(t, f"orig:{i}") for i, t in enumerate(originals)]
    records += [record(t, f"copy:{i}") for i, t in enumerate(copies)]
    # WHEN deduplicating
    kept, dropped = dedup_records(records, DedupConfig(threshold=0.7, num_perm=128))
    # THEN every copy is dropped as a near duplicate of its original; every original is kept
    assert [r.source_id for r in kept] == [f"s:orig:{i}" for i in range(40)]
    assert {d.record.source_id: d.matched for d in dropped} == {
        f"s:copy:{i}": f"s:orig:{i}" for i in range(10)
    }
    assert {d.reason for d in dropped} == {"near_duplicate"}
    assert all(d.score is not None and d.score >= 0.7 for d in dropped)


def test_exact_duplicates_match_the_first_occurrence() -> None:
    # GIVEN the same text three times, differing only in case and spacing
    text = english_paragraph(random.Random(5))
    records = [record(text, "a:1"), record(text.upper(), "a:2"), record("  " + text, "a:3")]
    # WHEN deduplicating
    kept, dropped = dedup_records(records, DedupConfig())
    # THEN the first is kept, the others name it
    assert [r.source_id for r in kept] == ["s:a:1"]
    assert [(d.reason, d.matched) for d in dropped] == [("exact_duplicate", "s:a:1")] * 2


def test_a_chain_of_near_duplicates_is_one_group() -> None:
    # GIVEN A, B = A with 6 words changed, C = B with 14 more changed: A~B and B~C, not A~C
    rng = random.Random(5)
    a = [f"w{rng.randrange(100_000)}" for _ in range(200)]
    b = a[:20] + [f"w{rng.randrange(100_000)}" for _ in range(6)] + a[26:]
    c = b[:100] + [f"w{rng.randrange(100_000)}" for _ in range(14)] + b[114:]
    dedup = DedupConfig()
    sigs = [signature(" ".join(t), dedup) for t in (a, b, c)]
    assert sigs[0].jaccard(sigs[1]) >= dedup.threshold
    assert sigs[1].jaccard(sigs[2]) >= dedup.threshold
    assert sigs[0].jaccard(sigs[2]) < dedup.threshold
    records = [record(" ".join(t), f"f.txt:{n}") for n, t in enumerate((a, b, c))]
    # WHEN deduplicating
    kept, dropped = dedup_records(records, dedup)
    # THEN A is kept, B goes as a copy of A and C as a copy of B, its detail naming A
    assert [r.source_id for r in kept] == ["s:f.txt:0"]
    assert [(d.record.source_id, d.matched) for d in dropped] == [
        ("s:f.txt:1", "s:f.txt:0"),
        ("s:f.txt:2", "s:f.txt:1"),
    ]
    assert dropped[1].detail.endswith("(near-duplicate group kept s:f.txt:0)")


def test_disabled_dedup_keeps_everything() -> None:
    text = english_paragraph(random.Random(5))
    kept, dropped = dedup_records(
        [record(text, "a:1"), record(text, "a:2")], DedupConfig(exact=False, near=False)
    )
    assert (len(kept), dropped) == (2, [])
