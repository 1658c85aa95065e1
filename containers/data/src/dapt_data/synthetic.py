"""Synthetic Q&A and reading-comprehension tasks from domain documents, by a teacher model.

Steps, each counted in the report:
1. Split each document into passages (blank-line paragraphs and Markdown sections packed up
   to `max_passage_chars`).
2. Ask the teacher (any `dapt_eval.providers.Provider`; `concurrency` calls in flight, on
   threads, results used in input order so the output does not depend on timing) for
   `questions_per_passage` items as strict JSON:
   `{"items": [{"question": str, "answer": str}, ...]}` and nothing else.
   Output that is not exactly that (prose around the JSON, extra keys, empty strings) or a
   provider error after retries is *quarantined* with its reason, never dropped silently.
3. Keep an item only if its answer is grounded in the passage: at least `min_grounding`
   of the answer's content tokens (lower-cased words and numbers, stop words removed)
   occur in the passage. An answer with no content tokens is ungrounded.
4. Deduplicate: exact match on the normalised question (lower case, punctuation and
   spacing removed), then near duplicates by MinHash LSH over question word 1- and 2-grams
   (Jaccard >= `near_dup_threshold`). The first one wins (documents in input order).

Every example records its source id, passage index and the generator (provider, model,
revision, prompt id and version) so it can be traced and regenerated.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from functools import partial
from itertools import pairwise

from dapt_eval.prompts import PromptSpec, render
from dapt_eval.providers import DecodingParams, Provider, ProviderError
from dapt_eval.providers.retry import RetryPolicy, call_with_retry
from datasketch import MinHash, MinHashLSH
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SyntheticTask(StrEnum):
    """Closed-book Q&A (question -> answer) or reading comprehension (passage + question)."""

    QA = "qa"
    READING_COMPREHENSION = "reading_comprehension"


class SourceDocument(BaseModel):
    """A KB article, chat or doc to generate from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: str = Field(min_length=1)
    text: str


class SynthesisConfig(BaseModel):
    """Generation and filtering settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: tuple[SyntheticTask, ...] = Field(
        default=(SyntheticTask.QA, SyntheticTask.READING_COMPREHENSION),
        description="Example types asked of the teacher for every passage.",
    )
    questions_per_passage: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Question/answer items asked of the teacher per passage and task.",
    )
    max_passage_chars: int = Field(
        default=1500,
        ge=200,
        description="Longest passage, in characters: paragraphs are packed up to it and a "
        "longer one is cut.",
    )
    min_passage_chars: int = Field(
        default=120,
        ge=1,
        description="Passages shorter than this many characters are not sent to the teacher.",
    )
    min_grounding: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Share of an answer's content tokens that must occur in its passage for the "
        "item to be kept.",
    )
    near_dup_threshold: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Jaccard similarity of question word 1- and 2-grams at or above which a "
        "question duplicates an earlier one and is dropped.",
    )
    decoding: DecodingParams = Field(
        default_factory=lambda: DecodingParams(temperature=0.0, max_tokens=1024),
        description="Sampling settings of every teacher call (greedy, 1024 new tokens).",
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Teacher calls in flight at once (threads; the provider must be thread-safe).",
    )


class Generator(BaseModel):
    """Who wrote an example: the teacher's identity and the prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    provider: str
    model_id: str
    revision: str
    prompt_id: str
    prompt_version: str


class SyntheticExample(BaseModel):
    """One kept example; `passage` is set for reading comprehension only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    task: SyntheticTask
    source_id: str
    passage_index: int
    passage: str | None
    question: str
    answer: str
    grounding: float
    generator: Generator


class QuarantinedGeneration(BaseModel):
    """A teacher output we could not use, with the rule it broke and the raw text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: str
    passage_index: int
    task: SyntheticTask
    reason: str = Field(description="stable rule name: provider_error, invalid_json, bad_schema")
    detail: str
    raw: str


