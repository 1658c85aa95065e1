"""Instruction data from labeled sets: several phrasings per task, prompt/response records.

Training on one phrasing teaches the phrasing; a fixed list of paraphrases per task (written
here, all different from the evaluation prompts in each `benchmark.json`) teaches the task.
Each item gets one paraphrase, picked by a hash of (seed, item id): the same seed gives the
same file whatever the item order, and a different seed reshuffles.

Input is a benchmark folder (`benchmark.json` + items file, the dapt-eval format):
classification rows `{id, text, label}` and summarization rows `{id, document,
reference_summary}`; or, through `labelled_example`, one labelled pipeline record at a time
(the pipeline's `instructions.sources`), phrased the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from dapt_eval.prompts import PromptSpec, render
from pydantic import BaseModel, ConfigDict


class InstructionTask(StrEnum):
    """Which paraphrase list to use."""

    INTENT = "intent"
    SENTIMENT = "sentiment"
    SEGMENTATION = "segmentation"
    SUMMARIZATION = "summarization"


class InstructionExample(BaseModel):
    """One prompt/response pair with its lineage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    source_id: str
    task: InstructionTask
    prompt: str
    response: str
    prompt_id: str
    prompt_version: str


def build_instructions(
    benchmark_dir: Path, task: InstructionTask, seed: int = 0
) -> list[InstructionExample]:
    """Prompt/response records for every item of a benchmark folder."""
    manifest = _read_json(benchmark_dir / "benchmark.json")
    name = str(manifest.get("name") or benchmark_dir.name)
    labels = manifest.get("labels") or []
    items_path = benchmark_dir / str(manifest.get("items_file") or "items.jsonl")
    summarising = task == InstructionTask.SUMMARIZATION
    if not summarising and not labels:
        raise ValueError(f"{benchmark_dir / 'benchmark.json'}: task '{task}' needs 'labels'")
    fields = ("document", "reference_summary") if summarising else ("text", "label")
    examples = []
    lines = items_path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        problems = [
            f"field '{f}' missing or not a non-empty string"
            for f in ("id", *fields)
            if not isinstance(row.get(f), str) or not row[f].strip()
        ]
        if problems:
            raise ValueError(f"{items_path}: line {number}: {'; '.join(problems)}")
        values = (
            {"document": row["document"]}
            if summarising
            else {"text": row["text"], "labels": render_labels(labels)}
        )
        examples.append(
            _example(task, row["id"], f"{name}:{row['id']}", values, row[fields[1]], seed)
        )
    return examples


def labelled_example(
    task: InstructionTask,
    source_id: str,
    text: str,
    label: str,
    labels: Sequence[str],
    seed: int = 0,
) -> InstructionExample:
    """The prompt/response pair of one labelled record; its phrasing is picked by `source_id`."""
    if task == InstructionTask.SUMMARIZATION:
        raise ValueError(f"{source_id}: task '{task}' needs a document and a reference summary")
    values = {"text": text, "labels": render_labels(labels)}
    return _example(task, source_id, source_id, values, label, seed)


def render_labels(labels: Sequence[str]) -> str:
    """The label list as the prompts show it."""
    return ", ".join(labels)


def _example(
    task: InstructionTask,
    item_id: str,
    source_id: str,
    values: dict[str, str],
    response: str,
    seed: int,
) -> InstructionExample:
    prompt = pick_paraphrase(task, item_id, seed)
    return InstructionExample(
        id=hashlib.sha256(f"{source_id}\x00{prompt.id}".encode()).hexdigest()[:16],
        source_id=source_id,
        task=task,
        prompt=render(prompt, values),
        response=response,
        prompt_id=prompt.id,
        prompt_version=prompt.version,
    )


def pick_paraphrase(task: InstructionTask, item_id: str, seed: int) -> PromptSpec:
    """The paraphrase for an item: a hash of (seed, item id), independent of item order."""
    choices = PARAPHRASES[task]
    digest = hashlib.sha256(f"{seed}\x00{item_id}".encode()).hexdigest()
    return choices[int(digest[:16], 16) % len(choices)]


def _read_json(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"{path}: must be a JSON object, got {type(value).__name__}")
    return value


def _specs(prefix: str, templates: tuple[str, ...]) -> tuple[PromptSpec, ...]:
    return tuple(
        PromptSpec(id=f"{prefix}-para-{i}", version="1", template=t)
        for i, t in enumerate(templates, start=1)
    )


PARAPHRASES: dict[InstructionTask, tuple[PromptSpec, ...]] = {
    InstructionTask.INTENT: _specs(
        "intent",
        (
            'A customer wrote to support:\n"{text}"\nWhat do they want? Pick one of: {labels}.',
            "Label the request below with its intent.\nAllowed intents: {labels}\n\n{text}",
            "Route this support message. Reply with one intent from this list: {labels}.\n"
            "Message: {text}",
            "{text}\n\nWhich intent best describes the message above? Options: {labels}",
            "Intent options: {labels}.\nRead the customer's message and name the matching "
            "intent.\n---\n{text}",
        ),
    ),
    InstructionTask.SENTIMENT: _specs(
        "sentiment",
        (
            'How does this customer feel? Answer {labels}.\n\n"{text}"',
            "Rate the tone of the message below as one of: {labels}.\n{text}",
            "{text}\n\nIs the message above {labels}? Give the label.",
            "Classify the customer's mood. Labels: {labels}.\nText: {text}",
            "Read the support message and tag its sentiment ({labels}).\n---\n{text}",
        ),
    ),
    InstructionTask.SEGMENTATION: _specs(
        "segment",
        (
            "Here is a short profile of a Quillsite customer:\n{text}\n"
            "Which segment are they in? One of: {labels}.",
            "Assign the customer to a segment ({labels}).\nProfile: {text}",
            "{text}\n\nGiven the description above, pick the customer segment from: {labels}",
            "Segments: {labels}.\nWhich one matches this customer? {text}",
        ),
    ),
    InstructionTask.SUMMARIZATION: _specs(
        "summary",
        (
            "Give a brief summary of the text below, one to three sentences, written in the "
            "text's own language.\n\n{document}",
            "{document}\n\nSum up what happened above in at most three sentences "
            "(same language as the text).",
            "Write a short recap (1-3 sentences, same language) of this:\n---\n{document}",
            "Summarise for a colleague who has not read it, in one to three sentences and in "
            "the original language:\n{document}",
        ),
    ),
}
"""Fixed instruction phrasings per task; ids and versions go on every record."""
