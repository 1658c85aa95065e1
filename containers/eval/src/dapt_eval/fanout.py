"""Aggregate one fan-out run: the plan's expected keys plus the records found, into reports.

Pure functions over records already read (the Lambda handler in `aws_lambda.py` does the I/O):
the per-model report is exactly `dapt-eval aggregate`'s, and the side-by-side comparison is
`dapt-eval compare`'s, so the metrics have one implementation.

A key the plan expected but no record answers is *missing*: counted, listed, and part of the
completion rate's denominator, never dropped. An object that is not a valid record is
*invalid*: counted and listed with the reason, and not finished either.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dapt_eval.aggregate import AggregationError, ReportScope, aggregate
from dapt_eval.athena import athena_jsonl
from dapt_eval.compare import RunView, calibration_from_gate, render_html, side_by_side
from dapt_eval.results import FINISHED_STATUSES, ItemResult, ModelRef
from dapt_eval.s3store import Fetched
from dapt_eval.schemas import Task

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
CACHE_KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class PlanError(ValueError):
    """`run.json` is missing or invalid; the message names every bad field."""


class PromptRef(BaseModel):
    """The benchmark's primary prompt (a full prompt spec with its template is accepted)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1)
    version: str = Field(min_length=1)


class PlanBenchmark(BaseModel):
    """The benchmark block of `run.json` (the whole manifest may be passed through)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    task: Task
    prompt: PromptRef | None = None
    labels: list[str] | None = None
    n_items: int | None = Field(default=None, ge=0)


class Plan(BaseModel):
    """`runs/<run_id>/run.json` as written by the TypeScript `Plan` Lambda (extra keys kept).

    `models` (optional) fixes the order of the comparison (first = baseline) and lets a model
    with no record at all still appear in the report.
    """

    model_config = ConfigDict(extra="allow", frozen=True, protected_namespaces=())

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    benchmark: PlanBenchmark
    cache_keys: list[str] = Field(min_length=1)
    models: list[ModelRef] = Field(default_factory=list)

    @field_validator("cache_keys")
    @classmethod
    def _keys_are_unique_sha256(cls, keys: list[str]) -> list[str]:
        bad = [k for k in keys if not CACHE_KEY_PATTERN.match(k)]
        if bad:
            raise ValueError(
                f"{len(bad)} key(s) are not 64 lowercase hex characters, first {bad[0]!r}"
            )
        duplicates = sorted(k for k, n in Counter(keys).items() if n > 1)
        if duplicates:
            raise ValueError(f"{len(duplicates)} key(s) listed twice, first {duplicates[0]!r}")
        return keys


def parse_plan(text: str, where: str) -> Plan:
    """Validate `run.json`, naming every missing or bad field in one error."""
    try:
        return Plan.model_validate_json(text)
    except ValidationError as err:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()
        ]
        raise PlanError(f"{where} is not a valid run plan: " + "; ".join(problems)) from err


@dataclass(frozen=True)
class RunOutputs:
    """Everything the aggregate writes, as bytes-ready text, plus the counts it returns."""

    report: dict[str, Any]
    html: str
    results_jsonl: str
    athena_jsonl: str

    @property
    def counts(self) -> dict[str, int]:
        """Expected, found, ok, unparseable, errored, missing and invalid records."""
        counts: dict[str, int] = self.report["counts"]
        return counts

    @property
    def completion_rate(self) -> float:
        """Finished (ok or unparseable) records / expected keys."""
        return float(self.report["completion_rate"])


def model_label(model: ModelRef) -> str:
    """`provider:model_id@revision`, the label `dapt-eval compare` uses."""
    return f"{model.provider}:{model.model_id}@{model.revision}"


def aggregate_run(plan: Plan, fetched: Sequence[Fetched]) -> RunOutputs:
    """Reports per model, the side-by-side comparison, and the flat rows for Athena.

    Raises AggregationError when records do not belong to the plan's benchmark, when one
    model's records mix modes or decoding, or when the models are not comparable (e.g. one
    scored MCQ by `letter`, another by `loglik`): the message names what is mixed.
    """
    records = [f.record for f in fetched if f.record is not None]
    _check_benchmark(plan, records)
    by_model: dict[str, list[ItemResult]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (model_label(r.model), r.prompt_id, r.item_id)):
        by_model[model_label(record.model)].append(record)
    order = _model_order(plan, by_model)
    views = []
    for label in order:
        if by_model.get(label):
            scope = _scope(plan, by_model[label], label)
            try:
                report = aggregate(
                    by_model[label], scope, expected_per_prompt=plan.benchmark.n_items
                )
            except AggregationError as err:
                raise AggregationError(f"model {label}: {err}") from err
            report["run_id"] = plan.run_id
            report["quarantined_rows"] = (plan.model_extra or {}).get("quarantined_rows")
            report["judge_calibration"] = calibration_from_gate(
                (plan.model_extra or {}).get("judge_calibration")
            )
            views.append(RunView(label, report, by_model[label]))
    comparison = side_by_side(views) if views else None
    counts = _counts(plan, fetched)
    completion_rate = (counts["ok"] + counts["unparseable"]) / counts["expected"]
    missing = sorted(f.cache_key for f in fetched if f.missing)
    report = {
        "run_id": plan.run_id,
        "benchmark": {
            "name": plan.benchmark.name,
            "version": plan.benchmark.version,
            "task": plan.benchmark.task.value,
        },
        "completion_rate": completion_rate,
        "counts": counts,
        "baseline": views[0].label if views else None,
        "models": [
            {"label": v.label, "n_records": len(v.results), "report": v.report} for v in views
        ],
        "models_without_records": [label for label in order if not by_model.get(label)],
        "comparison": comparison,
        "missing_cache_keys": missing[:DEFAULT_LISTED_KEYS],
        "missing_cache_keys_truncated": len(missing) > DEFAULT_LISTED_KEYS,
        "invalid_records": [
            {"cache_key": f.cache_key, "problem": f.problem}
            for f in fetched
            if f.problem is not None
        ][:DEFAULT_LISTED_KEYS],
        "notes": RUN_NOTES,
    }
    ordered = [r for v in views for r in v.results]
    return RunOutputs(
        report=report,
        html=_page(plan, comparison, counts, completion_rate),
        results_jsonl="".join(r.to_line() for r in ordered),
        athena_jsonl=athena_jsonl(ordered),
    )


def _check_benchmark(plan: Plan, records: Sequence[ItemResult]) -> None:
    expected = (plan.benchmark.name, plan.benchmark.version, plan.benchmark.task.value)
    foreign = sorted(
        {f"{r.benchmark}@{r.benchmark_version} ({r.task})" for r in records}
        - {f"{expected[0]}@{expected[1]} ({expected[2]})"}
    )
    if foreign:
        raise AggregationError(
            f"run '{plan.run_id}' is for benchmark {expected[0]}@{expected[1]} ({expected[2]}) "
            f"but records are for {foreign}"
        )


def _model_order(plan: Plan, by_model: dict[str, list[ItemResult]]) -> list[str]:
    planned = [model_label(m) for m in plan.models]
    return [*dict.fromkeys(planned), *sorted(set(by_model) - set(planned))]


def _scope(plan: Plan, records: Sequence[ItemResult], label: str) -> ReportScope:
    benchmark = plan.benchmark
    if benchmark.prompt is not None:
        primary = benchmark.prompt.id
    else:
        prompts = sorted({r.prompt_id for r in records})
        if len(prompts) > 1:
            raise AggregationError(
                f"records of {label} span prompts {prompts}: run.json 'benchmark.prompt.id' "
                "must name the primary prompt"
            )
        primary = prompts[0]
    if benchmark.task is Task.CLASSIFICATION and not benchmark.labels:
        raise AggregationError(
            "run.json 'benchmark.labels' is required for task 'classification': macro-F1 "
            "averages over the full label set, including labels never predicted"
        )
    return ReportScope(benchmark.name, benchmark.version, benchmark.task, primary, benchmark.labels)


def _counts(plan: Plan, fetched: Sequence[Fetched]) -> dict[str, int]:
    statuses = [f.record.status for f in fetched if f.record is not None]
    counts = {
        "expected": len(plan.cache_keys),
        "found": len(statuses),
        "ok": statuses.count("ok"),
        "unparseable": statuses.count("unparseable"),
        "errored": statuses.count("errored"),
        "missing": sum(1 for f in fetched if f.missing),
        "invalid": sum(1 for f in fetched if f.problem is not None),
    }
    counts["finished"] = sum(counts[s] for s in FINISHED_STATUSES)
    return counts


def _page(
    plan: Plan,
    comparison: dict[str, Any] | None,
    counts: dict[str, int],
    completion_rate: float,
) -> str:
    completion: dict[str, Any] = {"completion_rate": completion_rate, **counts}
    if comparison is None:  # no record at all: still a page that says so
        comparison = {
            "benchmark": plan.benchmark.name,
            "benchmark_version": plan.benchmark.version,
            "task": plan.benchmark.task.value,
            "mode": "none",
            "primary_metric": "none",
            "baseline": "none",
            "models": [],
            "paired": [],
        }
    return render_html(comparison, completion)


DEFAULT_LISTED_KEYS = 1000
RUN_NOTES = (
    "completion_rate = (ok + unparseable) / expected keys of the plan. missing = expected keys "
    "with no record; invalid = objects that are not valid records; both count against "
    "completion and are listed (up to 1000 each). Per-model reports are those of "
    "`dapt-eval aggregate`; `comparison` is `dapt-eval compare` with the first model as baseline."
)
