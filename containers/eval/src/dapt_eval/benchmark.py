"""Benchmark directories: a versioned `benchmark.json` manifest plus a content-hashed JSONL.

Bad rows never crash a run and are never dropped silently: each is *quarantined* with its line
number and the rule it broke, and counted. Problems with the benchmark as a whole (missing
file, empty file, hash mismatch, bad manifest) raise `BenchmarkError` naming file and rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dapt_eval.hashing import sha256_file
from dapt_eval.prompts import PromptSpec, cloze_problems, template_problems
from dapt_eval.schemas import ROW_MODELS, ClassificationItem, Item, Task

RowT = TypeVar("RowT", bound=BaseModel)


class BenchmarkError(ValueError):
    """The benchmark as a whole is unusable; the message names the file, field and rule."""


class Manifest(BaseModel):
    """`benchmark.json`: identity, task, prompt(s) and the hash of the items file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    version: str = Field(min_length=1)
    task: Task
    prompt: PromptSpec
    format_spread: list[PromptSpec] = Field(default_factory=list)
    cloze_prompt: PromptSpec | None = None
    """mcq only: the prompt of the `cloze` mode, with `{question}` alone: the choices are not
    shown, each is scored as the answer's continuation (see `dapt_eval.mcq`)."""
    labels: list[str] | None = None
    items_file: str = Field(default="items.jsonl", min_length=1)
    items_sha256: str = ""
    created_by: str = ""
    notes: str = ""

    def prompts(self, include_spread: bool) -> list[PromptSpec]:
        """The primary prompt first, then the format-spread variants when asked for."""
        return [self.prompt, *self.format_spread] if include_spread else [self.prompt]

    def prompts_for(self, mode: str, include_spread: bool) -> list[PromptSpec]:
        """The prompts a run in `mode` evaluates: the cloze mode has its one prompt."""
        if mode == CLOZE_MODE:
            if self.cloze_prompt is None:
                raise BenchmarkError(f"benchmark '{self.name}' has no 'cloze_prompt'")
            return [self.cloze_prompt]
        return self.prompts(include_spread)

    def primary_prompt_id(self, mode: str | None = None) -> str:
        """The prompt whose results are the headline: the cloze prompt in the cloze mode."""
        if mode == CLOZE_MODE and self.cloze_prompt is not None:
            return self.cloze_prompt.id
        return self.prompt.id


@dataclass(frozen=True)
class Quarantined:
    """A rejected row: where it was, why, and the raw text so a human can fix it."""

    line: int
    reason: str
    raw: str

    def to_json(self) -> dict[str, object]:
        """Row of `quarantine.jsonl`."""
        return {"line": self.line, "reason": self.reason, "raw": self.raw}


@dataclass
class LoadResult(Generic[RowT]):
    """Valid rows in file order plus every quarantined row."""

    path: Path
    rows: list[RowT] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)

    def summary(self) -> str:
        """One line a user reads in logs: how many rows loaded and how many were quarantined."""
        return f"{self.path}: {len(self.rows)} valid rows, {len(self.quarantined)} quarantined"


@dataclass(frozen=True)
class Benchmark:
    """A loaded, hash-verified benchmark."""

    root: Path
    manifest: Manifest
    load: LoadResult[Item]

    @property
    def items(self) -> list[Item]:
        """Valid items in file order."""
        return self.load.rows


RowCheck = Callable[[RowT], str | None]


