"""Multiple-choice questions: per-item choice shuffling, strict letter parsing, and distractor
generation from QA items with a teacher model.

Three scoring modes exist and are never mixed silently: `letter` (the model writes a letter,
parsed strictly), `loglik` (the provider scores each letter as a continuation) and `cloze`
(the choices are not shown; the provider scores each choice's text as the continuation of the
benchmark's `cloze_prompt`, normalised by its length in characters, the `acc_norm` of
lm-evaluation-harness). Small models cannot answer with a letter (SmolLM2-135M picks "A" for
every item): the cloze form is how their own model cards report MMLU, and it measures whether
the model knows the answer rather than whether it follows the letter format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from dapt_eval.constants import MCQ_LETTER
from dapt_eval.metrics import UnicodeTokenizer
from dapt_eval.prompts import CHOICE_LETTERS, PromptSpec, render
from dapt_eval.providers.base import DecodingParams, Oracle, Provider, ProviderError
from dapt_eval.providers.retry import RetryPolicy, call_with_retry
from dapt_eval.schemas import Distractors, McqItem, QaItem
from dapt_eval.strict_json import StrictJsonError, parse_json_object

DEFAULT_PARAPHRASE_JACCARD = 0.8
"""Distractors whose token-set Jaccard similarity with the answer is >= this are rejected as
near-paraphrases. Near-miss distractors legitimately share most words with the answer
("revision 2019" vs "revision 2021" = 0.5), so the bar sits well above that."""

# "B", "(B)", "B.", "B)", "B:", optionally after "Answer:" (ASCII or full-width colon);
# nothing else is a letter answer.
_TOKENIZER = UnicodeTokenizer()


class McqMode(StrEnum):
    """How an MCQ answer is obtained; recorded in every result."""

    LETTER = "letter"
    LOGLIK = "loglik"
    CLOZE = "cloze"


@dataclass(frozen=True)
class ShuffledChoices:
    """Choices as shown, and `permutation[i]` = canonical index shown at position i.

    Canonical indices: 0 answer, 1 near-miss, 2 and 3 the clearly wrong distractors.
    """

    choices: list[str]
    permutation: list[int]

    @property
    def answer_letter(self) -> str:
        """Letter under which the correct answer appears."""
        return CHOICE_LETTERS[self.permutation.index(0)]


def shuffle_choices(item: McqItem, seed: int) -> ShuffledChoices:
    """Deterministic, portable shuffle: sort canonical indices by sha256("{seed}:{id}:{index}").

    A sort by hash (rather than random.shuffle) so that any language, e.g. the TypeScript
    fan-out, can reproduce the permutation from (seed, item id) alone.
    """
    canonical = item.canonical_choices()
    order = sorted(
        range(len(canonical)),
        key=lambda i: hashlib.sha256(f"{seed}:{item.id}:{i}".encode()).hexdigest(),
    )
    return ShuffledChoices([canonical[i] for i in order], order)


def parse_letter(text: str) -> str | None:
    """The answer letter if the reply is exactly a letter (see `MCQ_LETTER`), else None."""
    match = MCQ_LETTER.fullmatch(text.strip())
    return match.group(1).upper() if match else None


def loglik_continuations(n_choices: int) -> list[str]:
    """Letters as continuations (" A", " B", ...): equal length, so no length normalisation."""
    return [f" {CHOICE_LETTERS[i]}" for i in range(n_choices)]


def cloze_continuations(choices: Sequence[str]) -> list[str]:
    """Each choice as the answer's continuation: a space, then its text."""
    return [f" {choice}" for choice in choices]


def cloze_normalized(logliks: Sequence[float], choices: Sequence[str]) -> list[float]:
    """Summed log-likelihoods per character of each choice (lm-evaluation-harness `acc_norm`):
    without it a short choice wins for having fewer tokens to pay for."""
    return [score / max(1, len(choice)) for score, choice in zip(logliks, choices, strict=True)]


# --- distractor generation -------------------------------------------------------------------

