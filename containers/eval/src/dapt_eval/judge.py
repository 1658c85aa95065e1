"""Reference-guided LLM-as-judge and its calibration against human verdicts.

The judge sees the question, the reference answer and the candidate, and must reply with
strict JSON {"verdict": "correct"|"incorrect", "reason": "..."}. A reply that does not parse
is `unparseable` and is counted on its own: it is never turned into "incorrect".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from dapt_eval.prompts import PromptSpec, render
from dapt_eval.providers.base import DecodingParams, Oracle, Provider, ProviderError
from dapt_eval.providers.retry import RetryPolicy, call_with_retry
from dapt_eval.schemas import JudgeCalibrationItem
from dapt_eval.strict_json import StrictJsonError, parse_json_object

VerdictLabel = Literal["correct", "incorrect"]

JUDGE_PROMPT = PromptSpec(
    id="judge-reference-guided",
    version="1",
    template=(
        "You are grading an answer against a reference answer.\n"
        "The candidate is correct if it states the same facts as the reference answer; wording "
        "may differ, extra harmless detail is fine, any contradiction or missing key fact makes "
        "it incorrect.\n\n"
        "Question: {question}\n"
        "Reference answer: {reference_answer}\n"
        "Candidate answer: {candidate_answer}\n\n"
        'Reply with JSON only: {{"verdict": "correct" or "incorrect", "reason": "<one sentence>"}}'
    ),
)
DEFAULT_JUDGE_PARAMS = DecodingParams(temperature=0.0, max_tokens=256)
DEFAULT_KAPPA_THRESHOLD = 0.6  # Landis & Koch: >= 0.61 is "substantial" agreement
VERDICT_LABELS: tuple[VerdictLabel, VerdictLabel] = ("correct", "incorrect")


class JudgeVerdict(BaseModel):
    """The only reply shape the judge may give."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    verdict: VerdictLabel
    reason: str


class VerdictParseError(ValueError):
    """The judge's reply is not a strict verdict object."""


def parse_verdict(text: str) -> JudgeVerdict:
    """Parse a judge reply strictly; see `strict_json` for what is accepted."""
    try:
        return JudgeVerdict.model_validate(parse_json_object(text))
    except StrictJsonError as err:
        raise VerdictParseError(str(err)) from err
    except ValidationError as err:
        fields = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'object'}: {e['msg']}" for e in err.errors()
        )
        raise VerdictParseError(f"verdict object rejected: {fields}") from err


@dataclass(frozen=True)
class JudgeOutcome:
    """One judging call: `ok` with a verdict, `unparseable` with the raw text, or `errored`."""

    status: Literal["ok", "unparseable", "errored"]
    verdict: VerdictLabel | None = None
    reason: str | None = None
    error: str | None = None
    raw: str | None = None


@dataclass
class Judge:
    """A provider used as judge, with its prompt and decoding settings."""

    provider: Provider
    prompt: PromptSpec = JUDGE_PROMPT
    params: DecodingParams = DEFAULT_JUDGE_PARAMS
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def describe(self) -> dict[str, str]:
        """`{model, prompt_version}` as recorded in results and in the cache key."""
        identity = self.provider.identity()
        model = f"{identity['provider']}:{identity['model_id']}@{identity['revision']}"
        return {"model": model, "prompt_version": f"{self.prompt.id}@{self.prompt.version}"}

    def judge(
        self,
        question: str,
        reference: str,
        candidate: str,
        seed_offset: int = 0,
        simulated: VerdictLabel | None = None,
    ) -> JudgeOutcome:
        """Judge one candidate. `simulated` is the verdict an offline judge should lean to."""
        prompt = render(
            self.prompt,
            {"question": question, "reference_answer": reference, "candidate_answer": candidate},
        )
        params = self.params.model_copy(update={"seed": self.params.seed + seed_offset})
        oracle = verdict_oracle(simulated) if simulated else None
        try:
            generation = call_with_retry(
                lambda: self.provider.generate(prompt, params, oracle), self.retry
            ).value
        except ProviderError as err:
            return JudgeOutcome(status="errored", error=f"judge: {err}")
        try:
            parsed = parse_verdict(generation.text)
        except VerdictParseError as err:
            return JudgeOutcome(status="unparseable", error=f"judge: {err}", raw=generation.text)
        return JudgeOutcome(status="ok", verdict=parsed.verdict, reason=parsed.reason)


