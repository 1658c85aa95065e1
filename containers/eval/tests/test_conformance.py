"""The conformance corpus (`containers/eval/conformance/*.json`): vectors that this suite and
the TypeScript suite (`test/lambda/conformance.test.ts`) both run, so the two runtimes cannot
drift apart where the parity tests do not look."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from dapt_eval import unicode_table
from dapt_eval.benchmark import load_rows
from dapt_eval.js_json import js_number
from dapt_eval.judge import JUDGE_PROMPT, VerdictParseError, enclose_candidate, parse_verdict
from dapt_eval.mcq import parse_letter
from dapt_eval.metrics import UnicodeTokenizer, rouge_l
from dapt_eval.prompts import PromptSpec, render, template_problems
from dapt_eval.providers.aws import SageMakerEndpointProvider, converse_text, tgi_response_text
from dapt_eval.providers.base import (
    DecodingParams,
    PermanentError,
    ProviderError,
    ThrottledError,
    TransientError,
    token_count,
)
from dapt_eval.providers.limiter import AimdLimit
from dapt_eval.providers.openai_compat import OpenAICompatibleProvider
from dapt_eval.providers.retry import RetriesExhaustedError, RetryPolicy, call_with_retry
from dapt_eval.results import ItemResult
from dapt_eval.runner import parse_label
from dapt_eval.schemas import ClassificationItem, Task

CORPUS = Path(__file__).resolve().parents[1] / "conformance"


def _vectors(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / name).read_text(encoding="utf-8"))
    return data


LOADERS = _vectors("loaders.json")


@pytest.mark.parametrize("case", LOADERS["cases"], ids=[c["name"] for c in LOADERS["cases"]])
def test_jsonl_loader_follows_the_corpus(case: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_bytes(case["text"].encode("utf-8"))
    labels = LOADERS["labels"]

    def check(row: ClassificationItem) -> str | None:
        return None if row.label in labels else f"label: '{row.label}' is not in the set"

    load = load_rows(path, ClassificationItem, check)
    assert [r.id for r in load.rows] == case["rows"]
    assert [q.line for q in load.quarantined] == case["quarantined_lines"]


PROVIDERS = _vectors("providers.json")


@pytest.mark.parametrize(
    "case", PROVIDERS["token_counts"], ids=[c["name"] for c in PROVIDERS["token_counts"]]
)
def test_token_counts_follow_the_corpus(case: dict[str, Any]) -> None:
    value = case.get("value")
    if "error" in case:
        with pytest.raises(PermanentError) as raised:
            token_count(value, "openai: usage.prompt_tokens")
        assert str(raised.value) == case["error"]
    else:
        assert token_count(value, "openai: usage.prompt_tokens") == case["count"]


@pytest.mark.parametrize(
    "case", PROVIDERS["unexpected"], ids=[c["name"] for c in PROVIDERS["unexpected"]]
)
def test_unexpected_exceptions_follow_the_corpus(case: dict[str, Any]) -> None:
    kind = {"TypeError": TypeError}[case["type"]]

    def call() -> None:
        raise kind(case["message"])

    with pytest.raises(RetriesExhaustedError) as raised:
        call_with_retry(call, RetryPolicy(max_attempts=2, sleep=lambda _: None))
    assert str(raised.value) == case["error"]


JUDGE = _vectors("judge.json")


@pytest.mark.parametrize("case", JUDGE["enclose"], ids=[c["name"] for c in JUDGE["enclose"]])
def test_the_judge_candidate_is_enclosed_as_the_corpus_says(case: dict[str, Any]) -> None:
    enclosed = enclose_candidate(case["candidate"], case["max_chars"])
    assert (enclosed.text, enclosed.chars, enclosed.truncated) == (
        case["text"],
        case["chars"],
        case["truncated"],
    )


def test_the_judge_prompt_is_the_corpus_prompt() -> None:
    case = JUDGE["prompt"]
    values = {
        "question": case["question"],
        "reference_answer": case["reference_answer"],
        "candidate_answer": enclose_candidate(case["candidate"]).text,
    }
    assert render(JUDGE_PROMPT, values) == case["prompt"]


@pytest.mark.parametrize("case", JUDGE["verdicts"], ids=[c["name"] for c in JUDGE["verdicts"]])
def test_verdicts_parse_as_the_corpus_says(case: dict[str, Any]) -> None:
    if "verdict" in case:
        assert parse_verdict(case["reply"], case["candidate"]).verdict == case["verdict"]
        return
    with pytest.raises(VerdictParseError) as raised:
        parse_verdict(case["reply"], case["candidate"])
    if "error" in case:
        assert str(raised.value) == case["error"]
    else:
        assert str(raised.value).startswith(case["error_prefix"])


LETTERS = _vectors("letters.json")


@pytest.mark.parametrize("case", LETTERS["cases"], ids=[c["name"] for c in LETTERS["cases"]])
def test_letters_parse_as_the_corpus_says(case: dict[str, Any]) -> None:
    assert parse_letter(case["reply"]) == case["letter"]


RECORDS = _vectors("records.json")


@pytest.mark.parametrize("case", RECORDS["cases"], ids=[c["name"] for c in RECORDS["cases"]])
def test_records_serialise_as_the_corpus_says(case: dict[str, Any]) -> None:
    assert ItemResult.model_validate(case["record"]).to_line() == case["line"]


@pytest.mark.parametrize("case", RECORDS["numbers"], ids=[c["text"] for c in RECORDS["numbers"]])
def test_numbers_print_as_the_corpus_says(case: dict[str, Any]) -> None:
    assert js_number(case["value"]) == case["text"]


TEMPLATES = _vectors("templates.json")


@pytest.mark.parametrize(
    "case", TEMPLATES["problems"], ids=[c["name"] for c in TEMPLATES["problems"]]
)
def test_template_problems_follow_the_corpus(case: dict[str, Any]) -> None:
    prompt = PromptSpec(id="p", version="1", template=case["template"])
    assert template_problems(prompt, Task(case["task"]), "benchmark.json") == case["problems"]


@pytest.mark.parametrize(
    "case", TEMPLATES["renders"], ids=[c["name"] for c in TEMPLATES["renders"]]
)
def test_templates_render_as_the_corpus_says(case: dict[str, Any]) -> None:
    prompt = PromptSpec(id="p", version="1", template=case["template"])
    assert render(prompt, case["values"]) == case["text"]


UNICODE = _vectors("unicode.json")


@pytest.mark.parametrize("case", UNICODE["tokens"], ids=[c["name"] for c in UNICODE["tokens"]])
def test_tokens_follow_the_corpus(case: dict[str, Any]) -> None:
    assert UnicodeTokenizer().tokenize(case["text"]) == case["tokens"]


@pytest.mark.parametrize("case", UNICODE["casefold"], ids=[c["name"] for c in UNICODE["casefold"]])
def test_casefold_follows_the_corpus(case: dict[str, Any]) -> None:
    assert unicode_table.casefold(case["text"]) == case["fold"]


@pytest.mark.parametrize("case", UNICODE["rouge_l"], ids=[c["name"] for c in UNICODE["rouge_l"]])
def test_rouge_l_follows_the_corpus(case: dict[str, Any]) -> None:
    assert rouge_l(case["reference"], case["prediction"]) == case["score"]


@pytest.mark.parametrize("case", UNICODE["labels"], ids=[c["name"] for c in UNICODE["labels"]])
def test_labels_parse_as_the_corpus_says(case: dict[str, Any]) -> None:
    assert parse_label(case["reply"], case["labels"]) == case["label"]


@pytest.mark.parametrize("case", UNICODE["repr"], ids=[c["name"] for c in UNICODE["repr"]])
def test_repr_follows_the_corpus(case: dict[str, Any]) -> None:
    # Error messages quote replies with repr (e.g. "reply is not a single letter A-D: ...").
    assert repr(case["text"]) == case["repr"]


CONCURRENCY = _vectors("concurrency.json")


@pytest.mark.parametrize(
    "case", CONCURRENCY["limits"], ids=[c["name"] for c in CONCURRENCY["limits"]]
)
def test_the_adaptive_limit_follows_the_corpus(case: dict[str, Any]) -> None:
    limit = AimdLimit(case["floor"], case["ceiling"])
    seen = []
    for event in case["events"]:
        if event[0] == "start":
            assert limit.can_start(), f"the vector starts a call beyond the limit: {event}"
            limit.start()
        else:
            {"ok": limit.succeeded, "throttle": limit.throttled, "error": limit.failed}[event[0]](
                event[1]
            )
        seen.append([limit.limit, limit.allowed, limit.in_flight])
    assert [s[1:] for s in seen] == [e[1:] for e in case["expect"]]
    assert [s[0] for s in seen] == pytest.approx([e[0] for e in case["expect"]], abs=1e-9)


class _FixedDraw(random.Random):
    """A generator whose uniform draw is always `value` (the vectors fix the jitter)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


