"""The per-item result record, its content-addressed cache key, and the local result store.

This schema and `cache_key` are shared with the TypeScript fan-out: every runner writes the
same record under the same key, so a rerun or retry anywhere skips finished items.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from dapt_eval.hashing import canonical_json, canonicalize, sha256_text
from dapt_eval.js_json import MAX_SAFE_INTEGER, js_json

Status = Literal["ok", "errored", "unparseable"]
FINISHED_STATUSES: frozenset[str] = frozenset({"ok", "unparseable"})
RESULT_SCHEMA_VERSION = 1


class ModelRef(BaseModel):
    """Which model produced the prediction."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    provider: str
    model_id: str
    revision: str


class JudgeRecord(BaseModel):
    """The judge's verdict on a QA answer (`verdict` is None when the reply was unparseable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    prompt_version: str
    verdict: Literal["correct", "incorrect"] | None
    reason: str | None
    raw_reply: str | None = None
    """The judge's reply exactly as received (None when the call failed), to audit verdicts."""
    candidate_chars: int | None = None
    """Code points of the candidate answer before the judge prompt's cut."""
    candidate_truncated: bool = False
    """The judge saw only the first `judge_candidate_max_chars` code points of the answer."""


class ItemResult(BaseModel):
    """One line of `results.jsonl` / one file `items/<cache_key>.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = RESULT_SCHEMA_VERSION
    run_id: str
    benchmark: str
    benchmark_version: str
    item_id: str
    task: str
    model: ModelRef
    decoding: dict[str, Any]
    prompt_id: str
    prompt_version: str
    mode: str
    status: Status
    prediction: str | None
    correct: bool | None
    score: float | None
    judge: JudgeRecord | None
    error: str | None
    cache_key: str
    latency_ms: float | None
    usage: dict[str, int] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 0

    @field_validator("decoding")
    @classmethod
    def _portable_numbers(cls, decoding: dict[str, Any]) -> dict[str, Any]:
        """Integral floats as ints (`0.0` -> `0`), as JavaScript writes them: a record from the
        TypeScript worker and one from this runner then hold the same decoding, written and
        compared the same way, instead of being refused as mixed ('0' vs '0.0')."""
        normalised: dict[str, Any] = canonicalize(decoding)
        return normalised

    @field_validator("details")
    @classmethod
    def _integral_details(cls, details: dict[str, Any]) -> dict[str, Any]:
        """Integral floats in `details` (a loglik of -1.0) as ints, as JavaScript writes them."""
        normalised: dict[str, Any] = integral_as_int(details)
        return normalised

    @field_serializer("score", "latency_ms")
    def _integral_number(self, value: float | None) -> float | int | None:
        """`1.0` is written `1`, as the TypeScript worker writes it (read back as 1.0)."""
        number: float | int | None = integral_as_int(value)
        return number

    def to_line(self) -> str:
        """The record as one line of JSON, byte for byte what the TypeScript `recordLine`
        writes: numbers as JavaScript prints them (`0.000001`, not pydantic's `1e-6`)."""
        return js_json(self.model_dump(mode="json")) + "\n"


def integral_as_int(value: Any) -> Any:
    """`value` with every integral float, at any depth, as an int (JSON as JavaScript writes it).

    Only up to 2**53 - 1: above it an int's digits are exact, while JavaScript prints the
    double's shortest digits (`1e+21`, `1152921504606847000`), which `js_number` does for floats.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, dict):
        return {k: integral_as_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral_as_int(v) for v in value]
    return value


def cache_key_payload(
    *,
    benchmark: str,
    benchmark_version: str,
    item_id: str,
    item_sha256: str,
    prompt_id: str,
    prompt_version: str,
    model: ModelRef,
    decoding: dict[str, Any],
    mode: str,
    judge: dict[str, str] | None,
) -> dict[str, Any]:
    """The object whose canonical JSON is hashed into `cache_key` (documented in README.md)."""
    return {
        "benchmark": {"name": benchmark, "version": benchmark_version},
        "item_id": item_id,
        "item_sha256": item_sha256,
        "prompt": {"id": prompt_id, "version": prompt_version},
        "model": model.model_dump(),
        "decoding": decoding,
        "mode": mode,
        "judge": (
            {"model": judge["model"], "prompt_version": judge["prompt_version"]} if judge else None
        ),
    }


def cache_key(**payload: Any) -> str:
    """sha256 hex of the canonical JSON of `cache_key_payload(**payload)`."""
    return sha256_text(canonical_json(cache_key_payload(**payload)))


class Store(Protocol):
    """What a runner needs from a result store: the local `ResultStore` or `S3ResultStore`."""

    def get(self, key: str) -> ItemResult | None:
        """The stored record, or None when absent."""
        ...

    def is_finished(self, key: str) -> bool:
        """A record exists with status ok or unparseable."""
        ...

    def put(self, result: ItemResult) -> None:
        """Store `result` under its cache key (an `errored` record may be overwritten)."""
        ...


class ResultStore:
    """`<out>/items/<cache_key>.json`, one single-line JSON record per file.

    One file per key makes writes atomic (temp file + rename) and lets concurrent workers,
    local threads or Lambda invocations writing to S3, never contend on a shared file.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.items_dir = out_dir / ITEMS_DIR
        self.items_dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """Where the record for `key` lives."""
        return self.items_dir / f"{key}.json"

    def get(self, key: str) -> ItemResult | None:
        """The stored record, or None when absent."""
        path = self.path(key)
        if not path.is_file():
            return None
        return ItemResult.model_validate_json(path.read_text(encoding="utf-8"))

    def is_finished(self, key: str) -> bool:
        """Finished = ok or unparseable; an `errored` record is retried by the next run."""
        record = self.get(key)
        return record is not None and record.status in FINISHED_STATUSES

    def put(self, result: ItemResult) -> None:
        """Write atomically so a crash never leaves a half-written record behind."""
        line = result.to_line()
        handle, temp = tempfile.mkstemp(dir=self.items_dir, prefix=".tmp-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(line)
        Path(temp).replace(self.path(result.cache_key))

    def __iter__(self) -> Iterator[ItemResult]:
        for path in sorted(self.items_dir.glob("*.json")):
            if not path.name.startswith("."):
                yield ItemResult.model_validate_json(path.read_text(encoding="utf-8"))

    def write_jsonl(self, path: Path, results: list[ItemResult]) -> None:
        """Concatenate records into one JSONL file, ordered for stable diffs."""
        with path.open("w", encoding="utf-8") as stream:
            for result in results:
                stream.write(result.to_line())


ITEMS_DIR = "items"