def verdict_oracle(expected: VerdictLabel) -> Oracle:
    """Offline-provider oracle: the expected verdict as JSON, the opposite as the wrong answer."""
    opposite: VerdictLabel = "incorrect" if expected == "correct" else "correct"
    return Oracle(
        correct=f'{{"verdict": "{expected}", "reason": "simulated"}}',
        wrong=(f'{{"verdict": "{opposite}", "reason": "simulated"}}',),
    )


def calibrate(
    items: Sequence[JudgeCalibrationItem],
    judge: Judge,
    kappa_threshold: float = DEFAULT_KAPPA_THRESHOLD,
) -> dict[str, Any]:
    """Judge every item twice and compare the first pass with the human verdicts.

    The retest pass uses decoding seed + 1, so the flip rate measures how much a verdict
    depends on sampling; with a seed-honouring provider at temperature 0 it should be ~0.
    """
    first = [_judge_item(judge, item, 0) for item in items]
    second = [_judge_item(judge, item, 1) for item in items]
    scored = [(i.human_verdict, o.verdict) for i, o in zip(items, first, strict=True) if o.verdict]
    kappa = _kappa([h for h, _ in scored], [j for _, j in scored])
    return {
        "judge": judge.describe(),
        "n_items": len(items),
        "n_scored": len(scored),
        "n_unparseable": sum(1 for o in first if o.status == "unparseable"),
        "n_errored": sum(1 for o in first if o.status == "errored"),
        "cohen_kappa": kappa,
        "kappa_threshold": kappa_threshold,
        "trusted": kappa is not None and kappa >= kappa_threshold,
        **agreement_breakdown([h for h, _ in scored], [j for _, j in scored]),
        "test_retest": flip_rate(first, second),
    }


def agreement_breakdown(human: Sequence[str], judged: Sequence[str]) -> dict[str, Any]:
    """Confusion matrix (rows human, columns judge), leniency and severity.

    Leniency: share of human-incorrect items the judge calls correct (false passes).
    Severity: share of human-correct items the judge calls incorrect (false fails).
    """
    labels = list(VERDICT_LABELS)
    matrix = confusion_matrix(human, judged, labels=labels).tolist() if human else [[0, 0], [0, 0]]
    (cc, ci), (ic, ii) = matrix
    return {
        "confusion_matrix": {
            "labels": labels,
            "rows": "human",
            "columns": "judge",
            "matrix": matrix,
        },
        "leniency": ic / (ic + ii) if ic + ii else None,
        "severity": ci / (cc + ci) if cc + ci else None,
    }


def flip_rate(first: Sequence[JudgeOutcome], second: Sequence[JudgeOutcome]) -> dict[str, Any]:
    """Share of items, judged successfully both times, whose verdict changed."""
    pairs = [
        (a.verdict, b.verdict)
        for a, b in zip(first, second, strict=True)
        if a.verdict and b.verdict
    ]
    flips = sum(1 for a, b in pairs if a != b)
    return {
        "n_pairs": len(pairs),
        "flips": flips,
        "flip_rate": flips / len(pairs) if pairs else None,
    }


def _judge_item(judge: Judge, item: JudgeCalibrationItem, seed_offset: int) -> JudgeOutcome:
    return judge.judge(
        item.question,
        item.reference_answer,
        item.candidate_answer,
        seed_offset=seed_offset,
        simulated=item.human_verdict,
    )


def _kappa(human: Sequence[str], judged: Sequence[str]) -> float | None:
    """Cohen's kappa, or None when undefined (no items, or a single class on both sides)."""
    if not human:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(cohen_kappa_score(human, judged, labels=list(VERDICT_LABELS)))
    return None if math.isnan(value) else value
