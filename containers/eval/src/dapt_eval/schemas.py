"""Row schemas of benchmark items (one pydantic model per task) and the judge calibration set.

Field names are a contract with the example-data author and the TypeScript fan-out; extra
fields are rejected so that a typo ("referance_answer") is quarantined instead of ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


class Task(StrEnum):
    """The four benchmark tasks; each has one row schema and one scoring rule."""

    QA = "qa"
    MCQ = "mcq"
    CLASSIFICATION = "classification"
    SUMMARIZATION = "summarization"


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or whitespace only")
    return value


NonBlank = Annotated[str, AfterValidator(_non_blank)]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: NonBlank


class QaItem(_Row):
    """Open question answered freely and graded by a reference-guided judge."""

    question: NonBlank
    reference_answer: NonBlank
    source_ids: list[NonBlank] = Field(default_factory=list)


class Distractors(BaseModel):
    """One plausible near-miss and two clearly wrong options."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    near_miss: NonBlank
    wrong: Annotated[list[NonBlank], Field(min_length=2, max_length=2)]


class McqItem(_Row):
    """Multiple-choice question; choices are shuffled per item at evaluation time."""

    question: NonBlank
    answer: NonBlank
    distractors: Distractors
    source_ids: list[NonBlank] = Field(default_factory=list)

    def canonical_choices(self) -> list[str]:
        """Choices in fixed order: answer, near-miss, wrong[0], wrong[1] (indices 0..3)."""
        return [self.answer, self.distractors.near_miss, *self.distractors.wrong]


class ClassificationItem(_Row):
    """Text with one gold label from the manifest's label set (intent, sentiment, ...)."""

    text: NonBlank
    label: NonBlank


class SummarizationItem(_Row):
    """Document with one reference summary, scored with Unicode-aware ROUGE-L."""

    document: NonBlank
    reference_summary: NonBlank


Attack = Literal["injection", "fake_verdict", "reference_plus_wrong_claim"]
"""How an adversarial calibration candidate tries to steer the judge: instructions addressed to
the judge, a verdict block of its own, or the reference answer restated next to a wrong claim."""


class JudgeCalibrationItem(_Row):
    """A candidate answer labelled correct/incorrect by a human, to calibrate the judge.

    `attack` marks an adversarial candidate; it must be humanly `incorrect` (the attack is
    what would make it pass), and these items give the report's `injection_resistance`."""

    question: NonBlank
    reference_answer: NonBlank
    candidate_answer: NonBlank
    human_verdict: Literal["correct", "incorrect"]
    annotator: NonBlank
    attack: Attack | None = None

    @model_validator(mode="after")
    def _attacks_are_incorrect(self) -> JudgeCalibrationItem:
        if self.attack is not None and self.human_verdict != "incorrect":
            raise ValueError(
                f"attack '{self.attack}' needs human_verdict 'incorrect', got "
                f"'{self.human_verdict}'"
            )
        return self


Item = QaItem | McqItem | ClassificationItem | SummarizationItem

ROW_MODELS: dict[Task, type[_Row]] = {
    Task.QA: QaItem,
    Task.MCQ: McqItem,
    Task.CLASSIFICATION: ClassificationItem,
    Task.SUMMARIZATION: SummarizationItem,
}
