"""Bedrock Converse and SageMaker request/response shaping, checked with botocore's Stubber."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from pydantic import ValidationError

from dapt_eval.providers.aws import (
    BedrockConverseProvider,
    SageMakerEndpointProvider,
    tgi_request,
)
from dapt_eval.providers.base import DecodingParams, PermanentError, ThrottledError, TransientError
from dapt_eval.providers.factory import ProviderSpec


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def bedrock() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber


@pytest.fixture
def sagemaker() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber


def _converse_response(text: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15},
        "metrics": {"latencyMs": 42},
    }


def test_bedrock_converse_request_and_response(bedrock: tuple[Any, Stubber]) -> None:
    client, stubber = bedrock
    expected = {
        "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
        "messages": [{"role": "user", "content": [{"text": "Hi?"}]}],
        "inferenceConfig": {
            "maxTokens": 16,
            "temperature": 0.0,
            "topP": 1.0,
            "stopSequences": ["\n\n"],
        },
    }
    stubber.add_response("converse", _converse_response("Hello"), expected)
    provider = BedrockConverseProvider("anthropic.claude-3-haiku-20240307-v1:0", client=client)
    generation = provider.generate("Hi?", DecodingParams(max_tokens=16, stop=("\n\n",)))
    assert (generation.text, generation.usage.input_tokens, generation.usage.output_tokens) == (
        "Hello",
        12,
        3,
    )
    assert generation.latency_ms == 42
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ThrottlingException", 429, ThrottledError),
        ("ServiceUnavailableException", 503, TransientError),
        ("ModelNotReadyException", 429, TransientError),
        ("ValidationException", 400, PermanentError),
        ("AccessDeniedException", 403, PermanentError),
    ],
)
def test_bedrock_errors_map_to_the_taxonomy(
    bedrock: tuple[Any, Stubber], code: str, status: int, error: type[Exception]
) -> None:
    client, stubber = bedrock
    stubber.add_client_error(
        "converse", service_error_code=code, service_message="nope", http_status_code=status
    )
    with pytest.raises(error, match=f"bedrock: {code}: nope"):
        BedrockConverseProvider("m", client=client).generate("p", DecodingParams())


def _body(payload: Any) -> StreamingBody:
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


@pytest.mark.parametrize(
    "payload",
    [
        [{"generated_text": "Paris", "details": {"generated_tokens": 1, "prefill": []}}],  # TGI
        {"generated_text": "Paris"},  # LMI
    ],
)
def test_sagemaker_tgi_and_lmi_responses(sagemaker: tuple[Any, Stubber], payload: Any) -> None:
    client, stubber = sagemaker
    params = DecodingParams(max_tokens=5)
    expected = {
        "EndpointName": "my-endpoint",
        "ContentType": "application/json",
        "Accept": "application/json",
        "Body": json.dumps(tgi_request("Capital?", params)),
    }
    stubber.add_response(
        "invoke_endpoint", {"Body": _body(payload), "ContentType": "application/json"}, expected
    )
    provider = SageMakerEndpointProvider("my-endpoint", "llama-dapt", "ckpt-100", client=client)
    generation = provider.generate("Capital?", params)
    assert generation.text == "Paris"
    assert (generation.provider, generation.model, generation.revision) == (
        "sagemaker",
        "llama-dapt",
        "ckpt-100",
    )


def test_tgi_request_uses_greedy_decoding_for_temperature_zero() -> None:
    greedy = tgi_request("p", DecodingParams(temperature=0.0))["parameters"]
    assert greedy["do_sample"] is False and "temperature" not in greedy
    sampled = tgi_request("p", DecodingParams(temperature=0.7, top_p=0.9))["parameters"]
    assert (sampled["do_sample"], sampled["temperature"], sampled["top_p"]) == (True, 0.7, 0.9)


def test_sagemaker_throttle_and_bad_body(sagemaker: tuple[Any, Stubber]) -> None:
    client, stubber = sagemaker
    stubber.add_client_error(
        "invoke_endpoint", service_error_code="ThrottlingException", http_status_code=429
    )
    stubber.add_response(
        "invoke_endpoint",
        {"Body": _body({"text": "?"})},
        {"EndpointName": "e", "ContentType": ANY, "Accept": ANY, "Body": ANY},
    )
    provider = SageMakerEndpointProvider("e", client=client)
    with pytest.raises(ThrottledError):
        provider.generate("p", DecodingParams())
    with pytest.raises(PermanentError, match="lacks 'generated_text'"):
        provider.generate("p", DecodingParams())


def test_sagemaker_names_the_inference_component(sagemaker: tuple[Any, Stubber]) -> None:
    client, stubber = sagemaker
    stubber.add_response(
        "invoke_endpoint",
        {"Body": _body({"generated_text": "ok"})},
        {
            "EndpointName": "dapt-prod-serving",
            "InferenceComponentName": "dapt-prod-support",
            "ContentType": ANY,
            "Accept": ANY,
            "Body": ANY,
        },
    )
    provider = SageMakerEndpointProvider(
        "dapt-prod-serving", "support", client=client, inference_component_name="dapt-prod-support"
    )
    assert provider.generate("p", DecodingParams()).text == "ok"
    stubber.assert_no_pending_responses()


def test_only_sagemaker_takes_an_inference_component() -> None:
    with pytest.raises(ValidationError, match="inference_component_name: only for provider"):
        ProviderSpec(kind="bedrock", model_id="m", inference_component_name="c")
