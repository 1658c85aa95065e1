"""Base model + retrieval: the RAG alternative the method argues against, as a baseline.

`RetrievalProvider` wraps any provider: before each call it retrieves the `k` passages of a
corpus (e.g. the knowledge base) that best match the prompt (BM25, `bm25s`) and puts them in
front of it. Nothing else changes, so the wrapped model is scored by the same benchmarks,
prompts and metrics as the adapted one. Its identity names the retrieval setup and the
corpus' content hash, so its results never share a cache key with the model alone.

The query is the rendered prompt (the provider sees nothing else). The benchmark's fixed
template words are the same for every item and rare in a knowledge base, so BM25's IDF gives
them little weight; what is retrieved is driven by the item's own words.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from dapt_eval.providers.base import DecodingParams, Generation, Oracle, Provider


@dataclass(frozen=True)
class Passage:
    """A chunk of a corpus document, and where it came from."""

    source: str
    text: str


def split_passages(source: str, text: str, words: int) -> list[Passage]:
    """Paragraphs packed greedily into passages of at most about `words` words (a paragraph
    longer than that is cut at word boundaries)."""
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    passages: list[Passage] = []
    current: list[str] = []
    for paragraph in paragraphs:
        tokens = paragraph.split()
        while len(tokens) > words:
            if current:
                passages.append(Passage(source, " ".join(current)))
                current = []
            passages.append(Passage(source, " ".join(tokens[:words])))
            tokens = tokens[words:]
        if current and len(current) + len(tokens) > words:
            passages.append(Passage(source, " ".join(current)))
            current = []
        current += tokens
    if current:
        passages.append(Passage(source, " ".join(current)))
    return passages


class PassageIndex:
    """BM25 (`bm25s`, English stop words, no stemming) over passages; thread-safe."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        import bm25s  # noqa: PLC0415 - only the retrieval baseline needs it

        if not passages:
            raise ValueError("a retrieval index needs at least one passage")
        self.passages = list(passages)
        self._bm25 = bm25s
        self._retriever = bm25s.BM25()
        texts = [p.text for p in self.passages]
        tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
        self._retriever.index(tokens, show_progress=False)
        self._lock = threading.Lock()
        digest = hashlib.sha256()
        for passage in self.passages:
            digest.update(f"{passage.source}\0{passage.text}\0".encode())
        self.sha256 = digest.hexdigest()

    def search(self, query: str, k: int) -> list[Passage]:
        """The `k` best passages for `query` (fewer when fewer match at all)."""
        with self._lock:
            tokens = self._bm25.tokenize([query], stopwords="en", show_progress=False)
            k = min(k, len(self.passages))
            ids, scores = self._retriever.retrieve(tokens, k=k, show_progress=False)
        return [self.passages[int(i)] for i, s in zip(ids[0], scores[0], strict=True) if s > 0]


class RetrievalProvider(Provider):
    """`inner` with the `k` best passages for each prompt put in front of it."""

    def __init__(
        self, inner: Provider, index: PassageIndex, k: int, template: str | None = None
    ) -> None:
        if k < 1:
            raise ValueError(f"RetrievalProvider 'k' = {k} must be >= 1")
        self.inner = inner
        self.index = index
        self.k = k
        self.template = template or DEFAULT_TEMPLATE
        self.name = inner.name
        self.model_id = f"{inner.model_id}+bm25-k{k}"
        setup = hashlib.sha256(f"{index.sha256}\0{self.template}".encode()).hexdigest()[:12]
        self.revision = f"{inner.revision}+corpus-{setup}"

    def augment(self, prompt: str) -> str:
        """The prompt with the retrieved passages in front of it."""
        passages = self.index.search(prompt, self.k)
        context = "\n\n".join(f"[{i}] {p.text}" for i, p in enumerate(passages, start=1))
        return self.template.format(passages=context, prompt=prompt)

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        """The wrapped model's completion of the augmented prompt."""
        return self.inner.generate(self.augment(prompt), params, oracle)

    @property
    def supports_loglik(self) -> bool:
        """As the wrapped provider."""
        return self.inner.supports_loglik

    def loglik(
        self, prompt: str, continuations: Sequence[str], oracle: Oracle | None = None
    ) -> list[float]:
        """The wrapped model's log-likelihoods after the augmented prompt."""
        return self.inner.loglik(self.augment(prompt), continuations, oracle)


DEFAULT_TEMPLATE = (
    "Passages from the knowledge base that may help:\n\n{passages}\n\n---\n\n{prompt}"
)
DEFAULT_K = 3
DEFAULT_PASSAGE_WORDS = 100