class SynthesisReport(BaseModel):
    """How many items each step kept and why the others went."""

    model_config = ConfigDict(extra="forbid")

    passages: int = 0
    generations: int = 0
    items_parsed: int = 0
    quarantined: dict[str, int] = Field(default_factory=dict)
    ungrounded: int = 0
    duplicates_exact: int = 0
    duplicates_near: int = 0
    kept: dict[str, int] = Field(default_factory=dict)


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(min_length=1, pattern=r"\S")
    answer: str = Field(min_length=1, pattern=r"\S")


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[_Item] = Field(min_length=1)


def split_passages(text: str, max_chars: int, min_chars: int) -> list[str]:
    """Paragraphs packed into passages of at most `max_chars`; a heading starts a new one."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    passages: list[str] = []
    current = ""
    for block in blocks:
        starts_section = block.startswith("#")
        if current and (starts_section or len(current) + len(block) + 2 > max_chars):
            passages.append(current)
            current = ""
        current = f"{current}\n\n{block}" if current else block
    if current:
        passages.append(current)
    return [p[:max_chars] for p in passages if len(p) >= min_chars]


def parse_generation(raw: str) -> tuple[list[tuple[str, str]], str, str]:
    """Strictly parse a teacher output: (items, '', '') or ([], reason, detail)."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        return [], "invalid_json", f"not a JSON document: {err}"
    except RecursionError:
        return [], "invalid_json", "JSON nested deeper than the parser's recursion limit"
    try:
        output = _Output.model_validate(value)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors()
        )
        return [], "bad_schema", problems
    return [(i.question.strip(), i.answer.strip()) for i in output.items], "", ""


def grounding(answer: str, passage: str) -> float:
    """Share of the answer's content tokens that occur in the passage (0 if it has none)."""
    answer_tokens = content_tokens(answer)
    if not answer_tokens:
        return 0.0
    passage_tokens = set(content_tokens(passage))
    return sum(t in passage_tokens for t in answer_tokens) / len(answer_tokens)


def content_tokens(text: str) -> list[str]:
    """Lower-cased words and numbers without stop words ("$16/month" -> ["16", "month"])."""
    return [t for t in re.findall(r"\w+", text.lower()) if t not in STOP_WORDS]


def normalise_question(question: str) -> str:
    """Lower case, punctuation removed, spacing collapsed: the exact-duplicate key."""
    return " ".join(re.findall(r"\w+", question.lower()))


def generate_synthetic(
    documents: Iterable[SourceDocument],
    teacher: Provider,
    config: SynthesisConfig | None = None,
    retry: RetryPolicy | None = None,
) -> tuple[list[SyntheticExample], list[QuarantinedGeneration], SynthesisReport]:
    """Generate, parse, ground and deduplicate; see the module docstring."""
    config = config or SynthesisConfig()
    retry = retry or RetryPolicy()
    report = SynthesisReport()
    quarantined: list[QuarantinedGeneration] = []
    candidates: list[SyntheticExample] = []
    identity = teacher.identity()
    calls: list[tuple[SourceDocument, int, str, SyntheticTask, str]] = []
    for document in documents:
        passages = split_passages(document.text, config.max_passage_chars, config.min_passage_chars)
        report.passages += len(passages)
        for index, passage in enumerate(passages):
            for task in config.tasks:
                n = str(config.questions_per_passage)
                text = render(PROMPTS[task], {"passage": passage, "n": n})
                calls.append((document, index, passage, task, text))

    def ask(text: str) -> str | ProviderError:
        try:
            return call_with_retry(
                partial(teacher.generate, text, config.decoding), retry
            ).value.text
        except ProviderError as err:
            return err

    with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
        # map keeps input order: the examples, their ids and dedup winners do not depend on
        # which call finished first
        replies = list(pool.map(ask, [call[4] for call in calls]))
    for (document, index, passage, task, _), reply in zip(calls, replies, strict=True):
        prompt = PROMPTS[task]
        report.generations += 1
        where = {"source_id": document.source_id, "passage_index": index, "task": task}
        if isinstance(reply, ProviderError):
            quarantined.append(
                QuarantinedGeneration(**where, reason="provider_error", detail=str(reply), raw="")
            )
            continue
        raw = reply
        items, reason, detail = parse_generation(raw)
        if reason:
            quarantined.append(
                QuarantinedGeneration(
                    **where, reason=reason, detail=detail, raw=raw[:RAW_EXCERPT_CHARS]
                )
            )
            continue
        report.items_parsed += len(items)
        generator = Generator(
            provider=identity["provider"],
            model_id=identity["model_id"],
            revision=identity["revision"],
            prompt_id=prompt.id,
            prompt_version=prompt.version,
        )
        for question, answer in items:
            score = grounding(answer, passage)
            if score < config.min_grounding:
                report.ungrounded += 1
                continue
            candidates.append(
                SyntheticExample(
                    id=_example_id(document.source_id, index, task, question),
                    task=task,
                    source_id=document.source_id,
                    passage_index=index,
                    passage=passage if task == SyntheticTask.READING_COMPREHENSION else None,
                    question=question,
                    answer=answer,
                    grounding=round(score, 4),
                    generator=generator,
                )
            )
    kept = _deduplicate(candidates, config.near_dup_threshold, report)
    report.quarantined = dict(sorted(Counter(q.reason for q in quarantined).items()))
    report.kept = dict(sorted(Counter(e.task.value for e in kept).items()))
    return kept, quarantined, report


