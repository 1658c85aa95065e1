"""Amazon Bedrock (Converse API) and SageMaker real-time endpoint providers.

boto3's own retries are turned off (`total_max_attempts=1`, one attempt; botocore reads
`max_attempts` as a number of retries) so `retry.call_with_retry` is the single retry layer for
every provider and throttles are counted the same way everywhere.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from dapt_eval.providers.base import (
    DEFAULT_REVISION,
    DecodingParams,
    Generation,
    Oracle,
    PermanentError,
    Provider,
    ProviderError,
    ThrottledError,
    TransientError,
    Usage,
    token_count,
    transport_kind,
)

THROTTLE_CODES = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"}
)
TRANSIENT_CODES = frozenset(
    {
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalServerException",
        "InternalFailure",
        "ModelNotReadyException",
        "ModelTimeoutException",
    }
)
DEFAULT_READ_TIMEOUT_S = 120


def make_client(service: str, region: str | None) -> Any:
    """A boto3 client with SDK retries off and a generous read timeout for long generations."""
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=DEFAULT_READ_TIMEOUT_S
    )
    return boto3.client(service, region_name=region, config=config)


def classify_client_error(service: str, err: ClientError) -> ProviderError:
    """Map an AWS error code to throttled / transient / permanent, keeping code and message."""
    code = str(err.response.get("Error", {}).get("Code", "Unknown"))
    message = f"{service}: {code}: {err.response.get('Error', {}).get('Message', '')}"
    if code in THROTTLE_CODES:
        return ThrottledError(message)
    if code in TRANSIENT_CODES:
        return TransientError(message)
    return PermanentError(message)


def sdk_error(service: str, err: BotoCoreError) -> TransientError:
    """A botocore failure without a service answer. Timeouts and connection failures are named by
    kind only, as the TypeScript providers name them (`conformance/providers.json`,
    "aws_transport"); anything else (no credentials, ...) keeps botocore's message."""
    if isinstance(err, ReadTimeoutError | ConnectTimeoutError):
        return TransientError(f"{service}: timeout: no answer within the request timeout")
    if isinstance(err, EndpointConnectionError):
        return TransientError(f"{service}: transport error: {transport_kind(err)}")
    return TransientError(f"{service}: {err}")


class BedrockConverseProvider(Provider):
    """Bedrock `converse` with one user turn; model ids are versioned, so revision is optional."""

    name = "bedrock"

    def __init__(
        self,
        model_id: str,
        revision: str = DEFAULT_REVISION,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        self.model_id = model_id
        self.revision = revision
        self._client = client or make_client("bedrock-runtime", region)

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        """Call Converse; Bedrock has no seed parameter, so `params.seed` is not sent."""
        request = converse_request(self.model_id, prompt, params)
        started = time.perf_counter()
        try:
            response = self._client.converse(**request)
        except ClientError as err:
            raise classify_client_error("bedrock", err) from err
        except BotoCoreError as err:
            raise sdk_error("bedrock", err) from err
        latency_ms = (time.perf_counter() - started) * 1000
        usage = response.get("usage") or {}
        return Generation(
            text=converse_text(response),
            usage=Usage(
                token_count(usage.get("inputTokens"), "bedrock: usage.inputTokens"),
                token_count(usage.get("outputTokens"), "bedrock: usage.outputTokens"),
            ),
            latency_ms=float(response.get("metrics", {}).get("latencyMs", latency_ms)),
            provider=self.name,
            model=self.model_id,
            revision=self.revision,
        )


def converse_request(model_id: str, prompt: str, params: DecodingParams) -> dict[str, Any]:
    """The keyword arguments of `bedrock-runtime.converse` for one user prompt."""
    inference: dict[str, Any] = {
        "maxTokens": params.max_tokens,
        "temperature": params.temperature,
        "topP": params.top_p,
    }
    if params.stop:
        inference["stopSequences"] = list(params.stop)
    return {
        "modelId": model_id,
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
        "inferenceConfig": inference,
    }


def converse_text(response: dict[str, Any]) -> str:
    """Concatenate the text blocks of the assistant message (tool-use blocks carry no text).

    Without them the error names the stop reason, not the response: boto3's dict and the
    TypeScript SDK's object differ (ResponseMetadata, $metadata), the record's error must not
    (`conformance/providers.json`, "bedrock_replies")."""
    try:
        blocks = response["output"]["message"]["content"]
    except (KeyError, TypeError):
        blocks = None
    if blocks is None:
        stop = json.dumps(response.get("stopReason"), ensure_ascii=False)
        raise PermanentError(f"bedrock: response lacks output.message.content (stopReason: {stop})")
    return "".join(str(block["text"]) for block in blocks if "text" in block)


class SageMakerEndpointProvider(Provider):
    """A SageMaker real-time endpoint serving TGI or LMI (`{"inputs", "parameters"}` JSON)."""

    name = "sagemaker"

    def __init__(
        self,
        endpoint_name: str,
        model_id: str | None = None,
        revision: str = DEFAULT_REVISION,
        region: str | None = None,
        client: Any = None,
        inference_component_name: str | None = None,
    ) -> None:
        self.endpoint_name = endpoint_name
        self.inference_component_name = inference_component_name
        self.model_id = model_id or endpoint_name
        self.revision = revision
        self._client = client or make_client("sagemaker-runtime", region)

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        """Invoke the endpoint and read `generated_text` from the TGI/LMI response shape."""
        started = time.perf_counter()
        try:
            component = (
                {"InferenceComponentName": self.inference_component_name}
                if self.inference_component_name
                else {}
            )
            response = self._client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps(tgi_request(prompt, params)),
                **component,
            )
            body = response["Body"].read()
        except ClientError as err:
            raise classify_client_error("sagemaker", err) from err
        except BotoCoreError as err:
            raise sdk_error("sagemaker", err) from err
        latency_ms = (time.perf_counter() - started) * 1000
        text, usage = tgi_response_text(body)
        return Generation(text, usage, latency_ms, self.name, self.model_id, self.revision)


def tgi_request(prompt: str, params: DecodingParams) -> dict[str, Any]:
    """TGI/LMI request body. TGI rejects temperature 0, so greedy decoding is `do_sample: false`."""
    parameters: dict[str, Any] = {
        "max_new_tokens": params.max_tokens,
        "return_full_text": False,
        "seed": params.seed,
        "details": True,
    }
    if params.temperature > 0:
        parameters.update(do_sample=True, temperature=params.temperature)
        if params.top_p < 1.0:
            parameters["top_p"] = params.top_p
    else:
        parameters["do_sample"] = False
    if params.stop:
        parameters["stop"] = list(params.stop)
    return {"inputs": prompt, "parameters": parameters}


def tgi_response_text(body: bytes) -> tuple[str, Usage]:
    """Accept TGI's `[{"generated_text": ...}]` and LMI's `{"generated_text": ...}`."""
    # Messages quote the body's text as the TypeScript worker does (conformance/providers.json).
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError as err:
        raise PermanentError(f"sagemaker: endpoint returned non-JSON body: {text[:200]!r}") from err
    first = data[0] if isinstance(data, list) and data else data
    if not isinstance(first, dict) or "generated_text" not in first:
        raise PermanentError(f"sagemaker: response lacks 'generated_text': {text[:300]!r}")
    details = first.get("details") or {}
    usage = Usage(
        input_tokens=len(details.get("prefill", []) or []),
        output_tokens=token_count(
            details.get("generated_tokens"), "sagemaker: details.generated_tokens"
        ),
    )
    return str(first["generated_text"]), usage