_OUTCOME_ERRORS: dict[str, type[ProviderError]] = {
    "throttle": ThrottledError,
    "transient": TransientError,
    "permanent": PermanentError,
}


@pytest.mark.parametrize(
    "case", CONCURRENCY["retries"], ids=[c["name"] for c in CONCURRENCY["retries"]]
)
def test_throttle_retries_follow_the_corpus(case: dict[str, Any]) -> None:
    outcomes = iter(case["outcomes"])
    waits: list[float] = []

    def call() -> str:
        outcome = next(outcomes)
        if "ok" in outcome:
            return str(outcome["ok"])
        if "throttle" in outcome:
            raise ThrottledError(outcome["throttle"], outcome.get("retry_after_s"))
        kind = next(k for k in outcome if k in _OUTCOME_ERRORS)
        raise _OUTCOME_ERRORS[kind](outcome[kind])

    policy = RetryPolicy(**case["policy"], sleep=waits.append, rng=_FixedDraw(case["random"]))
    if "error" in case:
        with pytest.raises(RetriesExhaustedError) as raised:
            call_with_retry(call, policy)
        assert str(raised.value) == case["error"]
    else:
        assert call_with_retry(call, policy).attempts == case["attempts"]
    assert waits == pytest.approx(case["waits_s"], abs=1e-9)
    assert next(outcomes, None) is None, "the call stopped before the vector's last outcome"


