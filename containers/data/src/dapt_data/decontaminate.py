"""Decontaminate: drop training text that overlaps evaluation benchmark items.

Benchmarks are loaded with `dapt_eval.benchmark.load_benchmark` (hash-verified). What a model
is prompted with (qa and mcq: the question; classification: the text; summarization: the
document) is always checked. The references (qa reference answer, mcq answer, reference summary)
are checked only with `decontaminate.check_references`: they state facts the knowledge base is
meant to teach, so checking them would drop the very articles domain adaptation trains on
(on the example domain: 31 KB articles and 70 chats). A benchmark listed in
`decontaminate.references_only` is checked the other way round: its inputs are domain documents
the model is meant to read (the example's summarization items are KB sections and support
chats; checking them drops 21 of the 38 KB articles), so only its references (the summaries)
must not be trained on. Each checked field becomes a set of word n-grams
(`decontaminate.ngram_words`, default 13, case-folded `\\w+` words). A field shorter than n
words is one n-gram of all its words, matched whole; fields under
`decontaminate.min_item_words` (default 8) are too short to tell copying from chance and are
listed as not checked. A training record is dropped (`benchmark_overlap`) when, for
some item, shared n-grams / the item's n-grams > `decontaminate.threshold` (default 0: any
shared n-gram, the GPT-3 rule). `matched` names `benchmark@version/item_id`; `score` is the
overlap share of the best-matching item.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dapt_eval.benchmark import load_benchmark
from dapt_eval.schemas import ClassificationItem, Item, McqItem, QaItem, SummarizationItem

from dapt_data.config import DecontaminateConfig
from dapt_data.records import Dropped, Record


@dataclass
class NgramIndex:
    """n-gram -> items containing it, and each item's n-gram count."""

    n: int
    postings: dict[str, list[str]]
    sizes: dict[str, int]
    lengths: set[int]
    skipped: list[str]

    @staticmethod
    def build(items: Iterable[tuple[str, str]], n: int, min_words: int) -> NgramIndex:
        """Index `(item key, text)` pairs; texts under `min_words` words are listed as skipped."""
        index = NgramIndex(n=n, postings={}, sizes={}, lengths=set(), skipped=[])
        for key, text in items:
            count = len(_WORD.findall(text))
            if count < min_words:
                index.skipped.append(key)
                continue
            size = min(n, count)
            index.lengths.add(size)
            grams = ngrams(text, size)
            index.sizes[key] = index.sizes.get(key, 0) + len(grams)
            for gram in grams:
                index.postings.setdefault(gram, []).append(key)
        return index

    def best_overlap(self, text: str) -> tuple[str, float] | None:
        """(item key, share of the item's n-grams found in `text`) of the most-overlapped item.

        Items shorter than n words were indexed as one n-gram of their own length, so the
        text is shingled at each such length too (a short item must appear whole).
        """
        hits: Counter[str] = Counter()
        grams = set().union(*(ngrams(text, size) for size in self.lengths))
        for gram in grams:
            for key in self.postings.get(gram, ()):
                hits[key] += 1
        if not hits:
            return None
        key, score = max(((k, c / self.sizes[k]) for k, c in hits.items()), key=lambda p: p[1])
        return key, score


def ngrams(text: str, n: int) -> set[str]:
    """Case-folded word n-grams; a text shorter than n words is one n-gram."""
    words = _WORD.findall(text.casefold())
    if not words:
        return set()
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def item_texts(item: Item, check_references: bool = False, prompt: bool = True) -> list[str]:
    """The fields of a benchmark item to check: the prompt side (unless `prompt` is False),
    plus the references if asked."""
    if isinstance(item, QaItem):
        inputs, references = [item.question], [item.reference_answer]
    elif isinstance(item, McqItem):
        inputs, references = [item.question], [item.answer]
    elif isinstance(item, ClassificationItem):
        inputs, references = [item.text], []
    elif isinstance(item, SummarizationItem):
        inputs, references = [item.document], [item.reference_summary]
    else:
        raise TypeError(f"unknown benchmark item type {type(item).__name__}")
    return (inputs if prompt else []) + (references if check_references or not prompt else [])


def load_index(config: DecontaminateConfig) -> NgramIndex:
    """Index every item field of every configured benchmark."""
    pairs: list[tuple[str, str]] = []
    references_only = {str(Path(b)) for b in config.references_only}
    for root in config.benchmarks:
        bench = load_benchmark(Path(root), verify_hash=config.verify_hash)
        label = f"{bench.manifest.name}@{bench.manifest.version}"
        prompt = str(Path(root)) not in references_only
        pairs += [
            (f"{label}/{item.id}", t)
            for item in bench.items
            for t in item_texts(item, config.check_references, prompt)
        ]
    return NgramIndex.build(pairs, config.ngram_words, config.min_item_words)


def decontaminate_records(
    records: Iterable[Record], index: NgramIndex, threshold: float
) -> tuple[list[Record], list[Dropped]]:
    """Split records into kept and dropped-for-overlap."""
    kept: list[Record] = []
    dropped: list[Dropped] = []
    for record in records:
        match = index.best_overlap(record.text)
        if match is None or match[1] <= threshold:
            kept.append(record)
            continue
        key, score = match
        detail = (
            f"{score:.3f} of the {index.n}-grams of {key} occur in the text "
            f"> decontaminate.threshold {threshold}"
        )
        dropped.append(
            Dropped(
                step="decontaminate",
                reason="benchmark_overlap",
                detail=detail,
                matched=key,
                score=round(score, 4),
                record=record,
            )
        )
    return kept, dropped


_WORD = re.compile(r"\w+")