def load_rows(
    path: Path, model: type[RowT], extra_check: RowCheck[RowT] | None = None
) -> LoadResult[RowT]:
    """Parse a JSONL file row by row, quarantining bad JSON, schema errors and duplicate ids.

    Raises BenchmarkError only when the file is missing, empty, or has no valid row at all.
    """
    if not path.is_file():
        raise BenchmarkError(f"items file {path} does not exist")
    # Bytes decoded, not read_text: its universal newlines would turn a lone "\r" into a break.
    text = path.read_bytes().decode("utf-8").removeprefix(UTF8_BOM)
    if not text.strip():
        raise BenchmarkError(f"items file {path} is empty: a benchmark needs at least one row")
    result: LoadResult[RowT] = LoadResult(path=path)
    first_seen: dict[str, int] = {}
    for number, raw in enumerate(jsonl_lines(text), start=1):
        row, reason = _parse_row(raw, model, extra_check)
        if row is not None:
            row_id = str(getattr(row, "id", ""))
            if row_id in first_seen:
                row, reason = (
                    None,
                    f"duplicate id '{row_id}' (first seen on line {first_seen[row_id]})",
                )
            else:
                first_seen[row_id] = number
        if row is None:
            result.quarantined.append(Quarantined(line=number, reason=reason, raw=raw))
        else:
            result.rows.append(row)
    if not result.rows:
        raise BenchmarkError(
            f"items file {path} has no valid rows: all {len(result.quarantined)} quarantined; "
            f"first reason: line {result.quarantined[0].line}: {result.quarantined[0].reason}"
        )
    return result


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text: split on "\n" only; a "\r" just before it belongs to the break.

    Not `str.splitlines()`: that also breaks on U+2028, U+2029, U+0085, \v, \f and \x1c-\x1e,
    which may stand raw inside JSON strings (this project's `mcq-generate` writes them so), and
    would cut such a row in two and shift every later line number. A lone "\r" is no break.
    The TypeScript loader (`lambda/shared/benchmark.ts`, `jsonlLines`) follows the same rule.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _parse_row(
    raw: str, model: type[RowT], extra_check: RowCheck[RowT] | None
) -> tuple[RowT | None, str]:
    if not raw.strip():
        return None, "blank line"
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        return None, f"invalid JSON: {err.msg} at column {err.colno}"
    if not isinstance(data, dict):
        return None, f"row must be a JSON object, got {type(data).__name__}"
    try:
        row = model.model_validate(data)
    except ValidationError as err:
        return None, _describe_validation_error(err)
    problem = extra_check(row) if extra_check else None
    return (None, problem) if problem else (row, "")


def _describe_validation_error(err: ValidationError) -> str:
    """Flatten pydantic errors to 'field: message; field: message' for quarantine reasons."""
    parts = []
    for detail in err.errors():
        where = ".".join(str(p) for p in detail["loc"]) or "row"
        message = "field required" if detail["type"] == "missing" else detail["msg"]
        if detail["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def read_manifest(root: Path) -> Manifest:
    """Parse and cross-check `benchmark.json`, reporting every problem together."""
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise BenchmarkError(f"manifest {path} does not exist")
    try:
        manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as err:
        raise BenchmarkError(
            f"manifest {path} is invalid: {_describe_validation_error(err)}"
        ) from err
    problems = manifest_problems(manifest, str(path))
    if problems:
        raise BenchmarkError("; ".join(problems))
    return manifest


def manifest_problems(manifest: Manifest, where: str) -> list[str]:
    """Rules that span fields: labels iff classification, template fields, unique prompt ids."""
    problems: list[str] = []
    is_classification = manifest.task is Task.CLASSIFICATION
    labels = manifest.labels or []
    if is_classification and len(labels) < MIN_LABELS:
        problems.append(
            f"{where}: 'labels' must list at least {MIN_LABELS} labels for task 'classification'"
        )
    if is_classification and len(set(labels)) != len(labels):
        problems.append(f"{where}: 'labels' has duplicates: {labels}")
    if not is_classification and manifest.labels is not None:
        problems.append(
            f"{where}: 'labels' is only allowed for task 'classification', "
            f"not '{manifest.task.value}'"
        )
    prompts = manifest.prompts(include_spread=True)
    for prompt in prompts:
        problems += template_problems(prompt, manifest.task, where)
    if manifest.cloze_prompt is not None:
        if manifest.task is not Task.MCQ:
            problems.append(
                f"{where}: 'cloze_prompt' is only allowed for task 'mcq', "
                f"not '{manifest.task.value}'"
            )
        problems += cloze_problems(manifest.cloze_prompt, where)
        prompts = [*prompts, manifest.cloze_prompt]
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        problems.append(
            f"{where}: prompt ids must be unique across 'prompt', 'format_spread' and "
            f"'cloze_prompt': {ids}"
        )
    return problems


def load_benchmark(root: Path, verify_hash: bool = True) -> Benchmark:
    """Load a benchmark directory, verify the items hash, validate and quarantine rows."""
    manifest = read_manifest(root)
    items_path = root / manifest.items_file
    if verify_hash:
        verify_items_hash(items_path, manifest.items_sha256)
    load = load_rows(items_path, ROW_MODELS[manifest.task], _label_check(manifest))
    return Benchmark(root=root, manifest=manifest, load=load)  # type: ignore[arg-type]


def verify_items_hash(items_path: Path, expected: str) -> None:
    """Refuse to evaluate items that are not the ones the manifest (and its version) describes."""
    if not items_path.is_file():
        raise BenchmarkError(f"items file {items_path} does not exist")
    actual = sha256_file(items_path)
    if actual != expected:
        raise BenchmarkError(
            f"items file {items_path} does not match its manifest: items_sha256 in manifest is "
            f"'{expected}', file hashes to '{actual}'. Run `dapt-eval build` and bump 'version' "
            "if the items changed on purpose."
        )


def build_benchmark(root: Path) -> tuple[Manifest, LoadResult[Item]]:
    """Recompute `items_sha256`, validate all rows, and rewrite the manifest.

    Returns the new manifest and the load result so the caller can report quarantined rows.
    """
    manifest = read_manifest(root)
    items_path = root / manifest.items_file
    load = load_rows(items_path, ROW_MODELS[manifest.task], _label_check(manifest))
    updated = manifest.model_copy(update={"items_sha256": sha256_file(items_path)})
    write_manifest(root, updated)
    return updated, load  # type: ignore[return-value]


def write_manifest(root: Path, manifest: Manifest) -> Path:
    """Write `benchmark.json` with stable key order and a trailing newline."""
    path = root / MANIFEST_FILE
    data = manifest.model_dump(mode="json", exclude_none=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _label_check(manifest: Manifest) -> RowCheck[BaseModel] | None:
    if manifest.task is not Task.CLASSIFICATION:
        return None
    allowed = list(manifest.labels or [])

    def check(row: BaseModel) -> str | None:
        assert isinstance(row, ClassificationItem)
        if row.label not in allowed:
            return f"label: '{row.label}' is not in the manifest label set {allowed}"
        return None

    return check


CLOZE_MODE = "cloze"
"""The mcq scoring mode that uses `cloze_prompt` (`dapt_eval.mcq.McqMode.CLOZE`)."""
UTF8_BOM = "\ufeff"
"""Dropped from the start of an items file (once), as the TypeScript Plan's TextDecoder does: the
hash is still of the raw bytes, so the same verified file gives the same rows in both runtimes."""
MANIFEST_FILE = "benchmark.json"
QUARANTINE_FILE = "quarantine.jsonl"
MIN_LABELS = 2
