"""Offline provider determinism, retry/backoff behaviour, and the OpenAI-compatible provider
against a real local HTTP server (no mocks of httpx)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from dapt_eval.providers.base import (
    DecodingParams,
    Oracle,
    PermanentError,
    ThrottledError,
    TransientError,
)
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.providers.openai_compat import OpenAICompatibleProvider, continuation_logprob
from dapt_eval.providers.retry import RetriesExhaustedError, RetryPolicy, call_with_retry

PARAMS = DecodingParams()


def test_offline_output_is_a_deterministic_function_of_prompt_and_seed() -> None:
    a, b = OfflineProvider(), OfflineProvider()
    assert a.generate("p", PARAMS).text == b.generate("p", PARAMS).text
    assert (
        a.generate("p", PARAMS).text != a.generate("p", PARAMS.model_copy(update={"seed": 1})).text
    )


def test_offline_correct_rate_is_met_on_average() -> None:
    provider = OfflineProvider(behaviour=OfflineBehaviour(correct_rate=0.7))
    oracle = Oracle("right", ("wrong",))
    answers = [provider.generate(f"prompt {i}", PARAMS, oracle).text for i in range(1000)]
    assert 0.65 < answers.count("right") / 1000 < 0.75


def test_offline_throttles_once_then_succeeds() -> None:
    provider = OfflineProvider(behaviour=OfflineBehaviour(throttle_rate=1.0))
    with pytest.raises(ThrottledError):
        provider.generate("p", PARAMS)
    assert provider.generate("p", PARAMS).text


def test_offline_rejects_rates_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"'error_rate' = 1\.5 must lie in"):
        OfflineBehaviour(error_rate=1.5)


def test_retry_honours_retry_after_and_counts_attempts() -> None:
    sleeps: list[float] = []
    failures = iter([ThrottledError("429", retry_after_s=7.0), TransientError("500")])

    def flaky() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "done"

    policy = RetryPolicy(
        max_attempts=5, base_delay_s=1.0, sleep=sleeps.append, rng=random.Random(0)
    )
    result = call_with_retry(flaky, policy)
    assert (result.value, result.attempts) == ("done", 3)
    assert sleeps[0] >= 7.0  # Retry-After wins over a shorter jittered backoff
    assert 0.0 <= sleeps[1] <= 2.0  # full jitter below base * 2^(attempt-1)


def test_retry_gives_up_after_max_attempts_with_the_last_error() -> None:
    def always() -> str:
        raise TransientError("HTTP 503")

    with pytest.raises(
        RetriesExhaustedError, match=r"TransientError after 3 attempt\(s\): HTTP 503"
    ) as caught:
        call_with_retry(always, RetryPolicy(max_attempts=3, sleep=lambda _: None))
    assert caught.value.attempts == 3


def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    def bad() -> str:
        nonlocal calls
        calls += 1
        raise PermanentError("HTTP 400")

    with pytest.raises(RetriesExhaustedError):
        call_with_retry(bad, RetryPolicy(max_attempts=5, sleep=lambda _: None))
    assert calls == 1


# --- OpenAI-compatible provider against a local server ----------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Scripted server: each path pops its next (status, headers, body) from `script`."""

    # Replaced per test by the `server` fixture, which subclasses this handler.
    script: ClassVar[dict[str, list[tuple[int, dict[str, str], Any]]]] = {}
    requests: ClassVar[list[tuple[str, dict[str, Any], str | None]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body, self.headers.get("Authorization")))
        status, headers, payload = type(self).script[self.path].pop(0)
        data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        """Keep test output quiet."""