MCQ_GENERATION_PROMPT = PromptSpec(
    id="mcq-distractors",
    version="1",
    template=(
        "Write distractors for a multiple-choice question.\n"
        "Question: {question}\nCorrect answer: {answer}\n\n"
        "Give one near-miss distractor (plausible, close to the answer, but wrong) and two "
        "clearly wrong distractors. Each must be about as long as the correct answer and must "
        "not be a paraphrase of it.\n"
        'Reply with JSON only: {{"near_miss": "...", "wrong": ["...", "..."]}}'
    ),
)
DEFAULT_GENERATION_PARAMS = DecodingParams(temperature=0.7, max_tokens=512)


def normalize_answer(text: str) -> str:
    """NFKC, case-folded, punctuation-free, single-spaced: the form compared for equality."""
    return " ".join(_TOKENIZER.tokenize(text))


def jaccard(a: str, b: str) -> float:
    """Token-set Jaccard similarity with the Unicode tokenizer (CJK compared per character)."""
    x, y = set(_TOKENIZER.tokenize(a)), set(_TOKENIZER.tokenize(b))
    return len(x & y) / len(x | y) if x | y else 1.0


def distractor_problems(
    answer: str, distractors: Distractors, threshold: float = DEFAULT_PARAPHRASE_JACCARD
) -> list[str]:
    """Every reason a set of distractors is unusable (empty list = accepted)."""
    options = [distractors.near_miss, *distractors.wrong]
    normalized = [normalize_answer(o) for o in options]
    problems = []
    if len(set(normalized)) != len(normalized):
        problems.append(f"distractors are not 3 distinct options after normalisation: {options}")
    for option, norm in zip(options, normalized, strict=True):
        if not norm:
            problems.append(f"distractor {option!r} has no words")
        elif norm == normalize_answer(answer):
            problems.append(f"distractor {option!r} equals the answer after normalisation")
        elif (similarity := jaccard(option, answer)) >= threshold:
            problems.append(
                f"distractor {option!r} is a near-paraphrase of the answer "
                f"(token Jaccard {similarity:.2f} >= {threshold})"
            )
    return problems


@dataclass(frozen=True)
class GenerationRejection:
    """A QA item whose distractors could not be generated or were rejected."""

    item_id: str
    reason: str
    raw: str | None

    def to_json(self) -> dict[str, Any]:
        """Row of the generation quarantine file."""
        return {"id": self.item_id, "reason": self.reason, "raw": self.raw}


def generate_distractors(
    item: QaItem,
    teacher: Provider,
    params: DecodingParams = DEFAULT_GENERATION_PARAMS,
    retry: RetryPolicy | None = None,
    threshold: float = DEFAULT_PARAPHRASE_JACCARD,
    oracle: Oracle | None = None,
) -> McqItem | GenerationRejection:
    """Ask the teacher for distractors in strict JSON and validate them."""
    prompt = render(
        MCQ_GENERATION_PROMPT, {"question": item.question, "answer": item.reference_answer}
    )
    try:
        text = call_with_retry(
            lambda: teacher.generate(prompt, params, oracle), retry or RetryPolicy()
        ).value.text
    except ProviderError as err:
        return GenerationRejection(item.id, f"teacher call failed: {err}", None)
    try:
        distractors = Distractors.model_validate(parse_json_object(text))
    except (StrictJsonError, ValidationError) as err:
        return GenerationRejection(item.id, f"unparseable distractors: {err}", text)
    problems = distractor_problems(item.reference_answer, distractors, threshold)
    if problems:
        return GenerationRejection(item.id, "; ".join(problems), text)
    return McqItem(
        id=item.id,
        question=item.question,
        answer=item.reference_answer,
        distractors=distractors,
        source_ids=item.source_ids,
    )


def length_balance(items: Sequence[McqItem]) -> dict[str, float | int | None]:
    """Mean ratio of distractor length to answer length (characters), overall and by kind.

    Far from 1.0 means test-takers can guess by length (the longest option is often right).
    """
    near = [len(i.distractors.near_miss) / len(i.answer) for i in items]
    wrong = [len(w) / len(i.answer) for i in items for w in i.distractors.wrong]
    both = near + wrong
    return {
        "n_items": len(items),
        "mean_ratio": sum(both) / len(both) if both else None,
        "mean_ratio_near_miss": sum(near) / len(near) if near else None,
        "mean_ratio_wrong": sum(wrong) / len(wrong) if wrong else None,
    }
