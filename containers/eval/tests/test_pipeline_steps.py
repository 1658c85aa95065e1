"""The experiment pipeline's steps on moto: the ledger makes a rerun skip finished steps, and the
gate inputs assembled on AWS decide as the local pipeline's would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from dapt_eval.gate import GatePolicy, TaskRule
from dapt_eval.pipeline_steps import EVENT, PipelineStepError, handle, steps_handler
from dapt_eval.registry import GateInputs

ARTIFACTS = "artifacts"
EVAL = "eval"
LEDGER = f"s3://{ARTIFACTS}/runs/support/pipeline/0123abcd/"
BASE = "sagemaker:dapt-exp-a-base@sha256:b"
TUNED = "sagemaker:dapt-exp-a-cand-0123abcd@sha256:t"
FINAL = "runs/support/sft/final"
BEDROCK = "bedrock:meta.llama3-1-8b-instruct-v1:0@unpinned"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=ARTIFACTS)
        client.create_bucket(Bucket=EVAL)
        yield client


def _run(event: dict[str, Any], s3: Any) -> dict[str, Any]:
    return handle(s3, EVENT.validate_python(event))


def test_a_step_is_done_only_after_it_is_marked_and_the_first_mark_counts(s3: Any) -> None:
    check = {"action": "check", "ledger_uri": LEDGER, "step": "train"}
    assert _run(check, s3) == {"done": False, "step": "train"}
    first = {"action": "mark", "ledger_uri": LEDGER, "step": "train", "execution": "exec-1"}
    assert _run({**first, "result": {"job_id": "j-1"}}, s3)["written"] is True
    # A retried mark (Step Functions retries a Lambda task) keeps the first record.
    again = _run({**first, "execution": "exec-2", "result": {"job_id": "j-2"}}, s3)
    assert again["written"] is False
    done = _run(check, s3)
    assert done["done"] is True
    assert done["marker"]["execution"] == "exec-1"
    assert done["marker"]["result"] == {"job_id": "j-1"}
    # Another pipeline id (a changed config) has its own ledger.
    other = {**check, "ledger_uri": LEDGER.replace("0123abcd", "ffff0000")}
    assert _run(other, s3)["done"] is False


def test_a_bad_event_names_the_field() -> None:
    with pytest.raises(ValidationError, match="step"):
        steps_handler({"action": "check", "ledger_uri": LEDGER, "step": "Train!"}, None)
    with pytest.raises(ValidationError, match="action"):
        steps_handler({"action": "launch", "ledger_uri": LEDGER}, None)


def _report(mcq_gain: float, models: list[str]) -> dict[str, Any]:
    diff = {"mean_difference": mcq_gain, "ci": {"low": mcq_gain / 2, "high": mcq_gain * 1.5}}
    return {
        "completion_rate": 1.0,
        "comparison": {
            "baseline": models[0],
            "mode": "cloze",
            "models": [{"label": m} for m in models],
            "paired": [
                {"b": m, "difference_b_minus_a": diff, "strict": {"difference_b_minus_a": diff}}
                for m in models[1:]
            ],
        },
    }


def _put(s3: Any, bucket: str, key: str, body: Any) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body))
    return f"s3://{bucket}/{key}"


def _collect(s3: Any, **changes: Any) -> dict[str, Any]:
    event = {
        "action": "collect",
        "eval_bucket": EVAL,
        "runs": [{"benchmark": "mcq", "run_id": "support-mcq-0123abcd"}],
        "base_label": BASE,
        "candidate_label": TUNED,
        "policy": GatePolicy(tasks={"mcq": TaskRule(margin=0.0)}).model_dump(mode="json"),
        "heldout_before_uri": _put(s3, ARTIFACTS, f"{FINAL}/heldout_before.json", {"public": 2.8}),
        "heldout_after_uri": _put(s3, ARTIFACTS, f"{FINAL}/heldout.json", {"public": 2.75}),
        "public_sources": ["public"],
        "output_uri": f"s3://{ARTIFACTS}/runs/support/gate/gate_inputs.json",
        **changes,
    }
    return _run(event, s3)


def test_collected_gate_inputs_decide_like_the_registrar_will(s3: Any) -> None:
    _put(s3, EVAL, "runs/support-mcq-0123abcd/report.json", _report(0.1, [BASE, TUNED, BEDROCK]))
    result = _collect(s3)
    assert result["benchmarks"] == ["mcq"]
    assert result["passed"] is True
    text = s3.get_object(Bucket=ARTIFACTS, Key="runs/support/gate/gate_inputs.json")["Body"].read()
    inputs = GateInputs.model_validate_json(text)
    assert inputs.candidate == TUNED
    assert inputs.heldout_before == {"public": 2.8}
    assert inputs.heldout_after == {"public": 2.75}
    assert inputs.decide().passed is True
    summary = json.loads(
        s3.get_object(Bucket=ARTIFACTS, Key="runs/support/gate/evaluation.json")["Body"].read()
    )
    assert summary["benchmarks"]["mcq"]["report_uri"].endswith("support-mcq-0123abcd/report.json")
    # A candidate that loses on the required benchmark fails the gate the same way.
    _put(s3, EVAL, "runs/support-mcq-0123abcd/report.json", _report(-0.1, [BASE, TUNED, BEDROCK]))
    assert _collect(s3)["passed"] is False


def test_a_run_whose_baseline_is_not_the_base_model_cannot_gate(s3: Any) -> None:
    _put(s3, EVAL, "runs/support-mcq-0123abcd/report.json", _report(0.1, [BEDROCK, BASE, TUNED]))
    with pytest.raises(PipelineStepError, match=r"baseline is .*bedrock.*first model"):
        _collect(s3)


def test_missing_evidence_is_named(s3: Any) -> None:
    missing = r"report.json \(the mcq evaluation's report\) does not exist"
    with pytest.raises(PipelineStepError, match=missing):
        _collect(s3)
    _put(s3, EVAL, "runs/support-mcq-0123abcd/report.json", {"comparison": None, "counts": {}})
    with pytest.raises(PipelineStepError, match="has no comparison"):
        _collect(s3)
    _put(s3, EVAL, "runs/support-mcq-0123abcd/report.json", _report(0.1, [BASE, BEDROCK]))
    with pytest.raises(PipelineStepError, match="no records of the candidate"):
        _collect(s3)
    _put(s3, EVAL, "runs/support-mcq-0123abcd/report.json", _report(0.1, [BASE, TUNED]))
    bad = _put(s3, ARTIFACTS, "runs/other/heldout.json", {"public": "low"})
    with pytest.raises(PipelineStepError, match="must map each source to its mean token loss"):
        _collect(s3, heldout_after_uri=bad)
