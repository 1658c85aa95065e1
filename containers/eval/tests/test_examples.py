"""The bundled example domain loads cleanly and is large enough for meaningful error bars."""

from __future__ import annotations

from pathlib import Path

import pytest

from dapt_eval.benchmark import load_benchmark
from dapt_eval.schemas import JudgeCalibrationItem

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "website-builder" / "benchmarks"
# Fewer items than this gives a 95% interval on accuracy wider than about +-7 points.
MIN_ITEMS = 80


@pytest.mark.parametrize(
    "name", ["qa", "mcq", "intent", "sentiment", "segmentation", "summarization"]
)
def test_example_benchmark_loads_with_verified_hash_and_no_quarantine(name: str) -> None:
    benchmark = load_benchmark(EXAMPLES / name)  # verifies items_sha256 against the manifest
    assert benchmark.load.quarantined == []
    assert len(benchmark.items) >= MIN_ITEMS


def test_example_mcq_mirrors_the_qa_items() -> None:
    qa = load_benchmark(EXAMPLES / "qa").items
    mcq = load_benchmark(EXAMPLES / "mcq").items
    assert len(qa) == len(mcq)


def test_example_judge_calibration_set_is_valid() -> None:
    lines = (EXAMPLES / "judge-calibration" / "items.jsonl").read_text("utf-8").splitlines()
    items = [JudgeCalibrationItem.model_validate_json(line) for line in lines if line.strip()]
    assert len(items) >= 150
    verdicts = {item.human_verdict for item in items}
    assert verdicts == {"correct", "incorrect"}
