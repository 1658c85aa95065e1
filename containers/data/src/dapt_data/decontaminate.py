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
`decontaminate.min_item_words` (default 8) are too short for n-grams to tell copying from
chance and are checked by exact match instead: a sentence, line or whole text of the record
that normalises (`normalise`: case-folded words, contractions expanded) to the item (items
under 3 words, "hello?", are not checked). A training
record is dropped (`benchmark_overlap`) when, for some item, shared n-grams / the item's
n-grams > `decontaminate.threshold` (default 0: any shared n-gram, the GPT-3 rule), when it
holds a short item exactly, or when a question it asks is a paraphrase of a benchmark question
(`ParaphraseIndex`). `matched` names `benchmark@version/item_id`; `score` is the overlap share
(n-grams), 1.0 (exact) or the similarity (paraphrase) of the best-matching item.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dapt_eval.benchmark import load_benchmark
from dapt_eval.schemas import ClassificationItem, Item, McqItem, QaItem, SummarizationItem

from dapt_data.config import DecontaminateConfig, same_folder
from dapt_data.records import Dropped, Record


@dataclass(frozen=True)
class Overlap:
    """Why a text matches a benchmark item: the item, a score and the rule."""

    key: str
    score: float
    rule: str  # "ngram", "exact" or "paraphrase"


@dataclass
class ParaphraseIndex:
    """Benchmark questions, matched to the questions a text asks despite light rewording.

    Features of a question: its content words (`normalise`d, stop words out, a plural `s`
    dropped), every word bigram (stop words kept: "does quillsite" is a question, "quillsite
    does" an answer) and every content-word bigram, bigrams at half weight (a reordered
    "tags and categories" keeps its words), all weighted by inverse document frequency over
    the indexed questions, so that a shared "chargeback" counts for more than a shared
    "quillsite". A text's
    questions are its sentences ending in '?' and such a sentence with the one before it
    ("My email stopped working. Why?"); each is compared with the indexed questions sharing a
    feature with it (an inverted index), by cosine similarity. Only questions are compared:
    an article that *states* what a benchmark question asks ("Quillsite does not host email
    mailboxes.") is the knowledge the model is meant to learn.
    """

    threshold: float
    weights: list[dict[str, float]] = field(default_factory=list)
    norms: list[float] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    postings: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    idf: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def build(items: Iterable[tuple[str, str]], threshold: float) -> ParaphraseIndex:
        """Index the `(item key, text)` pairs whose text is a question."""
        questions = [(key, question_features(t)) for key, t in items if _is_question(t)]
        frequency: Counter[str] = Counter()
        for _, features in questions:
            frequency.update(features)
        index = ParaphraseIndex(threshold=threshold)
        index.idf = {g: math.log((len(questions) + 1) / (n + 1)) + 1 for g, n in frequency.items()}
        for key, features in questions:
            if len(features) < MIN_PARAPHRASE_FEATURES:
                continue
            weights = {g: w * index.idf[g] for g, w in features.items()}
            for g in weights:
                index.postings[g].append(len(index.keys))
            index.keys.append(key)
            index.weights.append(weights)
            index.norms.append(math.sqrt(sum(w * w for w in weights.values())))
        return index

    def best(self, text: str) -> Overlap | None:
        """The most similar indexed question to one of `text`'s questions, if at or above
        the threshold."""
        best: Overlap | None = None
        unseen = math.log(len(self.keys) + 1) + 1  # idf of a feature no question has
        for asked in asked_questions(text):
            features = question_features(asked)
            weights = {g: w * self.idf.get(g, unseen) for g, w in features.items()}
            norm = math.sqrt(sum(w * w for w in weights.values()))
            dots: defaultdict[int, float] = defaultdict(float)
            for g, w in weights.items():
                for item in self.postings.get(g, ()):
                    dots[item] += w * self.weights[item][g]
            for item, dot in dots.items():
                similarity = dot / (norm * self.norms[item])
                if similarity >= self.threshold and (best is None or similarity > best.score):
                    best = Overlap(self.keys[item], similarity, "paraphrase")
        return best


@dataclass
class NgramIndex:
    """n-gram -> items containing it, and each item's n-gram count; short items by their
    normalised text; questions for paraphrase matching."""

    n: int
    postings: dict[str, list[str]]
    sizes: dict[str, int]
    lengths: set[int]
    short: dict[str, str]
    """Normalised text -> item key of the items under `min_words` words (exact match only)."""
    paraphrases: ParaphraseIndex | None = None

    @property
    def skipped(self) -> list[str]:
        """Items checked by exact match only (under `min_words` words)."""
        return sorted(self.short.values())

    @staticmethod
    def build(
        items: Iterable[tuple[str, str]],
        n: int,
        min_words: int,
        paraphrase_threshold: float | None = None,
    ) -> NgramIndex:
        """Index `(item key, text)` pairs; texts under `min_words` words by exact match."""
        pairs = list(items)
        index = NgramIndex(n=n, postings={}, sizes={}, lengths=set(), short={})
        if paraphrase_threshold is not None:
            index.paraphrases = ParaphraseIndex.build(pairs, paraphrase_threshold)
        for key, text in pairs:
            count = len(_WORD.findall(text))
            if count < min_words:
                if count >= MIN_EXACT_WORDS:
                    index.short.setdefault(normalise(text), key)
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

    def find(self, text: str, threshold: float) -> Overlap | None:
        """The first rule that `text` breaks: n-gram overlap > `threshold`, a short item
        held exactly, or a paraphrased benchmark question."""
        match = self.best_overlap(text)
        if match is not None and match[1] > threshold:
            return Overlap(match[0], match[1], "ngram")
        if self.short:
            for piece in [text, *_pieces(text)]:
                key = self.short.get(normalise(piece))
                if key is not None:
                    return Overlap(key, 1.0, "exact")
        return self.paraphrases.best(text) if self.paraphrases is not None else None


