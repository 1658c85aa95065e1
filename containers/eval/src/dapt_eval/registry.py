"""The registry step of the AWS path: the local pipeline's gate, then a model package.

`register` reads the gate's inputs (`gate_inputs.json`: the compare reports, held-out losses and
judge calibration the local pipeline wrote beside its report, or the AWS evaluation wrote for a
run), decides with `dapt_eval.gate.decide` (the one function the local pipeline calls), and
registers the model as a package of the domain's model package group:

- approval status **Approved** only when the gate passed, **Rejected** otherwise; nothing here
  takes an approval from the caller, so a failed gate can never be approved by the tooling (and
  the group's resource policy denies approving to every other principal);
- the evaluation report as the package's model-quality statistics, the decision as its
  constraints (`decision.json`, written beside the inputs), and the lineage's URI and SHA-256 as
  customer metadata;
- idempotent: a retried registration of the same inputs, lineage and model finds the package it
  registered before (by its registration id) instead of adding a second one.

Lambda: `register_handler` (event = `Registration`). CLI and tests call `register` with clients.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any
from urllib.parse import urlparse

import boto3
from pydantic import BaseModel, ConfigDict, Field

from dapt_eval.gate import GateDecision, GatePolicy, decide

log = logging.getLogger(__name__)

GATE_INPUTS_FILE = "gate_inputs.json"
"""Name of the gate's inputs beside a report (local `out/adapt/report/`, or a run's prefix)."""
DECISION_FILE = "decision.json"
"""Name of the decision the registry writes beside the inputs."""


class GateInputs(BaseModel):
    """Everything `decide` reads, as one JSON document: deciding on it again decides the same."""

    model_config = ConfigDict(extra="forbid")

    comparisons: dict[str, dict[str, Any]] = Field(
        description="Benchmark name to its `dapt-eval compare` report (baseline: the base model)."
    )
    candidate: str | dict[str, str] = Field(
        description="Label of the candidate's runs, or one label per benchmark."
    )
    policy: GatePolicy = Field(description="Margins and tolerances the decision applies.")
    heldout_before: dict[str, float] = Field(
        default_factory=dict, description="Held-out loss per source with the starting weights."
    )
    heldout_after: dict[str, float] = Field(
        default_factory=dict, description="Held-out loss per source with the trained weights."
    )
    public_sources: list[str] = Field(
        default_factory=list, description="Sources whose held-out loss measures general ability."
    )
    judge_calibration: dict[str, Any] | None = Field(
        default=None, description="The judge's calibration report, when a judge scored anything."
    )

    def decide(self) -> GateDecision:
        """The gate's decision on these inputs."""
        return decide(
            self.comparisons,
            self.candidate,
            self.policy,
            self.heldout_before,
            self.heldout_after,
            self.public_sources,
            self.judge_calibration,
        )


class Registration(BaseModel):
    """What to register: the model, and where its evidence is."""

    model_config = ConfigDict(extra="forbid")

    group: str = Field(
        pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$",
        description="The domain's model package group.",
    )
    gate_inputs_uri: str = Field(pattern=r"^s3://", description="`gate_inputs.json` in S3.")
    report_uri: str = Field(pattern=r"^s3://", description="The evaluation report (JSON) in S3.")
    lineage_uri: str = Field(
        pattern=r"^s3://", description="The trained model's `lineage.json` in S3."
    )
    model_data_url: str = Field(
        pattern=r"^s3://",
        description="The base model's (or merged weights') S3 prefix the package serves.",
    )
    adapter_url: str | None = Field(
        default=None,
        pattern=r"^s3://.+\.tar\.gz$",
        description="The LoRA adapter's archive, when the package is an adapter on the base.",
    )
    image: str = Field(min_length=1, description="The serving image the package runs in.")
    description: str = Field(default="", max_length=1000, description="Shown in the registry.")


def register(sagemaker: Any, s3: Any, registration: Registration) -> dict[str, Any]:
    """Decide and register; returns the package ARN, its approval status and the decision."""
    inputs_text = _read(s3, registration.gate_inputs_uri)
    lineage = _read(s3, registration.lineage_uri)
    decision = GateInputs.model_validate_json(inputs_text).decide()
    registration_id = _registration_id(registration, inputs_text, lineage)
    decision_uri = registration.gate_inputs_uri.rsplit("/", 1)[0] + "/" + DECISION_FILE
    existing = _find(sagemaker, registration.group, registration_id)
    if existing is None:
        _write(s3, decision_uri, decision.model_dump_json(indent=2))
        existing = sagemaker.create_model_package(
            ModelPackageGroupName=registration.group,
            ModelPackageDescription=registration.description,
            ModelApprovalStatus="Approved" if decision.passed else "Rejected",
            InferenceSpecification=_inference_specification(registration),
            ModelMetrics={
                "ModelQuality": {
                    "Statistics": {
                        "ContentType": "application/json",
                        "S3Uri": registration.report_uri,
                    },
                    "Constraints": {"ContentType": "application/json", "S3Uri": decision_uri},
                }
            },
            CustomerMetadataProperties={
                "registration-id": registration_id,
                "gate": "PASS" if decision.passed else "FAIL",
                "gate-failed-checks": str(len(decision.reasons)),
                "gate-inputs": registration.gate_inputs_uri,
                "lineage": registration.lineage_uri,
                "lineage-sha256": hashlib.sha256(lineage.encode()).hexdigest(),
            },
        )["ModelPackageArn"]
        log.info("registered %s (%s)", existing, "PASS" if decision.passed else "FAIL")
    return {
        "model_package_arn": existing,
        "approval_status": "Approved" if decision.passed else "Rejected",
        "decision": decision.model_dump(mode="json"),
    }


def register_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: the event is a `Registration`."""
    del context
    return register(
        boto3.client("sagemaker"), boto3.client("s3"), Registration.model_validate(event)
    )


def _inference_specification(registration: Registration) -> dict[str, Any]:
    container: dict[str, Any] = {
        "Image": registration.image,
        "ModelDataUrl": registration.model_data_url,
    }
    if registration.adapter_url:
        container["AdditionalS3DataSource"] = {
            "S3DataType": "S3Object",
            "S3Uri": registration.adapter_url,
            "CompressionType": "Gzip",
        }
    return {
        "Containers": [container],
        "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
    }


def _registration_id(registration: Registration, inputs_text: str, lineage: str) -> str:
    """Same evidence and model, same id: a retry finds its package instead of adding one."""
    payload = json.dumps(
        [
            inputs_text,
            lineage,
            registration.model_data_url,
            registration.adapter_url,
            registration.image,
        ]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _find(sagemaker: Any, group: str, registration_id: str) -> str | None:
    paginator_args: dict[str, Any] = {"ModelPackageGroupName": group, "MaxResults": 100}
    while True:
        page = sagemaker.list_model_packages(**paginator_args)
        for summary in page.get("ModelPackageSummaryList", []):
            described = sagemaker.describe_model_package(
                ModelPackageName=summary["ModelPackageArn"]
            )
            if (
                described.get("CustomerMetadataProperties", {}).get("registration-id")
                == registration_id
            ):
                return str(summary["ModelPackageArn"])
        if not page.get("NextToken"):
            return None
        paginator_args["NextToken"] = page["NextToken"]


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _read(s3: Any, uri: str) -> str:
    bucket, key = _split(uri)
    return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8"))


def _write(s3: Any, uri: str, text: str) -> None:
    bucket, key = _split(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType="application/json")