def _deduplicate(
    examples: Sequence[SyntheticExample], threshold: float, report: SynthesisReport
) -> list[SyntheticExample]:
    """Per task: drop exact normalised-question repeats, then MinHash near duplicates."""
    kept: list[SyntheticExample] = []
    seen: set[tuple[SyntheticTask, str]] = set()
    indexes: dict[SyntheticTask, MinHashLSH] = {}
    for example in examples:
        key = (example.task, normalise_question(example.question))
        if key in seen:
            report.duplicates_exact += 1
            continue
        seen.add(key)
        lsh = indexes.setdefault(
            example.task, MinHashLSH(threshold=threshold, num_perm=MINHASH_PERMUTATIONS)
        )
        signature = _minhash(key[1])
        if lsh.query(signature):
            report.duplicates_near += 1
            continue
        lsh.insert(example.id, signature)
        kept.append(example)
    return kept


def _minhash(normalised: str) -> MinHash:
    words = normalised.split()
    shingles = set(words) | {f"{a} {b}" for a, b in pairwise(words)}
    signature = MinHash(num_perm=MINHASH_PERMUTATIONS, seed=MINHASH_SEED)
    for shingle in sorted(shingles):
        signature.update(shingle.encode("utf-8"))
    return signature


def _example_id(source_id: str, index: int, task: SyntheticTask, question: str) -> str:
    key = f"{source_id}\x00{index}\x00{task.value}\x00{normalise_question(question)}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


PROMPTS: dict[SyntheticTask, PromptSpec] = {
    SyntheticTask.QA: PromptSpec(
        id="synth-qa",
        version="1",
        template=(
            "You write training data for a customer-support assistant.\n"
            "From the passage below, write {n} questions a customer might ask that the passage "
            "answers, each with a short answer using only facts stated in the passage. "
            "The question must make sense without seeing the passage.\n"
            'Reply with JSON only, exactly: {{"items": [{{"question": "...", "answer": "..."}}]}}'
            "\n\nPassage:\n{passage}"
        ),
    ),
    SyntheticTask.READING_COMPREHENSION: PromptSpec(
        id="synth-rc",
        version="1",
        template=(
            "You write reading-comprehension exercises.\n"
            "Write {n} questions about the passage below whose answers are stated in it; "
            "answer each with words copied from the passage where possible.\n"
            'Reply with JSON only, exactly: {{"items": [{{"question": "...", "answer": "..."}}]}}'
            "\n\nPassage:\n{passage}"
        ),
    ),
}

_STOP_WORDS_TEXT = (
    "a an the and or but if of to in on at by for with from as is are was were be been being "
    "it its this that these those there here you your yours we our us they them their he she "
    "his her i me my do does did done can could will would should may might must shall not no "
    "yes so than then also just only very too any all each every some such what which who whom "
    "when where why how into onto over under about after before between within without up down "
    "out off again has have had having"
)
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
MINHASH_PERMUTATIONS = 128
MINHASH_SEED = 1
RAW_EXCERPT_CHARS = 2000
