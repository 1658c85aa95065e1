"""Deduplicate: exact (content hash) then near-duplicates (datasketch MinHash LSH).

Records are processed in order and the **first occurrence is kept**; every later copy goes to
`dropped.jsonl` with `matched` = the `source_id` of the record it duplicates:

- `exact_duplicate` (score 1.0): same sha256 of the case-folded, whitespace-collapsed text;
- `near_duplicate` (score = estimated Jaccard): MinHash LSH over word shingles
  (`dedup.shingle_words`) finds an earlier kept record with Jaccard >= `dedup.threshold`.

LSH returns candidates above the threshold *with high probability*; the estimated Jaccard of
the two signatures is checked again, so a candidate below the threshold is kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np
from datasketch import MinHash, MinHashLSH

from dapt_data.config import DedupConfig
from dapt_data.records import Dropped, Record


def content_hash(text: str) -> str:
    """sha256 of the text, case-folded with whitespace collapsed (the exact-dedup key)."""
    return hashlib.sha256(" ".join(text.casefold().split()).encode("utf-8")).hexdigest()


def shingles(text: str, n: int) -> set[bytes]:
    """Word n-grams of the case-folded text; a text shorter than n words is one shingle."""
    words = _WORD.findall(text.casefold())
    if len(words) < n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


def signature(text: str, config: DedupConfig, permutations: MinHash | None = None) -> MinHash:
    """MinHash of a text's shingles (`permutations` reuses one set of hash permutations)."""
    minhash = MinHash(
        num_perm=config.num_perm, seed=config.seed, permutations=_perms(permutations), scheme=SCHEME
    )
    minhash.update_batch(list(shingles(text, config.shingle_words)))
    return minhash


def _perms(template: MinHash | None) -> tuple[np.ndarray, np.ndarray] | None:
    # Building the permutations is the costly part of `MinHash()`; sharing them is safe
    # because they are a pure function of (num_perm, seed).
    return None if template is None else template.permutations


def exact_dedup(records: Iterable[Record]) -> tuple[list[Record], list[Dropped]]:
    """Keep the first record of each content hash."""
    first: dict[str, Record] = {}
    kept: list[Record] = []
    dropped: list[Dropped] = []
    for record in records:
        key = content_hash(record.text)
        if key in first:
            original = first[key]
            detail = f"same content hash {key[:16]} as {original.source_id}"
            dropped.append(
                Dropped(
                    step="dedup",
                    reason="exact_duplicate",
                    detail=detail,
                    matched=original.source_id,
                    score=1.0,
                    record=record,
                )
            )
        else:
            first[key] = record
            kept.append(record)
    return kept, dropped


def near_dedup(
    records: Iterable[Record], config: DedupConfig
) -> tuple[list[Record], list[Dropped]]:
    """Keep a record unless an earlier kept record is a near-duplicate (MinHash LSH)."""
    # Candidates are verified against the threshold below, so a false positive costs only a
    # comparison while a false negative keeps a duplicate: weight the band choice toward recall.
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm, weights=LSH_WEIGHTS)
    template = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=SCHEME)
    signatures: dict[str, MinHash] = {}
    by_id: dict[str, Record] = {}
    kept: list[Record] = []
    dropped: list[Dropped] = []
    for record in records:
        minhash = signature(record.text, config, template)
        match = _best_match(minhash, lsh.query(minhash), signatures, config.threshold)
        if match is None:
            lsh.insert(record.id, minhash)
            signatures[record.id] = minhash
            by_id[record.id] = record
            kept.append(record)
            continue
        original, score = by_id[match[0]], match[1]
        detail = (
            f"estimated Jaccard {score:.3f} >= dedup.threshold {config.threshold} "
            f"with {original.source_id}"
        )
        dropped.append(
            Dropped(
                step="dedup",
                reason="near_duplicate",
                detail=detail,
                matched=original.source_id,
                score=round(score, 4),
                record=record,
            )
        )
    return kept, dropped


def _best_match(
    minhash: MinHash, candidates: list[str], signatures: dict[str, MinHash], threshold: float
) -> tuple[str, float] | None:
    scored = [(key, float(minhash.jaccard(signatures[key]))) for key in candidates]
    above = [pair for pair in scored if pair[1] >= threshold]
    # The most similar earlier record is the one reported as matched.
    return max(above, key=lambda pair: pair[1]) if above else None


def dedup_records(
    records: Iterable[Record], config: DedupConfig
) -> tuple[list[Record], list[Dropped]]:
    """Exact then near dedup, as configured."""
    kept: list[Record] = list(records)
    dropped: list[Dropped] = []
    if config.exact:
        kept, dropped = exact_dedup(kept)
    if config.near:
        kept, near = near_dedup(kept, config)
        dropped += near
    return kept, dropped


_WORD = re.compile(r"\w+")
LSH_WEIGHTS = (0.2, 0.8)  # (false positive, false negative) weights for choosing bands
SCHEME = "affine32"  # datasketch 2.x default: uint32 values, collision-free permutations
