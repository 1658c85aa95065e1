"""The experiment pipeline's own steps, which its state machine calls.

The state machine is lib/constructs/experiment-pipeline.ts.

Three actions, one Lambda (`steps_handler`, the eval package's image):

- `check` / `mark`: the pipeline's ledger. Each step of an execution has a marker
  `<prefix><step>.json` in the artifacts zone, written once the step has succeeded. An
  execution first checks the marker and skips a step that has one, so rerunning a failed or
  stopped pipeline (a new execution of the same pipeline id) skips what finished and never
  trains twice for the same config. The pipeline id is a hash of every input the CLI read, so
  a changed config is a new id with its own markers.
- `collect`: assembles the promotion gate's inputs on AWS the way the local pipeline does
  (`dapt_local.report.write_report`): each benchmark's comparison from its evaluation run's
  aggregated report (the base model first, so it is the baseline of every paired test), the
  held-out losses the trainer wrote before and after training, the judge's calibration, the
  policy; validated as `GateInputs` and written to `gate_inputs.json`, which the registrar
  then decides on with the same gate function.

Errors name what is missing or wrong; Step Functions reports them as the step's cause.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from dapt_eval.fanout import RUN_ID_PATTERN
from dapt_eval.gate import GatePolicy
from dapt_eval.layout import RUNS_PREFIX
from dapt_eval.registry import GateInputs

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

EVALUATION_FILE = "evaluation.json"
"""Beside `gate_inputs.json`: every benchmark's comparison and report, for the registry."""
S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+"
STEP_NAME = r"^[a-z][a-z0-9-]{0,62}$"


class PipelineStepError(Exception):
    """A step's inputs are missing or inconsistent; the message says which and where."""


class CheckEvent(BaseModel):
    """Has step `step` of this pipeline id finished before?"""

    model_config = ConfigDict(extra="forbid")

    action: Literal["check"]
    ledger_uri: str = Field(pattern=S3_URI, description="Prefix of this pipeline id's markers.")
    step: str = Field(pattern=STEP_NAME)


class MarkEvent(BaseModel):
    """Step `step` has finished: record it (and what it produced) so a rerun skips it."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["mark"]
    ledger_uri: str = Field(pattern=S3_URI)
    step: str = Field(pattern=STEP_NAME)
    execution: str = Field(min_length=1, description="The execution that ran the step.")
    result: dict[str, Any] = Field(default_factory=dict, description="What later steps need.")


class EvaluationRun(BaseModel):
    """One benchmark's evaluation run (base, candidate and external baseline in one run)."""

    model_config = ConfigDict(extra="forbid")

    benchmark: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    run_id: str = Field(pattern=RUN_ID_PATTERN)


class CollectEvent(BaseModel):
    """Where the evidence of one trained model is, and where its gate inputs go."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["collect"]
    eval_bucket: str = Field(min_length=3)
    runs: list[EvaluationRun] = Field(min_length=1)
    base_label: str = Field(min_length=1, description="The base model's label in the runs.")
    candidate_label: str = Field(min_length=1, description="The adapted model's label.")
    policy: GatePolicy
    heldout_before_uri: str | None = Field(default=None, pattern=S3_URI)
    heldout_after_uri: str | None = Field(default=None, pattern=S3_URI)
    public_sources: list[str] = Field(default_factory=list)
    judge_calibration_uri: str | None = Field(default=None, pattern=S3_URI)
    output_uri: str = Field(pattern=S3_URI + r"gate_inputs\.json$")


Event = Annotated[CheckEvent | MarkEvent | CollectEvent, Field(discriminator="action")]
EVENT: TypeAdapter[CheckEvent | MarkEvent | CollectEvent] = TypeAdapter(Event)


def steps_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: `check`, `mark` or `collect` (see the module docstring)."""
    del context
    return handle(boto3.client("s3"), EVENT.validate_python(event))


def handle(s3: Any, event: CheckEvent | MarkEvent | CollectEvent) -> dict[str, Any]:
    """Runs one action with the given S3 client."""
    if isinstance(event, CheckEvent):
        return check(s3, event)
    if isinstance(event, MarkEvent):
        return mark(s3, event)
    return collect(s3, event)


def check(s3: Any, event: CheckEvent) -> dict[str, Any]:
    """`{"done": true, "marker": {...}}` when the step has a marker, else `{"done": false}`."""
    text = _read_optional(s3, _marker_uri(event.ledger_uri, event.step))
    if text is None:
        return {"done": False, "step": event.step}
    marker = json.loads(text)
    log.info("step %s finished before (execution %s): skipped", event.step, marker["execution"])
    return {"done": True, "step": event.step, "marker": marker}


