"""Flat rows of result records for Athena, typed by `athena_schema.json`.

The schema file is the one list of columns: this writer reads it, and the CDK Glue table
(`lib/`) reads the same file, so the table and the data cannot drift apart. `run_id` is not a
column: it is the partition (`athena/results/run_id=<run_id>/results.jsonl`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from dapt_eval.results import ItemResult

GlueType = Literal["string", "boolean", "double", "bigint"]


@dataclass(frozen=True)
class Column:
    """One column of the Athena results table."""

    name: str
    type: GlueType


class AthenaSchemaError(ValueError):
    """`athena_schema.json` and the row writer disagree; the message lists every problem."""


@cache
def athena_columns() -> tuple[Column, ...]:
    """The columns of `athena_schema.json`, checked against the extractors below."""
    text = resources.files("dapt_eval").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    columns = tuple(Column(c["name"], c["type"]) for c in json.loads(text))
    problems = schema_problems(columns)
    if problems:
        raise AthenaSchemaError(f"{SCHEMA_FILE}: " + "; ".join(problems))
    return columns


def schema_problems(columns: Iterable[Column]) -> list[str]:
    """Unknown types, duplicate names, columns without an extractor and extractors unused."""
    names = [c.name for c in columns]
    problems = [
        f"column '{c.name}' has type '{c.type}', not one of {sorted(CASTS)}"
        for c in columns
        if c.type not in CASTS
    ]
    problems += [
        f"column '{n}' is listed twice" for n in sorted({n for n in names if names.count(n) > 1})
    ]
    problems += [f"column '{n}' has no extractor" for n in names if n not in EXTRACTORS]
    problems += [f"extractor '{n}' has no column" for n in EXTRACTORS if n not in names]
    return problems


def athena_row(result: ItemResult) -> dict[str, Any]:
    """One flat row: every schema column, in schema order, cast to its Glue type (or null)."""
    row: dict[str, Any] = {}
    for column in athena_columns():
        value = EXTRACTORS[column.name](result)
        row[column.name] = None if value is None else CASTS[column.type](value)
    return row


def athena_jsonl(results: Iterable[ItemResult]) -> str:
    """Rows as JSON Lines (the OpenX JSON SerDe reads one object a line)."""
    return "".join(
        json.dumps(athena_row(r), ensure_ascii=False, separators=(",", ":")) + "\n" for r in results
    )


def _usage(name: str) -> Callable[[ItemResult], Any]:
    return lambda r: r.usage.get(name)


EXTRACTORS: dict[str, Callable[[ItemResult], Any]] = {
    "benchmark": lambda r: r.benchmark,
    "benchmark_version": lambda r: r.benchmark_version,
    "item_id": lambda r: r.item_id,
    "task": lambda r: r.task,
    "provider": lambda r: r.model.provider,
    "model_id": lambda r: r.model.model_id,
    "revision": lambda r: r.model.revision,
    "prompt_id": lambda r: r.prompt_id,
    "prompt_version": lambda r: r.prompt_version,
    "mode": lambda r: r.mode,
    "status": lambda r: r.status,
    "prediction": lambda r: r.prediction,
    "correct": lambda r: r.correct,
    "score": lambda r: r.score,
    "judge_verdict": lambda r: r.judge.verdict if r.judge else None,
    "error": lambda r: r.error,
    "cache_key": lambda r: r.cache_key,
    "latency_ms": lambda r: r.latency_ms,
    "input_tokens": _usage("input_tokens"),
    "output_tokens": _usage("output_tokens"),
}
CASTS: dict[str, Callable[[Any], Any]] = {
    "string": str,
    "boolean": bool,
    "double": float,
    "bigint": int,
}
SCHEMA_FILE = "athena_schema.json"
