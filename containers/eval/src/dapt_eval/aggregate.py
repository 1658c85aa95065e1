"""Turn per-item results of one run into a JSON report.

A report covers exactly one (benchmark version, model, decoding, mode): mixing them would
average incomparable numbers, so `aggregate` refuses and names what is mixed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dapt_eval.benchmark import Manifest
from dapt_eval.metrics import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Outcome,
    accuracy_report,
    classification_report,
    mean_with_ci,
    wilson,
)
from dapt_eval.results import ItemResult
from dapt_eval.schemas import Task

PRIMARY_METRIC: dict[Task, str] = {
    Task.QA: "judge_pass_rate",
    Task.MCQ: "accuracy",
    Task.CLASSIFICATION: "macro_f1",
    Task.SUMMARIZATION: "rouge_l",
}
OVERLAP_METRIC = "reference_overlap_rouge_l"
"""qa scored without a judge (mode `overlap`): ROUGE-L F1 against the reference answer."""


def primary_metric(task: Task, mode: str | None) -> str:
    """The headline metric's name; qa without a judge says it is a lexical overlap."""
    return OVERLAP_METRIC if task is Task.QA and mode == "overlap" else PRIMARY_METRIC[task]


def scored_by_rouge(task: Task, mode: str | None) -> bool:
    """Tasks whose items carry a ROUGE-L score rather than right/wrong."""
    return task is Task.SUMMARIZATION or (task is Task.QA and mode == "overlap")


class AggregationError(ValueError):
    """Results cannot be aggregated together; the message names the mixed field and values."""


@dataclass(frozen=True)
class ReportScope:
    """What a report needs to know about the benchmark (a manifest, or the fan-out's plan)."""

    name: str
    version: str
    task: Task
    primary_prompt: str
    labels: list[str] | None = None

    mode: str | None = None

    @classmethod
    def of(cls, source: Manifest | ReportScope, mode: str | None = None) -> ReportScope:
        """The scope of a manifest for a run in `mode` (a scope is returned unchanged)."""
        if isinstance(source, ReportScope):
            return source if source.mode is not None or mode is None else _with_mode(source, mode)
        return cls(
            source.name,
            source.version,
            source.task,
            source.primary_prompt_id(mode),
            source.labels,
            mode,
        )


def _with_mode(scope: ReportScope, mode: str) -> ReportScope:
    return ReportScope(
        scope.name, scope.version, scope.task, scope.primary_prompt, scope.labels, mode
    )


def check_homogeneous(results: Sequence[ItemResult]) -> None:
    """Refuse mixed benchmarks, models, decoding or modes (all problems reported together)."""
    fields: dict[str, Callable[[ItemResult], str]] = {
        "benchmark": lambda r: f"{r.benchmark}@{r.benchmark_version}",
        "model": lambda r: f"{r.model.provider}:{r.model.model_id}@{r.model.revision}",
        "mode": lambda r: r.mode,
        "decoding": lambda r: str(sorted(r.decoding.items())),
        "task": lambda r: r.task,
    }
    problems = []
    for name, get in fields.items():
        values = sorted({get(r) for r in results})
        if len(values) > 1:
            problems.append(f"'{name}' takes {len(values)} values {values}")
    if problems:
        raise AggregationError("cannot aggregate mixed results: " + "; ".join(problems))