def mark(s3: Any, event: MarkEvent) -> dict[str, Any]:
    """Writes the step's marker; a marker already there is kept (the first finish counts)."""
    uri = _marker_uri(event.ledger_uri, event.step)
    existing = _read_optional(s3, uri)
    if existing is not None:
        return {"written": False, "marker": json.loads(existing)}
    marker = {
        "step": event.step,
        "execution": event.execution,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": event.result,
    }
    _write(s3, uri, json.dumps(marker, indent=2, sort_keys=True))
    return {"written": True, "marker": marker}


def collect(s3: Any, event: CollectEvent) -> dict[str, Any]:
    """Builds, validates and writes `gate_inputs.json`; returns its URI and what it holds."""
    comparisons = {
        run.benchmark: _comparison(s3, event, run) for run in sorted(event.runs, key=_benchmark)
    }
    before = _losses(s3, event.heldout_before_uri, "held-out losses before training")
    after = _losses(s3, event.heldout_after_uri, "held-out losses after training")
    calibration = (
        json.loads(_read_required(s3, event.judge_calibration_uri, "the judge's calibration"))
        if event.judge_calibration_uri
        else None
    )
    inputs = GateInputs(
        comparisons=comparisons,
        candidate=event.candidate_label,
        policy=event.policy,
        heldout_before=before,
        heldout_after=after,
        public_sources=event.public_sources,
        judge_calibration=calibration,
    )
    _write(s3, event.output_uri, inputs.model_dump_json(indent=2) + "\n")
    # The evidence as the registry shows it (the package's model-quality statistics).
    evaluation_uri = event.output_uri.rsplit("/", 1)[0] + "/" + EVALUATION_FILE
    summary = {
        "benchmarks": {
            run.benchmark: {
                "run_id": run.run_id,
                "report_uri": f"s3://{event.eval_bucket}/{RUNS_PREFIX}{run.run_id}/report.json",
                "comparison": comparisons[run.benchmark],
            }
            for run in event.runs
        },
        "heldout_before": before,
        "heldout_after": after,
        "candidate": event.candidate_label,
        "baseline": event.base_label,
    }
    _write(s3, evaluation_uri, json.dumps(summary, indent=2, sort_keys=True))
    decision = inputs.decide()
    return {
        "gate_inputs_uri": event.output_uri,
        "evaluation_uri": evaluation_uri,
        "benchmarks": sorted(comparisons),
        # For the notification and `pipeline status`; the registrar decides again on the file.
        "passed": decision.passed,
        "reasons": decision.reasons,
    }


def _benchmark(run: EvaluationRun) -> str:
    return run.benchmark


def _comparison(s3: Any, event: CollectEvent, run: EvaluationRun) -> dict[str, Any]:
    where = f"s3://{event.eval_bucket}/{RUNS_PREFIX}{run.run_id}/report.json"
    report = json.loads(_read_required(s3, where, f"the {run.benchmark} evaluation's report"))
    comparison = report.get("comparison")
    if not comparison:
        raise PipelineStepError(
            f"{where} has no comparison: evaluation run {run.run_id} ({run.benchmark}) "
            "produced no records; see its report's counts and invalid_records"
        )
    labels = [m["label"] for m in comparison.get("models", [])]
    problems = []
    if comparison.get("baseline") != event.base_label:
        problems.append(
            f"its baseline is {comparison.get('baseline')!r}, not the base model "
            f"{event.base_label!r} (the base model must be the first model of the run spec)"
        )
    if event.candidate_label not in labels:
        problems.append(f"it has no records of the candidate {event.candidate_label!r}")
    if problems:
        raise PipelineStepError(
            f"evaluation run {run.run_id} ({run.benchmark}) cannot gate: {'; '.join(problems)} "
            f"(models with records: {', '.join(labels) or 'none'})"
        )
    completion = report.get("completion_rate", 1.0)
    if completion < 1.0:
        log.warning("%s: completion rate %.3f (the gate sees only ok units)", where, completion)
    return dict(comparison)


def _losses(s3: Any, uri: str | None, what: str) -> dict[str, float]:
    if uri is None:
        return {}
    raw = json.loads(_read_required(s3, uri, what))
    if not isinstance(raw, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in raw.values()
    ):
        raise PipelineStepError(f"{uri} ({what}) must map each source to its mean token loss")
    return {str(k): float(v) for k, v in raw.items()}


def _marker_uri(ledger_uri: str, step: str) -> str:
    return ledger_uri.rstrip("/") + f"/{step}.json"


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _read_optional(s3: Any, uri: str) -> str | None:
    bucket, key = _split(uri)
    try:
        return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8"))
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def _read_required(s3: Any, uri: str, what: str) -> str:
    text = _read_optional(s3, uri)
    if text is None:
        raise PipelineStepError(f"{uri} ({what}) does not exist")
    return text


def _write(s3: Any, uri: str, text: str) -> None:
    bucket, key = _split(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType="application/json")
