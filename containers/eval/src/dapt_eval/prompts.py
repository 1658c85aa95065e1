"""Versioned prompt templates and their rendering.

A benchmark carries exactly one primary prompt per task and, optionally, a few
meaning-preserving variants (the "format spread"). Templates use `str.format` named fields;
the required fields per task are checked when the manifest is loaded, not at run time.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from dapt_eval.schemas import Task


class PromptSpec(BaseModel):
    """A prompt template with an id and a version; both go into every result's cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    version: str = Field(min_length=1)
    template: str = Field(min_length=1)


def template_fields(template: str) -> set[str]:
    """Named fields used by a `str.format` template; raises ValueError for a malformed one.

    Fields must be plain names (`{question}`): a conversion (`{question!r}`), a format spec
    (`{question:>10}`), an index or attribute, or a positional field is refused, as the
    TypeScript Plan Lambda refuses it (`lambda/shared/prompts.ts`), so a manifest one runtime
    accepts the other does not refuse (vectors: `conformance/templates.json`)."""
    fields = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        raw = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        if conversion or spec or not PLAIN_FIELD.fullmatch(name):
            raise ValueError(
                f"field '{{{raw}}}' is not a plain name (conversions, format specs and "
                "indexing are not supported)"
            )
        fields.add(name)
    return fields


def template_problems(prompt: PromptSpec, task: Task, where: str) -> list[str]:
    """Every problem with a template for a task, so the manifest reports them all at once."""
    try:
        used = template_fields(prompt.template)
    except ValueError as err:
        return [f"{where}: template of prompt '{prompt.id}' is not a valid format string: {err}"]
    required = REQUIRED_FIELDS[task]
    problems = [
        f"{where}: template of prompt '{prompt.id}' lacks required field '{{{name}}}' "
        f"for task '{task.value}'"
        for name in sorted(required - used)
    ]
    problems += [
        f"{where}: template of prompt '{prompt.id}' uses unknown field '{{{name}}}'; "
        f"task '{task.value}' provides {sorted(required)}"
        for name in sorted(used - required)
    ]
    return problems


def cloze_problems(prompt: PromptSpec, where: str) -> list[str]:
    """An mcq `cloze_prompt` shows the question alone: `{question}` and no other field."""
    try:
        used = template_fields(prompt.template)
    except ValueError as err:
        return [f"{where}: template of prompt '{prompt.id}' is not a valid format string: {err}"]
    problems = []
    if "question" not in used:
        problems.append(
            f"{where}: template of cloze prompt '{prompt.id}' lacks required field '{{question}}'"
        )
    problems += [
        f"{where}: template of cloze prompt '{prompt.id}' uses field '{{{name}}}'; a cloze "
        "prompt shows the question alone"
        for name in sorted(used - {"question"})
    ]
    return problems


def render(prompt: PromptSpec, values: Mapping[str, str]) -> str:
    """Fill a template; values are passed verbatim (no escaping) because templates are trusted."""
    return prompt.template.format_map(dict(values))


def format_choices(choices: list[str]) -> str:
    """Render shuffled MCQ choices as 'A. ...' lines; the letters are the parse targets."""
    return "\n".join(f"{CHOICE_LETTERS[i]}. {text}" for i, text in enumerate(choices))


CHOICE_LETTERS = "ABCD"
PLAIN_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

REQUIRED_FIELDS: dict[Task, set[str]] = {
    Task.QA: {"question"},
    Task.MCQ: {"question", "choices"},
    Task.CLASSIFICATION: {"text", "labels"},
    Task.SUMMARIZATION: {"document"},
}

DEFAULT_PROMPTS: dict[Task, PromptSpec] = {
    Task.QA: PromptSpec(
        id="qa-basic",
        version="1",
        template="Answer the question concisely.\n\nQuestion: {question}\nAnswer:",
    ),
    Task.MCQ: PromptSpec(
        id="mcq-letter",
        version="1",
        template=(
            "Choose the correct answer. Reply with the letter only.\n\n"
            "Question: {question}\n{choices}\nAnswer:"
        ),
    ),
    Task.CLASSIFICATION: PromptSpec(
        id="classify-basic",
        version="1",
        template=(
            "Classify the text into exactly one of these labels: {labels}.\n"
            "Reply with the label only.\n\nText: {text}\nLabel:"
        ),
    ),
    Task.SUMMARIZATION: PromptSpec(
        id="summarize-basic",
        version="1",
        template="Summarize the document in a few sentences.\n\nDocument: {document}\nSummary:",
    ),
}
