"""OpenAI-compatible HTTP provider (vLLM, TGI's OpenAI route, LiteLLM, OpenAI itself).

`generate` uses /v1/chat/completions; `loglik` uses /v1/completions with `echo` and
`logprobs`, summing the log-probabilities of the tokens that fall inside the continuation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import httpx

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

DEFAULT_TIMEOUT_S = 120.0


class OpenAICompatibleProvider(Provider):
    """Talks to `{base_url}/v1/...`; `api_key` is optional for local servers."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model_id: str,
        revision: str = DEFAULT_REVISION,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        loglik_supported: bool = True,
        request_model: str | None = None,
    ) -> None:
        self.model_id = model_id
        self.revision = revision
        self._loglik_supported = loglik_supported
        # What the server calls the model, when that is not its identity: `transformers serve`
        # pinned to a local folder wants the folder's path, which is no name for a cache key.
        self._request_model = request_model or model_id
        self._timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s
        )

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        """One chat completion with a single user message."""
        body: dict[str, Any] = {
            "model": self._request_model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        started = time.perf_counter()
        data, body_text = self._post("/v1/chat/completions", body)
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            message = data["choices"][0]["message"]
            text = message["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise PermanentError(
                f"openai: response lacks choices[0].message.content: {body_text[:300]!r}"
            ) from err
        usage = data.get("usage")
        usage = {} if usage is None else usage
        if not isinstance(usage, dict):
            shown = json.dumps(usage, separators=(",", ":"), ensure_ascii=False)[:200]
            raise PermanentError(f"openai: usage is not an object: {shown}")
        return Generation(
            text=str(text or ""),
            usage=Usage(
                token_count(usage.get("prompt_tokens"), "openai: usage.prompt_tokens"),
                token_count(usage.get("completion_tokens"), "openai: usage.completion_tokens"),
            ),
            latency_ms=latency_ms,
            provider=self.name,
            model=self.model_id,
            revision=self.revision,
        )

    @property
    def supports_loglik(self) -> bool:
        """Chat-only servers (OpenAI's hosted chat models) cannot echo prompt logprobs."""
        return self._loglik_supported

    def loglik(
        self, prompt: str, continuations: Sequence[str], oracle: Oracle | None = None
    ) -> list[float]:
        """Sum of token log-probabilities of each continuation, via echoed prompt logprobs."""
        if not self._loglik_supported:
            return super().loglik(prompt, continuations, oracle)
        return [self._continuation_loglik(prompt, text) for text in continuations]

    def _continuation_loglik(self, prompt: str, continuation: str) -> float:
        body = {
            "model": self._request_model,
            "prompt": prompt + continuation,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        data, body_text = self._post("/v1/completions", body)
        try:
            logprobs = data["choices"][0]["logprobs"]
            offsets: list[int] = logprobs["text_offset"]
            values: list[float | None] = logprobs["token_logprobs"]
        except (KeyError, IndexError, TypeError) as err:
            raise PermanentError(
                f"openai: response lacks choices[0].logprobs: {body_text[:300]!r}"
            ) from err
        return continuation_logprob(offsets, values, len(prompt), len(prompt) + len(continuation))

    def _post(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The reply's JSON object and its text; failures in the shared wording
        (`conformance/providers.json`: the TypeScript provider records the same strings)."""
        try:
            response = self._client.post(path, json=body)
        except httpx.TransportError as err:
            raise transport_error(path, err, self._timeout_s) from err
        raise_for_status(response, path)
        return json_object(response.text, path), response.text


def transport_error(path: str, err: BaseException, timeout_s: float) -> TransientError:
    """A failure to get an answer, named by its kind only (a timeout, or `transport_kind`)."""
    if isinstance(err, httpx.TimeoutException):
        return TransientError(f"openai: timeout calling {path}: no answer within {timeout_s:g} s")
    return TransientError(f"openai: transport error calling {path}: {transport_kind(err)}")


def json_object(text: str, path: str) -> dict[str, Any]:
    """A 2xx reply's body as a JSON object (a body that is not JSON is transient: proxies
    answer HTML pages while a server restarts; JSON that is not an object is permanent)."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise TransientError(f"openai: {path} returned non-JSON body: {text[:200]!r}") from err
    if not isinstance(data, dict):
        raise PermanentError(f"openai: {path} returned JSON {_json_kind(data)}, expected an object")
    return data


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "array"


def continuation_logprob(
    offsets: Sequence[int], values: Sequence[float | None], start: int, end: int
) -> float:
    """Sum logprobs of tokens starting inside [start, end): the continuation's tokens.

    The token generated after the echo (max_tokens=1) starts at `end` and is excluded.
    """
    total = 0.0
    for offset, value in zip(offsets, values, strict=True):
        if start <= offset < end:
            if value is None:
                raise PermanentError(
                    f"openai: missing logprob for continuation token at offset {offset}"
                )
            total += value
    return total


def raise_for_status(response: httpx.Response, path: str) -> None:
    """Raise `http_error` for a status of 400 or more."""
    retry_after = response.headers.get("retry-after")
    error = http_error(response.status_code, retry_after, response.text, path)
    if error is not None:
        raise error


def http_error(status: int, retry_after: str | None, text: str, path: str) -> ProviderError | None:
    """Map an HTTP status to the error taxonomy (None below 400). Throttled: 429, and 503 with a
    Retry-After header (a server shedding load says when to come back); both carry Retry-After
    seconds when given. Vectors: `conformance/providers.json` ("http")."""
    if status < HTTP_BAD_REQUEST:
        return None
    detail = f"openai: {path} returned HTTP {status}: {text[:200]!r}"
    if status == HTTP_TOO_MANY_REQUESTS or (
        status == HTTP_SERVICE_UNAVAILABLE and retry_after is not None
    ):
        return ThrottledError(detail, retry_after_s=parse_retry_after(retry_after))
    if status >= HTTP_SERVER_ERROR or status in {408, 409}:
        return TransientError(detail)
    return PermanentError(detail)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; HTTP-date forms are ignored (backoff applies instead)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


HTTP_BAD_REQUEST = 400
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500
HTTP_SERVICE_UNAVAILABLE = 503
