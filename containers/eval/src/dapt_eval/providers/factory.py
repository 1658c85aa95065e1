"""Build a provider from a validated spec (the CLI and the container entry point share this)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dapt_eval.config_errors import Problems
from dapt_eval.providers.aws import BedrockConverseProvider, SageMakerEndpointProvider
from dapt_eval.providers.base import DEFAULT_REVISION, Provider
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.providers.openai_compat import OpenAICompatibleProvider

ProviderKind = Literal["offline", "openai", "bedrock", "sagemaker"]


class ProviderSpec(BaseModel):
    """Which provider to talk to and how; `model_validator` lists every missing setting."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    kind: ProviderKind = Field(
        description="Which provider implementation answers: the offline simulator, an "
        "OpenAI-compatible server, Amazon Bedrock (Converse) or a SageMaker endpoint."
    )
    model_id: str = Field(
        min_length=1,
        description="Model identifier recorded in results and cache keys, and the model that "
        "Bedrock or the OpenAI-compatible server is asked for.",
    )
    revision: str = Field(
        default=DEFAULT_REVISION,
        description="Model revision recorded in results and cache keys (nothing checks it "
        "against the served model); pin it so a changed model is not mistaken for a cached one.",
    )
    base_url: str | None = Field(
        default=None,
        description="Root URL of the OpenAI-compatible server (requests go to {base_url}/v1/...); "
        "required for kind 'openai'.",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the OpenAI-compatible server's "
        "API key (sent as a bearer token); None sends no key.",
    )
    region: str | None = Field(
        default=None,
        description="AWS region of the Bedrock or SageMaker client; None uses the default "
        "region of the AWS configuration.",
    )
    endpoint_name: str | None = Field(
        default=None,
        description="Name of the SageMaker real-time endpoint to invoke; required for kind "
        "'sagemaker'.",
    )
    inference_component_name: str | None = Field(
        default=None,
        description="Inference component of the SageMaker endpoint to invoke (a base model or a "
        "LoRA adapter on it); kind 'sagemaker' only, None invokes the endpoint's model.",
    )
    offline: OfflineBehaviour = Field(
        default_factory=OfflineBehaviour,
        description="Simulated accuracy and failure rates of kind 'offline' (ignored by the "
        "other kinds).",
    )

    @model_validator(mode="after")
    def _check_required(self) -> ProviderSpec:
        problems = []
        if self.kind == "openai" and not self.base_url:
            problems.append("base_url: provider 'openai' needs it (e.g. http://localhost:8000)")
        if self.kind == "sagemaker" and not self.endpoint_name:
            problems.append("endpoint_name: provider 'sagemaker' needs it")
        if self.inference_component_name and self.kind != "sagemaker":
            problems.append(
                f"inference_component_name: only for provider 'sagemaker', not '{self.kind}'"
            )
        if self.api_key_env and self.api_key_env not in os.environ:
            problems.append(f"api_key_env = '{self.api_key_env}': environment variable is not set")
        if problems:
            raise Problems(problems)
        return self


def build_provider(spec: ProviderSpec) -> Provider:
    """Instantiate the provider named by `spec.kind`."""
    if spec.kind == "offline":
        return OfflineProvider(spec.model_id, spec.revision, spec.offline)
    if spec.kind == "openai":
        api_key = os.environ[spec.api_key_env] if spec.api_key_env else None
        assert spec.base_url is not None
        return OpenAICompatibleProvider(spec.base_url, spec.model_id, spec.revision, api_key)
    if spec.kind == "bedrock":
        return BedrockConverseProvider(spec.model_id, spec.revision, spec.region)
    assert spec.endpoint_name is not None
    return SageMakerEndpointProvider(
        spec.endpoint_name,
        spec.model_id,
        spec.revision,
        spec.region,
        inference_component_name=spec.inference_component_name,
    )
