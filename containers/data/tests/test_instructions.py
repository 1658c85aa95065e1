"""Instruction data from the example labeled sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dapt_data.config import load_config
from dapt_data.instructions import (
    PARAPHRASES,
    InstructionTask,
    build_instructions,
    pick_paraphrase,
)
from dapt_data.pipeline import run_instructions

EXAMPLE = Path(__file__).parents[3] / "examples" / "website-builder"
BENCHMARKS = EXAMPLE / "benchmarks"
FOLDERS = {
    InstructionTask.INTENT: "intent",
    InstructionTask.SENTIMENT: "sentiment",
    InstructionTask.SEGMENTATION: "segmentation",
    InstructionTask.SUMMARIZATION: "summarization",
}


@pytest.mark.parametrize("task", list(InstructionTask))
def test_no_paraphrase_equals_an_evaluation_prompt(task: InstructionTask) -> None:
    manifest = json.loads((BENCHMARKS / FOLDERS[task] / "benchmark.json").read_text())
    eval_templates = {manifest["prompt"]["template"]} | {
        p["template"] for p in manifest.get("format_spread", [])
    }
    ours = [p.template for p in PARAPHRASES[task]]
    assert len(ours) >= 4
    assert len(set(ours)) == len(ours)
    assert not set(ours) & eval_templates
    eval_ids = {manifest["prompt"]["id"]} | {p["id"] for p in manifest.get("format_spread", [])}
    assert not {p.id for p in PARAPHRASES[task]} & eval_ids


@pytest.mark.parametrize("task", list(InstructionTask))
def test_every_item_becomes_a_record_with_its_source_and_answer(task: InstructionTask) -> None:
    folder = BENCHMARKS / FOLDERS[task]
    rows = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    examples = build_instructions(folder, task, seed=0)
    assert len(examples) == len(rows)
    name = json.loads((folder / "benchmark.json").read_text())["name"]
    first, row = examples[0], rows[0]
    assert first.source_id == f"{name}:{row['id']}"
    assert first.response == row.get("label", row.get("reference_summary"))
    assert (row.get("text") or row.get("document")) in first.prompt
    assert "{" not in first.prompt.replace(row.get("text", row.get("document", "")), "")
    # all phrasings are used on a set this size
    assert {e.prompt_id for e in examples} == {p.id for p in PARAPHRASES[task]}


def test_assignment_is_deterministic_per_seed_and_independent_of_order() -> None:
    folder = BENCHMARKS / "intent"
    a = build_instructions(folder, InstructionTask.INTENT, seed=3)
    b = build_instructions(folder, InstructionTask.INTENT, seed=3)
    c = build_instructions(folder, InstructionTask.INTENT, seed=4)
    assert a == b
    assert [e.prompt_id for e in a] != [e.prompt_id for e in c]
    item = "intent-0001"
    assert pick_paraphrase(InstructionTask.INTENT, item, 3).id == next(
        e.prompt_id for e in a if e.source_id.endswith(item)
    )


def test_bad_rows_name_the_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "benchmark.json").write_text(json.dumps({"name": "t", "labels": ["a", "b"]}))
    (tmp_path / "items.jsonl").write_text('{"id": "1", "text": "x", "label": "a"}\n{"id": "2"}\n')
    with pytest.raises(ValueError, match=r"items.jsonl: line 2: field 'text' missing"):
        build_instructions(tmp_path, InstructionTask.INTENT)


def test_the_example_training_sets_overlap_no_benchmark(tmp_path: Path) -> None:
    # GIVEN the example domain's pipeline, its training splits and its six benchmarks
    config = load_config(EXAMPLE / "pipeline.yaml").model_copy(update={"output": str(tmp_path)})
    # WHEN its instruction rows are made and put through the decontamination guard
    result = run_instructions(config)
    # THEN the guard drops none: no training row asks what an evaluation item asks
    assert result.counts["dropped"] == {}
    assert result.counts["out"] > 0