_SCRIPT: dict[str, Any] = {}
"""The answer `_SCRIPTED` gives next: status, headers, body (one client for every case: building
an httpx client loads an SSL context, ~0.15 s each)."""


def _scripted_reply(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        _SCRIPT["status"], headers=_SCRIPT["headers"], content=_SCRIPT["body"].encode("utf-8")
    )


_SCRIPTED = OpenAICompatibleProvider("http://server", "m")
_SCRIPTED._client = httpx.Client(
    base_url="http://server", transport=httpx.MockTransport(_scripted_reply)
)


def _scripted_provider(status: int, body: str, headers: dict[str, str]) -> OpenAICompatibleProvider:
    _SCRIPT.update(status=status, body=body, headers=headers)
    return _SCRIPTED


def _generate_error(provider: OpenAICompatibleProvider) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        provider.generate("Hi", DecodingParams())
    return raised.value


@pytest.mark.parametrize("case", PROVIDERS["http"], ids=[c["name"] for c in PROVIDERS["http"]])
def test_http_errors_are_recorded_as_the_corpus_says(case: dict[str, Any]) -> None:
    headers = {"retry-after": case["retry_after"]} if "retry_after" in case else {}
    error = _generate_error(_scripted_provider(case["status"], case["body"], headers))
    assert (type(error).__name__, str(error)) == (case["kind"], case["message"])
    if isinstance(error, ThrottledError):
        assert error.retry_after_s == case["retry_after_s"]


@pytest.mark.parametrize("case", PROVIDERS["bodies"], ids=[c["name"] for c in PROVIDERS["bodies"]])
def test_unusable_replies_are_recorded_as_the_corpus_says(case: dict[str, Any]) -> None:
    error = _generate_error(_scripted_provider(200, case["body"], {}))
    assert (type(error).__name__, str(error)) == (case["kind"], case["message"])


@pytest.mark.parametrize(
    "case", PROVIDERS["transport"], ids=[c["name"] for c in PROVIDERS["transport"]]
)
def test_transport_failures_are_recorded_as_the_corpus_says(case: dict[str, Any]) -> None:
    # Real sockets: what httpx raises is what is mapped.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if case["failure"] == "timeout":
            listener.listen(1)  # accepted by the kernel, never answered
        else:
            listener.close()  # nothing listens on the port
        provider = OpenAICompatibleProvider(
            f"http://127.0.0.1:{port}", "m", timeout_s=case.get("timeout_s", 5.0)
        )
        error = _generate_error(provider)
    assert (type(error).__name__, str(error)) == ("TransientError", case["message"])


@pytest.mark.parametrize(
    "case", PROVIDERS["sagemaker_bodies"], ids=[c["name"] for c in PROVIDERS["sagemaker_bodies"]]
)
def test_unusable_sagemaker_replies_are_recorded_as_the_corpus_says(case: dict[str, Any]) -> None:
    with pytest.raises(PermanentError) as raised:
        tgi_response_text(case["body"].encode("utf-8"))
    assert str(raised.value) == case["message"]


@pytest.mark.parametrize(
    "case", PROVIDERS["aws_transport"], ids=[c["name"] for c in PROVIDERS["aws_transport"]]
)
def test_aws_transport_failures_are_recorded_as_the_corpus_says(case: dict[str, Any]) -> None:
    # Real sockets through botocore, as the TypeScript test goes through the AWS SDK.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if case["failure"] == "timeout":
            listener.listen(1)  # accepted by the kernel, never answered
        else:
            listener.close()
        client = boto3.client(
            "sagemaker-runtime",
            region_name="ap-south-2",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=0.3,
                read_timeout=0.3,
            ),
        )
        with pytest.raises(TransientError) as raised:
            SageMakerEndpointProvider("ep", client=client).generate("Hi", DecodingParams())
    assert str(raised.value) == case["message"]


@pytest.mark.parametrize(
    "case", PROVIDERS["bedrock_replies"], ids=[c["name"] for c in PROVIDERS["bedrock_replies"]]
)
def test_bedrock_replies_are_read_as_the_corpus_says(case: dict[str, Any]) -> None:
    if "message" in case:
        with pytest.raises(PermanentError) as raised:
            converse_text(case["response"])
        assert str(raised.value) == case["message"]
    else:
        assert converse_text(case["response"]) == case["text"]
