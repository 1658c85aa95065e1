"""Deduplicate: exact (content hash) then near-duplicates (datasketch MinHash LSH).

Records are processed in order and the **first occurrence is kept**; every later copy goes to
`dropped.jsonl` with `matched` = the `source_id` of the record it duplicates:

- `exact_duplicate` (score 1.0): same sha256 of the case-folded, whitespace-collapsed text;
- `near_duplicate` (score = estimated Jaccard): MinHash LSH over word shingles
  (`dedup.shingle_words`) puts it in a group of records with Jaccard >= `dedup.threshold`
  between neighbours (connected components), and the group's first record is kept.

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
    """Near-duplicate groups (MinHash LSH), each keeping its first record.

    Two records are similar when LSH makes them candidates and their estimated Jaccard is at
    least `dedup.threshold`; a group is a connected component of that relation, so on a chain
    A~B, B~C (A, C not similar) B and C both go. A dropped record's `matched` is the kept
    record when the two are similar, else its most similar group member (ties: the earliest);
    the detail then also names the group's kept record. `dapt_data.spark_dedup` applies the same
    rules across partitions, so both engines decide alike.
    """
    # Candidates are verified against the threshold below, so a false positive costs only a
    # comparison while a false negative keeps a duplicate: weight the band choice toward recall.
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm, weights=LSH_WEIGHTS)
    template = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=SCHEME)
    ordered = list(records)
    signatures: list[MinHash] = []
    edges: dict[int, dict[int, float]] = {}
    parent = list(range(len(ordered)))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for n, record in enumerate(ordered):
        minhash = signature(record.text, config, template)
        for other in lsh.query(minhash):
            score = float(minhash.jaccard(signatures[other]))
            if score >= config.threshold:
                edges.setdefault(n, {})[other] = score
                edges.setdefault(other, {})[n] = score
                a, b = root(n), root(other)
                parent[max(a, b)] = min(a, b)
        lsh.insert(n, minhash)
        signatures.append(minhash)
    kept: list[Record] = []
    dropped: list[Dropped] = []
    for n, record in enumerate(ordered):
        first = root(n)
        if first == n:
            kept.append(record)
            continue
        # the kept record if similar, else the most similar member, the earliest on a tie
        other, score = min(edges[n].items(), key=lambda pair: (pair[0] != first, -pair[1], pair[0]))
        matched = ordered[other].source_id
        detail = (
            f"estimated Jaccard {score:.3f} >= dedup.threshold {config.threshold} with {matched}"
        )
        if other != first:
            detail += f" (near-duplicate group kept {ordered[first].source_id})"
        dropped.append(
            Dropped(
                step="dedup",
                reason="near_duplicate",
                detail=detail,
                matched=matched,
                score=round(score, 4),
                record=record,
            )
        )
    return kept, dropped


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
