"""Shared builders: tiny benchmark directories written the way `dapt-eval build` writes them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from dapt_eval.benchmark import Manifest, write_manifest
from dapt_eval.hashing import sha256_file
from dapt_eval.prompts import DEFAULT_PROMPTS, PromptSpec
from dapt_eval.providers.retry import RetryPolicy
from dapt_eval.schemas import Task

MakeBenchmark = Callable[..., Path]
BUCKET = "eval-bucket"


def write_jsonl(path: Path, rows: list[Any]) -> None:
    """Rows may be dicts (serialised) or raw strings (written verbatim, for malformed lines)."""
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_benchmark(
    parent: Path,
    task: Task,
    rows: list[Any],
    labels: list[str] | None = None,
    name: str = "bench",
    spread: list[PromptSpec] | None = None,
) -> Path:
    """Write benchmark.json + items.jsonl under `parent` with a correct hash; returns the dir."""
    root = parent / f"{name}-{task.value}"
    root.mkdir()
    write_jsonl(root / "items.jsonl", rows)
    manifest = Manifest(
        name=name,
        version="1.0.0",
        task=task,
        prompt=DEFAULT_PROMPTS[task],
        format_spread=spread or [],
        labels=labels,
        items_sha256=sha256_file(root / "items.jsonl"),
        created_by="tests",
    )
    write_manifest(root, manifest)
    return root


@pytest.fixture
def make_benchmark(tmp_path: Path) -> MakeBenchmark:
    """`write_benchmark` in the test's tmp_path."""

    def make(
        task: Task,
        rows: list[Any],
        labels: list[str] | None = None,
        name: str = "bench",
        spread: list[PromptSpec] | None = None,
    ) -> Path:
        return write_benchmark(tmp_path, task, rows, labels, name, spread)

    return make


@pytest.fixture
def no_sleep_retry() -> RetryPolicy:
    """Retries without waiting, so throttling tests run in milliseconds."""
    return RetryPolicy(max_attempts=3, sleep=lambda _: None)


def mcq_row(i: int) -> dict[str, Any]:
    return {
        "id": f"m{i}",
        "question": f"Which value is correct for case {i}?",
        "answer": f"value {i}",
        "distractors": {"near_miss": f"value {i + 1}", "wrong": ["banana", "the moon"]},
        "source_ids": ["doc-1"],
    }


def qa_row(i: int) -> dict[str, Any]:
    return {
        "id": f"q{i}",
        "question": f"What is fact {i}?",
        "reference_answer": f"Fact number {i}",
        "source_ids": ["doc-1"],
    }


def cls_row(i: int, label: str) -> dict[str, Any]:
    return {"id": f"c{i}", "text": f"message {i}", "label": label}


def sum_row(i: int) -> dict[str, Any]:
    return {
        "id": f"s{i}",
        "document": f"Long document {i}. It has several sentences. The key point is {i}.",
        "reference_summary": f"The key point is {i}.",
    }


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto S3 with one bucket; fake credentials so nothing reaches AWS."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
