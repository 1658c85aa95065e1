"""Build a provider from a validated spec (the CLI and the container entry point share this)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dapt_eval.providers.aws import BedrockConverseProvider, SageMakerEndpointProvider
from dapt_eval.providers.base import DEFAULT_REVISION, Provider
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.providers.openai_compat import OpenAICompatibleProvider

ProviderKind = Literal["offline", "openai", "bedrock", "sagemaker"]


class ProviderSpec(BaseModel):
    """Which provider to talk to and how; `model_validator` lists every missing setting."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    kind: ProviderKind
    model_id: str = Field(min_length=1)
    revision: str = DEFAULT_REVISION
    base_url: str | None = None
    api_key_env: str | None = None
    region: str | None = None
    endpoint_name: str | None = None
    offline: OfflineBehaviour = Field(default_factory=OfflineBehaviour)

    @model_validator(mode="after")
    def _check_required(self) -> ProviderSpec:
        problems = []
        if self.kind == "openai" and not self.base_url:
            problems.append("provider 'openai' needs 'base_url' (e.g. http://localhost:8000)")
        if self.kind == "sagemaker" and not self.endpoint_name:
            problems.append("provider 'sagemaker' needs 'endpoint_name'")
        if self.api_key_env and self.api_key_env not in os.environ:
            problems.append(f"{self.api_key_env} environment variable is not set")
        if problems:
            raise ValueError("; ".join(problems))
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
    return SageMakerEndpointProvider(spec.endpoint_name, spec.model_id, spec.revision, spec.region)