@pytest.fixture
def server() -> Iterator[type[_Handler]]:
    handler = type("Handler", (_Handler,), {"script": {}, "requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    handler.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    httpd.shutdown()
    httpd.server_close()


def _chat(text: str) -> dict[str, Any]:
    return {
        "choices": [{"message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 2},
    }


def test_openai_chat_request_and_response_shape(
    server: type[_Handler], monkeypatch: pytest.MonkeyPatch
) -> None:
    server.script["/v1/chat/completions"] = [(200, {}, _chat("Paris"))]
    provider = OpenAICompatibleProvider(server.base_url, "my-model", "rev1", api_key="k")  # type: ignore[attr-defined]
    generation = provider.generate(
        "Capital of France?", DecodingParams(temperature=0.2, max_tokens=8, seed=3)
    )
    assert (generation.text, generation.usage.input_tokens, generation.usage.output_tokens) == (
        "Paris",
        11,
        2,
    )
    assert (generation.provider, generation.model, generation.revision) == (
        "openai",
        "my-model",
        "rev1",
    )
    path, body, auth = server.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k"
    assert body == {
        "model": "my-model",
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "temperature": 0.2,
        "max_tokens": 8,
        "top_p": 1.0,
        "seed": 3,
    }


def test_openai_429_with_retry_after_is_retried_then_succeeds(server: type[_Handler]) -> None:
    server.script["/v1/chat/completions"] = [
        (429, {"Retry-After": "2"}, {"error": "slow down"}),
        (503, {}, {"error": "busy"}),
        (200, {}, _chat("ok")),
    ]
    sleeps: list[float] = []
    provider = OpenAICompatibleProvider(server.base_url, "m")  # type: ignore[attr-defined]
    result = call_with_retry(
        lambda: provider.generate("p", PARAMS), RetryPolicy(sleep=sleeps.append)
    )
    assert (result.value.text, result.attempts) == ("ok", 3)
    assert sleeps[0] >= 2.0


def test_openai_400_is_permanent_and_names_status(server: type[_Handler]) -> None:
    server.script["/v1/chat/completions"] = [(400, {}, {"error": "bad model"})]
    provider = OpenAICompatibleProvider(server.base_url, "m")  # type: ignore[attr-defined]
    with pytest.raises(PermanentError, match="HTTP 400"):
        provider.generate("p", PARAMS)


def test_openai_malformed_body_is_a_clear_error(server: type[_Handler]) -> None:
    server.script["/v1/chat/completions"] = [(200, {}, {"choices": []})]
    provider = OpenAICompatibleProvider(server.base_url, "m")  # type: ignore[attr-defined]
    with pytest.raises(PermanentError, match=r"lacks choices\[0\]\.message\.content"):
        provider.generate("p", PARAMS)


def test_openai_connection_refused_is_transient() -> None:
    provider = OpenAICompatibleProvider("http://127.0.0.1:9", "m", timeout_s=1.0)
    with pytest.raises(TransientError, match="transport error"):
        provider.generate("p", PARAMS)


def test_openai_loglik_sums_only_continuation_tokens(server: type[_Handler]) -> None:
    # prompt "Q: x\nAnswer:" is 12 chars; continuation " B" starts at offset 12
    def echo(values: list[float | None]) -> dict[str, Any]:
        return {
            "choices": [{"logprobs": {"text_offset": [0, 3, 11, 12, 14], "token_logprobs": values}}]
        }

    server.script["/v1/completions"] = [
        (200, {}, echo([None, -1.0, -0.5, -0.25, -9.0])),
        (200, {}, echo([None, -1.0, -0.5, -3.0, -9.0])),
    ]
    provider = OpenAICompatibleProvider(server.base_url, "m")  # type: ignore[attr-defined]
    assert provider.loglik("Q: x\nAnswer:", [" A", " B"]) == [-0.25, -3.0]
    body = server.requests[0][1]
    assert (body["prompt"], body["echo"], body["logprobs"]) == ("Q: x\nAnswer: A", True, 1)


def test_continuation_logprob_rejects_missing_values() -> None:
    with pytest.raises(PermanentError, match="missing logprob"):
        continuation_logprob([0, 5], [None, None], 5, 7)


def test_chat_only_server_refuses_loglik() -> None:
    provider = OpenAICompatibleProvider("http://127.0.0.1:9", "m", loglik_supported=False)
    assert provider.supports_loglik is False
    with pytest.raises(PermanentError, match="does not support log-likelihood"):
        provider.loglik("p", [" A"])
