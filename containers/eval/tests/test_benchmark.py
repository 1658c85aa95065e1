"""Loading benchmarks: bad rows are quarantined with line and reason; bad benchmarks fail loudly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import MakeBenchmark, cls_row, mcq_row, qa_row, write_jsonl
from dapt_eval.benchmark import (
    BenchmarkError,
    build_benchmark,
    load_benchmark,
    load_rows,
    read_manifest,
)
from dapt_eval.hashing import sha256_file
from dapt_eval.schemas import JudgeCalibrationItem, Task

LABELS = ["billing", "outage", "other"]


def test_valid_benchmark_loads_every_row_in_order(make_benchmark: MakeBenchmark) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(3)])
    benchmark = load_benchmark(root)
    assert [item.id for item in benchmark.items] == ["m0", "m1", "m2"]
    assert benchmark.load.quarantined == []


def test_malformed_rows_are_quarantined_with_line_and_reason(make_benchmark: MakeBenchmark) -> None:
    # GIVEN one good row and one of each kind of bad row
    rows = [
        cls_row(1, "billing"),
        "{not json",
        "[1, 2]",
        {"id": "c3", "text": "no label"},
        {"id": "c4", "text": "   ", "label": "billing"},
        {"id": "c5", "text": "hello", "label": "refund"},
        cls_row(1, "outage"),
        {"id": "c7", "text": "x", "label": "other", "extra": 1},
        {"id": 8, "text": "x", "label": "other"},
        "",
    ]
    root = make_benchmark(Task.CLASSIFICATION, rows, labels=LABELS)
    # WHEN it is loaded
    benchmark = load_benchmark(root)
    # THEN only the good row survives and every bad one is counted with its line
    assert [item.id for item in benchmark.items] == ["c1"]
    reasons = {q.line: q.reason for q in benchmark.load.quarantined}
    assert len(reasons) == 9
    assert reasons[2].startswith("invalid JSON")
    assert reasons[3] == "row must be a JSON object, got list"
    assert reasons[4] == "label: field required"
    assert reasons[5] == "text: Value error, must not be empty or whitespace only"
    assert (
        reasons[6]
        == "label: 'refund' is not in the manifest label set ['billing', 'outage', 'other']"
    )
    assert reasons[7] == "duplicate id 'c1' (first seen on line 1)"
    assert reasons[8] == "extra: unknown field"
    assert reasons[9].startswith("id: Input should be a valid string")
    assert reasons[10] == "blank line"
    assert "1 valid rows, 9 quarantined" in benchmark.load.summary()


def test_mcq_needs_exactly_two_wrong_distractors(make_benchmark: MakeBenchmark) -> None:
    bad = mcq_row(1) | {"distractors": {"near_miss": "n", "wrong": ["only one"]}}
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(0), bad]))
    assert benchmark.load.quarantined[0].reason.startswith(
        "distractors.wrong: List should have at least 2"
    )


def test_empty_items_file_is_a_clear_error(make_benchmark: MakeBenchmark) -> None:
    root = make_benchmark(Task.QA, [])
    with pytest.raises(BenchmarkError, match=r"items\.jsonl is empty"):
        load_benchmark(root)


def test_file_with_only_bad_rows_is_an_error_naming_the_first_reason(tmp_path: Path) -> None:
    path = tmp_path / "cal.jsonl"
    write_jsonl(path, ["oops", {"id": "x"}])
    with pytest.raises(
        BenchmarkError, match=r"no valid rows: all 2 quarantined; first reason: line 1"
    ):
        load_rows(path, JudgeCalibrationItem)


def test_hash_mismatch_names_file_and_both_hashes(make_benchmark: MakeBenchmark) -> None:
    root = make_benchmark(Task.QA, [qa_row(1)])
    expected = sha256_file(root / "items.jsonl")
    write_jsonl(root / "items.jsonl", [qa_row(1), qa_row(2)])
    actual = sha256_file(root / "items.jsonl")
    with pytest.raises(BenchmarkError) as caught:
        load_benchmark(root)
    message = str(caught.value)
    assert "items.jsonl" in message and expected in message and actual in message


def test_build_rehashes_items_and_reports_quarantined_rows(make_benchmark: MakeBenchmark) -> None:
    root = make_benchmark(Task.QA, [qa_row(1)])
    write_jsonl(root / "items.jsonl", [qa_row(1), qa_row(2), "garbage"])
    manifest, load = build_benchmark(root)
    assert manifest.items_sha256 == sha256_file(root / "items.jsonl")
    assert read_manifest(root).items_sha256 == manifest.items_sha256
    assert (len(load.rows), len(load.quarantined)) == (2, 1)
    assert len(load_benchmark(root).items) == 2


def test_manifest_problems_are_reported_together(tmp_path: Path) -> None:
    # GIVEN a classification manifest without labels and a template lacking {text}
    (tmp_path / "benchmark.json").write_text(
        json.dumps(
            {
                "name": "intent",
                "version": "1",
                "task": "classification",
                "prompt": {"id": "p", "version": "1", "template": "Labels {labels}: {txt}"},
                "items_sha256": "",
            }
        )
    )
    with pytest.raises(BenchmarkError) as caught:
        read_manifest(tmp_path)
    message = str(caught.value)
    assert "'labels' must list at least 2 labels" in message
    assert "lacks required field '{text}'" in message
    assert "unknown field '{txt}'" in message


def test_labels_on_a_non_classification_task_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "benchmark.json").write_text(
        json.dumps(
            {
                "name": "qa",
                "version": "1",
                "task": "qa",
                "labels": ["a", "b"],
                "prompt": {"id": "p", "version": "1", "template": "{question}"},
            }
        )
    )
    with pytest.raises(BenchmarkError, match="'labels' is only allowed for task 'classification'"):
        read_manifest(tmp_path)


def test_unknown_task_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "benchmark.json").write_text(
        json.dumps({"name": "x", "version": "1", "task": "translation", "prompt": {}})
    )
    with pytest.raises(BenchmarkError, match=r"task: Input should be 'qa', 'mcq'"):
        read_manifest(tmp_path)


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match=r"manifest .*benchmark\.json does not exist"):
        load_benchmark(tmp_path)