def aggregate(
    results: Sequence[ItemResult],
    benchmark: Manifest | ReportScope,
    expected_per_prompt: int | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Report per prompt, the primary prompt's metrics, and the format-spread range."""
    if not results:
        raise AggregationError(
            f"no results to aggregate for benchmark '{ReportScope.of(benchmark).name}'"
        )
    check_homogeneous(results)
    scope = ReportScope.of(benchmark, results[0].mode)
    by_prompt: dict[str, list[ItemResult]] = defaultdict(list)
    for result in results:
        by_prompt[result.prompt_id].append(result)
    per_prompt = {
        prompt_id: prompt_report(group, scope, expected_per_prompt, n_resamples, seed)
        for prompt_id, group in sorted(by_prompt.items())
    }
    primary_id = scope.primary_prompt
    if primary_id not in per_prompt:
        raise AggregationError(
            f"no results for the primary prompt '{primary_id}' of '{scope.name}'"
        )
    first = results[0]
    metric = primary_metric(scope.task, scope.mode)
    return {
        "benchmark": scope.name,
        "benchmark_version": scope.version,
        "task": scope.task.value,
        "model": first.model.model_dump(),
        "decoding": first.decoding,
        "judge": _judge_identity(results),
        "mode": first.mode,
        "primary_prompt": primary_id,
        "primary_metric": metric,
        "primary": per_prompt[primary_id],
        "format_spread": spread(per_prompt, metric),
        "per_prompt": per_prompt,
        "notes": REPORT_NOTES,
    }


def _judge_identity(results: Sequence[ItemResult]) -> dict[str, str] | None:
    """`{model, prompt_version}` of the judge that graded the records (None without one)."""
    judged = sorted(
        {(r.judge.model, r.judge.prompt_version) for r in results if r.judge is not None}
    )
    if len(judged) > 1:
        raise AggregationError(f"cannot aggregate mixed results: 'judge' takes {judged}")
    return {"model": judged[0][0], "prompt_version": judged[0][1]} if judged else None


def prompt_report(
    results: Sequence[ItemResult],
    scope: ReportScope,
    expected: int | None,
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Metrics of one prompt: counts and completion, then the task's metrics."""
    finished = sum(1 for r in results if r.status in ("ok", "unparseable"))
    total = expected if expected is not None else len(results)
    if len(results) > total:
        raise AggregationError(
            f"prompt '{results[0].prompt_id}' of '{scope.name}' has {len(results)} records but "
            f"{total} items expected: records of items no longer in the benchmark (or of another "
            "run) are mixed in; aggregate only the run's cache keys"
        )
    missing = total - len(results)
    report: dict[str, Any] = {
        "n_results": len(results),
        "n_expected": total,
        "n_missing": missing,
        "completion_rate": finished / total if total else None,
        **accuracy_report([Outcome(r.status, r.correct) for r in results], n_missing=missing),
    }
    if scope.task is Task.CLASSIFICATION:
        scored = [r for r in results if r.status == "ok"]
        report["classification"] = classification_report(
            [str(r.details["gold_label"]) for r in scored],
            [str(r.details["parsed_label"]) for r in scored],
            scope.labels or [],
            n_resamples,
            seed,
        )
    if scope.task is Task.QA and scope.mode == "judge":
        report["judge_pass_rate"] = judge_pass_rate(results)
    if scored_by_rouge(scope.task, scope.mode):
        scores = [r.score for r in results if r.status == "ok" and r.score is not None]
        # Strict: errored, unparseable and missing items score 0, over the items expected.
        strict = [r.score if r.status == "ok" and r.score is not None else 0.0 for r in results]
        strict += [0.0] * missing
        report["rouge_l"] = mean_with_ci(scores, n_resamples, seed)
        report["rouge_l_strict"] = mean_with_ci(strict, n_resamples, seed)
    report["primary_value"] = primary_value(report, scope.task, scope.mode)
    return report


def judge_pass_rate(results: Sequence[ItemResult]) -> dict[str, Any]:
    """Share of judged answers the judge passed; an unparseable verdict is a failure.

    Why not excluded like an unparseable MCQ letter: here the reply that failed to parse is the
    judge's, and the candidate can cause it ("reply PASS"). Excluding it let an answer that
    derails the judge leave the denominator (pass rate 0.125 -> 1.0 with an echoing judge).
    Errored items (the provider failed) are left out, as everywhere."""
    judged = [r for r in results if r.status in ("ok", "unparseable")]
    passed = sum(1 for r in judged if r.status == "ok" and r.correct)
    unparseable = sum(1 for r in judged if r.status == "unparseable")
    return {
        **wilson(passed, len(judged)).to_json(),
        "n_judged": len(judged),
        "n_passed": passed,
        "n_unparseable_verdicts": unparseable,
    }


def primary_value(
    report: dict[str, Any], task: Task, mode: str | None = None
) -> dict[str, float | None]:
    """The headline number with its CI bounds, in one shape for every task (used by charts)."""
    if "judge_pass_rate" in report:
        block = report["judge_pass_rate"]
        return {"value": block["rate"], "low": block["ci"]["low"], "high": block["ci"]["high"]}
    if task is Task.CLASSIFICATION:
        block = report["classification"]
        return {
            "value": block["macro_f1"],
            "low": block["macro_f1_ci"]["low"],
            "high": block["macro_f1_ci"]["high"],
        }
    if scored_by_rouge(task, mode):
        block = report["rouge_l"]
        return {"value": block["mean"], "low": block["ci"]["low"], "high": block["ci"]["high"]}
    block = report["accuracy"]
    return {"value": block["rate"], "low": block["ci"]["low"], "high": block["ci"]["high"]}


def spread(per_prompt: dict[str, dict[str, Any]], metric: str) -> dict[str, Any]:
    """Min-max of the primary metric over prompt variants: sensitivity to wording."""
    values = {pid: r["primary_value"]["value"] for pid, r in per_prompt.items()}
    defined = [v for v in values.values() if v is not None]
    return {
        "metric": metric,
        "n_prompts": len(values),
        "min": min(defined) if defined else None,
        "max": max(defined) if defined else None,
        "per_prompt": values,
    }


REPORT_NOTES = (
    "accuracy excludes errored and unparseable items from its denominator; strict_accuracy "
    "counts them, and expected items without a record, as failures. For qa, the headline is "
    "judge_pass_rate: an unparseable verdict counts as a failure (n_unparseable_verdicts "
    "beside it). Intervals: Wilson for proportions, seeded percentile bootstrap for macro-F1 "
    "and ROUGE-L."
)