def normalise(text: str) -> str:
    """Case-folded words joined by spaces, English contractions expanded ("what's" -> "what
    is", "isn't" -> "is not"): "What's the fee?" and "what is the fee" are the same text."""
    folded = _CONTRACTION.sub(_expand, text.casefold().replace("\u2019", "'"))
    return " ".join(_WORD.findall(folded))


def _expand(match: re.Match[str]) -> str:
    word = match.group()
    if word in CONTRACTIONS:
        return CONTRACTIONS[word]
    return word[:-3] + " not" if word.endswith("n't") else word


def question_features(text: str) -> dict[str, float]:
    """Features of a question and their weight before IDF (`ParaphraseIndex`): content words
    (plural `s` dropped) 1, word bigrams and content-word bigrams `BIGRAM_WEIGHT` each."""
    stems = [w if w in STOP_WORDS else _stem(w) for w in normalise(text).split()]
    content = [w for w in stems if w not in STOP_WORDS]
    features = dict.fromkeys(content, 1.0)
    for a, b in itertools.pairwise(stems):
        features[f"{a} {b}"] = BIGRAM_WEIGHT
    for a, b in itertools.pairwise(content):
        features[f"{a} + {b}"] = BIGRAM_WEIGHT
    return features


def asked_questions(text: str) -> list[str]:
    """Sentences ending in '?', each also with the sentence before it."""
    sentences = [s.strip() for s in _SENTENCE_BREAK.split(text) if s.strip()]
    asked = []
    for i, sentence in enumerate(sentences):
        if _is_question(sentence):
            asked.append(sentence)
            if i:
                asked.append(f"{sentences[i - 1]} {sentence}")
    return asked


def _is_question(text: str) -> bool:
    return text.rstrip().endswith("?")


def _stem(word: str) -> str:
    return (
        word[:-1] if len(word) > MIN_STEM_LEN and word.endswith("s") and word[-2] != "s" else word
    )


def _pieces(text: str) -> list[str]:
    """Sentences and lines of a text, and each line without a leading `Role:` label."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    unlabelled = [line.split(":", 1)[1] for line in lines if ":" in line[:LABEL_CHARS]]
    sentences = [s for line in lines + unlabelled for s in _SENTENCE_BREAK.split(line)]
    return lines + unlabelled + sentences


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
    for root in config.benchmarks:
        bench = load_benchmark(Path(root), verify_hash=config.verify_hash)
        label = f"{bench.manifest.name}@{bench.manifest.version}"
        prompt = not any(same_folder(root, b) for b in config.references_only)
        pairs += [
            (f"{label}/{item.id}", t)
            for item in bench.items
            for t in item_texts(item, config.check_references, prompt)
        ]
    return NgramIndex.build(
        pairs, config.ngram_words, config.min_item_words, config.paraphrase_threshold
    )


def decontaminate_records(
    records: Iterable[Record], index: NgramIndex, threshold: float
) -> tuple[list[Record], list[Dropped]]:
    """Split records into kept and dropped-for-overlap."""
    kept: list[Record] = []
    dropped: list[Dropped] = []
    for record in records:
        match = index.find(record.text, threshold)
        if match is None:
            kept.append(record)
            continue
        key, score = match.key, match.score
        if match.rule == "ngram":
            detail = (
                f"{score:.3f} of the {index.n}-grams of {key} occur in the text "
                f"> decontaminate.threshold {threshold}"
            )
        elif match.rule == "exact":
            detail = f"the text holds {key} exactly (an item under decontaminate.min_item_words)"
        else:
            limit = index.paraphrases.threshold if index.paraphrases else None
            detail = (
                f"a question of the text is a paraphrase of {key}: similarity {score:.3f} "
                f">= decontaminate.paraphrase_threshold {limit}"
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
_SENTENCE_BREAK = re.compile(r"(?<=[.?!])\s+|\n+")
_CONTRACTION = re.compile(r"\b\w+'\w+\b")
CONTRACTIONS = {
    "what's": "what is",
    "it's": "it is",
    "that's": "that is",
    "there's": "there is",
    "where's": "where is",
    "how's": "how is",
    "who's": "who is",
    "i'm": "i am",
    "i've": "i have",
    "i'd": "i would",
    "i'll": "i will",
    "you're": "you are",
    "we're": "we are",
    "they're": "they are",
    "can't": "can not",
    "won't": "will not",
}
"""Contractions spelled out; any other "<word>n't" becomes "<word> not"."""
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "is",
        "are",
        "am",
        "be",
        "do",
        "does",
        "did",
        "i",
        "my",
        "me",
        "you",
        "your",
        "it",
        "its",
        "this",
        "that",
        "can",
        "could",
        "will",
        "would",
        "should",
        "there",
        "what",
        "which",
        "how",
        "when",
        "where",
        "who",
        "why",
        "with",
        "by",
        "at",
        "from",
        "as",
        "if",
        "not",
    ]
)
"""Words that carry no topic: left out of the content-word features (kept in the bigrams)."""
BIGRAM_WEIGHT = 0.5
MIN_PARAPHRASE_FEATURES = 4
"""A question with fewer features ("Why?") is matched by the exact rule only."""
MIN_EXACT_WORDS = 3
"""Items of fewer words ("hello?", "thanks!") say nothing a chat would not say by chance."""
MIN_STEM_LEN = 3
LABEL_CHARS = 20
"""A line's `Role:` label ("Customer:") is at most this long."""
