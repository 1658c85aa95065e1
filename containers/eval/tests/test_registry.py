"""The registry step on moto: the gate decides the approval, the evidence rides along, retries do
not register twice, and deciding again on a report's gate inputs gives the report's decision."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from dapt_eval.gate import GatePolicy, TaskRule, decide
from dapt_eval.registry import DECISION_FILE, GateInputs, Registration, register

BUCKET = "artifacts"
GROUP = "dapt-prod-support"
POLICY = GatePolicy(tasks={"mcq": TaskRule(margin=0.0)}, heldout_max_increase=0.05)


def _comparison(mean: float, low: float) -> dict[str, Any]:
    diff = {"mean_difference": mean, "ci": {"low": low, "high": mean + (mean - low)}}
    return {
        "baseline": "base",
        "mode": "cloze",
        "paired": [
            {"b": "tuned", "difference_b_minus_a": diff, "strict": {"difference_b_minus_a": diff}}
        ],
    }


def _inputs(low: float) -> GateInputs:
    return GateInputs(
        comparisons={"mcq": _comparison(0.08, low)},
        candidate="tuned",
        policy=POLICY,
        heldout_before={"public": 2.8},
        heldout_after={"public": 2.7},
        public_sources=["public"],
    )


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        yield sagemaker, s3


def _registration(s3: Any, inputs: GateInputs, run: str) -> Registration:
    prefix = f"runs/{run}/gate"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/gate_inputs.json", Body=inputs.model_dump_json())
    s3.put_object(Bucket=BUCKET, Key=f"runs/{run}/lineage.json", Body=json.dumps({"run": run}))
    s3.put_object(Bucket=BUCKET, Key=f"runs/{run}/report.json", Body="{}")
    return Registration(
        group=GROUP,
        gate_inputs_uri=f"s3://{BUCKET}/{prefix}/gate_inputs.json",
        report_uri=f"s3://{BUCKET}/runs/{run}/report.json",
        lineage_uri=f"s3://{BUCKET}/runs/{run}/lineage.json",
        model_data_url="s3://models/base/llama/",
        adapter_url=f"s3://models/runs/{run}/adapter.tar.gz",
        image="763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.31.0-lmi13.0.0-cu124",
    )


def test_a_passing_gate_registers_an_approved_package_with_its_evidence(
    aws: tuple[Any, Any],
) -> None:
    sagemaker, s3 = aws
    result = register(sagemaker, s3, _registration(s3, _inputs(low=0.02), "good"))
    package = sagemaker.describe_model_package(ModelPackageName=result["model_package_arn"])
    assert result["approval_status"] == package["ModelApprovalStatus"] == "Approved"
    metadata = package["CustomerMetadataProperties"]
    assert metadata["gate"] == "PASS" and metadata["lineage"].endswith("runs/good/lineage.json")
    assert len(metadata["lineage-sha256"]) == 64
    quality = package["ModelMetrics"]["ModelQuality"]
    assert quality["Statistics"]["S3Uri"].endswith("runs/good/report.json")
    written = s3.get_object(Bucket=BUCKET, Key=f"runs/good/gate/{DECISION_FILE}")["Body"].read()
    assert json.loads(written)["passed"] is True


def test_a_failed_gate_registers_a_rejected_package_and_says_why(aws: tuple[Any, Any]) -> None:
    sagemaker, s3 = aws
    result = register(sagemaker, s3, _registration(s3, _inputs(low=-0.01), "weak"))
    package = sagemaker.describe_model_package(ModelPackageName=result["model_package_arn"])
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["CustomerMetadataProperties"]["gate"] == "FAIL"
    assert any("mcq" in reason for reason in result["decision"]["reasons"])


def test_the_caller_cannot_ask_for_approval() -> None:
    fields = Registration.model_fields
    assert not any("approv" in name for name in fields), "the approval comes from the gate only"
    with pytest.raises(ValidationError, match="approval_status"):
        Registration.model_validate(
            {
                "group": GROUP,
                "gate_inputs_uri": "s3://b/i.json",
                "report_uri": "s3://b/r.json",
                "lineage_uri": "s3://b/l.json",
                "model_data_url": "s3://b/m/",
                "image": "img",
                "approval_status": "Approved",
            }
        )


def test_a_retried_registration_finds_its_package_instead_of_adding_one(
    aws: tuple[Any, Any],
) -> None:
    sagemaker, s3 = aws
    registration = _registration(s3, _inputs(low=0.02), "good")
    first = register(sagemaker, s3, registration)
    second = register(sagemaker, s3, registration)
    assert first["model_package_arn"] == second["model_package_arn"]
    packages = sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    assert len(packages) == 1


def test_deciding_again_on_the_written_inputs_gives_the_same_decision() -> None:
    inputs = _inputs(low=0.02)
    direct = decide(
        inputs.comparisons,
        inputs.candidate,
        POLICY,
        inputs.heldout_before,
        inputs.heldout_after,
        inputs.public_sources,
    )
    again = GateInputs.model_validate_json(inputs.model_dump_json()).decide()
    assert again == direct
