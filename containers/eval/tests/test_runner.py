"""The local runner: result records, cache keys, resume, errors, modes, and aggregation."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import MakeBenchmark, cls_row, mcq_row, qa_row, sum_row, write_jsonl
from dapt_eval.aggregate import AggregationError, aggregate
from dapt_eval.benchmark import build_benchmark, load_benchmark
from dapt_eval.commands import aggregate_dir, run_and_report
from dapt_eval.hashing import item_sha256, sha256_text
from dapt_eval.judge import Judge
from dapt_eval.prompts import PromptSpec
from dapt_eval.providers.base import DecodingParams, Generation, Oracle, ThrottledError
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.providers.openai_compat import OpenAICompatibleProvider
from dapt_eval.providers.retry import RetryPolicy
from dapt_eval.results import ItemResult, ModelRef, ResultStore, cache_key
from dapt_eval.runner import RunConfig, RunConfigError, run_benchmark, unit_key
from dapt_eval.schemas import Task

LABELS = ["billing", "outage", "other"]


def _config(
    mode: str | None = None,
    decoding: DecodingParams | None = None,
    concurrency: int = 2,
    include_format_spread: bool = False,
) -> RunConfig:
    return RunConfig(
        run_id="run-1",
        decoding=decoding or DecodingParams(),
        mode=mode,
        concurrency=concurrency,
        include_format_spread=include_format_spread,
        retry=RetryPolicy(max_attempts=3, sleep=lambda _: None),
    )


def _offline(**behaviour: float) -> OfflineProvider:
    return OfflineProvider("tiny", "r1", OfflineBehaviour(**behaviour))


def test_cache_key_is_sha256_of_the_documented_canonical_json() -> None:
    # This golden vector is repeated in README.md for the TypeScript implementation.
    row: dict[str, Any] = {"id": "m1", "question": "Which?", "answer": "A1"}
    row["distractors"] = {"near_miss": "A2", "wrong": ["A3", "A4"]}
    assert item_sha256(row) == sha256_text(
        '{"answer":"A1","distractors":{"near_miss":"A2","wrong":["A3","A4"]},"id":"m1",'
        '"question":"Which?"}'
    )
    key = cache_key(
        benchmark="bench",
        benchmark_version="1.0.0",
        item_id="m1",
        item_sha256=item_sha256(row),
        prompt_id="mcq-letter",
        prompt_version="1",
        model=ModelRef(provider="offline", model_id="tiny", revision="r1"),
        decoding=DecodingParams().cache_dict(),
        mode="letter",
        judge=None,
    )
    canonical = (
        '{"benchmark":{"name":"bench","version":"1.0.0"},'
        '"decoding":{"max_tokens":256,"seed":0,"stop":[],"temperature":0,"top_p":1},'
        '"item_id":"m1",'
        '"item_sha256":"75c6c1f0662edb1be5310c26edf883de0589e4031e47046ce19547fa387f512a",'
        '"judge":null,"mode":"letter",'
        '"model":{"model_id":"tiny","provider":"offline","revision":"r1"},'
        '"prompt":{"id":"mcq-letter","version":"1"}}'
    )
    assert key == sha256_text(canonical)
    assert key == "9fc755f1a49817561e401d5cf1b8f50f836035771135f46430c278b829cc41bc"


def test_mcq_run_writes_one_record_per_item_with_the_shared_schema(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(10)])
    summary, report = run_and_report(root, _offline(), _config(), tmp_path / "out")
    assert (summary.total, summary.ok, summary.completion_rate) == (10, 10, 1.0)
    assert report["primary"]["accuracy"]["rate"] == 1.0
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert set(record) == {
        "schema_version",
        "run_id",
        "benchmark",
        "benchmark_version",
        "item_id",
        "task",
        "model",
        "decoding",
        "prompt_id",
        "prompt_version",
        "mode",
        "status",
        "prediction",
        "correct",
        "score",
        "judge",
        "error",
        "cache_key",
        "latency_ms",
        "usage",
        "details",
        "attempts",
    }
    assert record["mode"] == "letter" and record["model"] == {
        "provider": "offline",
        "model_id": "tiny",
        "revision": "r1",
    }
    assert sorted(record["details"]["permutation"]) == [0, 1, 2, 3]
    assert (tmp_path / "out" / "items" / f"{record['cache_key']}.json").is_file()


def test_second_identical_run_makes_zero_provider_calls(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(8)]))
    store = ResultStore(tmp_path / "out")
    first = _offline(correct_rate=0.5)
    run_benchmark(benchmark, first, _config(concurrency=4), store)
    assert first.total_calls == 8
    again = _offline(correct_rate=0.5)
    summary = run_benchmark(benchmark, again, _config(), store)
    assert again.total_calls == 0
    assert (summary.skipped, summary.completion_rate) == (8, 1.0)


def test_changing_decoding_changes_keys_and_reruns(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(3)]))
    store = ResultStore(tmp_path / "out")
    run_benchmark(benchmark, _offline(), _config(), store)
    provider = _offline()
    run_benchmark(benchmark, provider, _config(decoding=DecodingParams(seed=1)), store)
    assert provider.total_calls == 3


def test_provider_errors_become_errored_records_and_are_retried_next_run(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(30)]))
    store = ResultStore(tmp_path / "out")
    summary = run_benchmark(benchmark, _offline(error_rate=0.3), _config(), store)
    assert summary.errored > 0 and summary.ok + summary.errored == 30
    errored = [r for r in store if r.status == "errored"]
    assert all(
        r.correct is None and "TransientError after 3 attempt(s)" in (r.error or "")
        for r in errored
    )
    report = aggregate(list(store), benchmark.manifest)["primary"]
    assert report["accuracy"]["rate"] == 1.0  # errors are not scored as wrong ...
    assert report["strict_accuracy"]["rate"] == pytest.approx(
        summary.ok / 30
    )  # ... except in strict
    retry = _offline()
    summary = run_benchmark(benchmark, retry, _config(), store)
    assert retry.total_calls == len(errored) and summary.completion_rate == 1.0


def test_throttled_items_succeed_after_retry(make_benchmark: MakeBenchmark, tmp_path: Path) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(5)]))
    store = ResultStore(tmp_path / "out")
    summary = run_benchmark(benchmark, _offline(throttle_rate=1.0), _config(), store)
    assert summary.ok == 5
    assert {r.attempts for r in store} == {2}


class _BusyProvider(OfflineProvider):
    """An offline model whose server takes `capacity` calls at a time and throttles the rest
    (HTTP 429 with Retry-After 0), like a provider quota the runner is not told."""

    def __init__(self, capacity: int) -> None:
        super().__init__("tiny", "r1", OfflineBehaviour())
        self.capacity = capacity
        self.in_flight = self.served = self.throttles = 0
        self._lock = threading.Lock()

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        with self._lock:
            if self.in_flight >= self.capacity:
                self.throttles += 1
                raise ThrottledError("offline: busy (HTTP 429)", retry_after_s=0.0)
            self.in_flight += 1
        try:
            time.sleep(0.005)
            return super().generate(prompt, params, oracle)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.served += 1


def test_a_provider_busy_above_an_untold_limit_loses_no_item_and_serves_each_once(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    # Before: 8 threads at a server taking 2 ran out of their 3 attempts (errored items).
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(24)]))
    store = ResultStore(tmp_path / "out")
    provider = _BusyProvider(capacity=2)
    summary = run_benchmark(benchmark, provider, _config(concurrency=8), store)
    assert (summary.ok, summary.errored) == (24, 0)
    assert provider.served == 24 and len({r.cache_key for r in store}) == 24
    assert provider.throttles > 0  # the limit was found, not given
    assert all(r.attempts >= 1 for r in store)


def test_min_concurrency_above_concurrency_is_refused() -> None:
    with pytest.raises(RunConfigError, match=r"min_concurrency = 5: must be >= 1 and <= conc"):
        RunConfig(run_id="r", concurrency=4, min_concurrency=5)


def test_unparseable_letters_are_counted_separately(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(40)])
    summary, report = run_and_report(
        root, _offline(unparseable_rate=0.25), _config(), tmp_path / "out"
    )
    primary = report["primary"]
    assert summary.unparseable == primary["n_unparseable"] > 0
    assert primary["accuracy"]["n"] == 40 - summary.unparseable
    assert summary.completion_rate == 1.0


def test_loglik_mode_scores_with_logliks_and_is_recorded(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(6)])
    _, report = run_and_report(root, _offline(), _config(mode="loglik"), tmp_path / "out")
    assert report["mode"] == "loglik" and report["primary"]["accuracy"]["rate"] == 1.0


def test_loglik_mode_refuses_providers_without_loglik(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(0)]))
    provider = OpenAICompatibleProvider("http://127.0.0.1:9", "chat-only", loglik_supported=False)
    with pytest.raises(
        RunConfigError, match="mode = 'loglik': needs log-likelihoods but provider 'openai'"
    ):
        run_benchmark(benchmark, provider, _config(mode="loglik"), ResultStore(tmp_path))


def test_aggregating_mixed_modes_is_an_error(make_benchmark: MakeBenchmark, tmp_path: Path) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(3)]))
    store = ResultStore(tmp_path / "out")
    run_benchmark(benchmark, _offline(), _config(mode="letter"), store)
    run_benchmark(benchmark, _offline(), _config(mode="loglik"), store)
    with pytest.raises(AggregationError, match=r"'mode' takes 2 values \['letter', 'loglik'\]"):
        aggregate(list(store), benchmark.manifest)


def test_qa_is_judged_and_judge_garbage_is_unparseable_not_incorrect(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.QA, [qa_row(i) for i in range(30)])
    judge = Judge(_offline(unparseable_rate=0.3), retry=RetryPolicy(sleep=lambda _: None))
    _, report = run_and_report(root, _offline(correct_rate=0.5), _config(), tmp_path / "out", judge)
    records = [
        json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    ]
    garbage = [r for r in records if r["status"] == "unparseable"]
    assert garbage and all(r["correct"] is None and r["judge"]["verdict"] is None for r in garbage)
    judged = [r for r in records if r["status"] == "ok"]
    assert all(r["judge"]["prompt_version"] == "judge-reference-guided@2" for r in judged)
    assert all(r["judge"]["raw_reply"].startswith('{"verdict"') for r in judged)
    assert report["primary_metric"] == "judge_pass_rate"
    assert 0 < report["primary"]["accuracy"]["rate"] < 1
    # the headline counts the unparseable verdicts as failures, and shows how many there were
    passed = sum(1 for r in judged if r["correct"])
    pass_rate = report["primary"]["judge_pass_rate"]
    assert (pass_rate["rate"], pass_rate["n_unparseable_verdicts"]) == (
        pytest.approx(passed / (len(judged) + len(garbage))),
        len(garbage),
    )
    assert report["primary"]["primary_value"]["value"] == pass_rate["rate"]


def test_qa_without_a_judge_is_refused(make_benchmark: MakeBenchmark, tmp_path: Path) -> None:
    benchmark = load_benchmark(make_benchmark(Task.QA, [qa_row(0)]))
    with pytest.raises(RunConfigError, match="task 'qa' is scored by a judge"):
        run_benchmark(benchmark, _offline(), _config(), ResultStore(tmp_path))


def test_classification_reports_macro_f1_and_quarantine(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    rows = [cls_row(i, LABELS[i % 3]) for i in range(30)] + [
        {"id": "bad", "text": "x", "label": "refund"}
    ]
    root = make_benchmark(Task.CLASSIFICATION, rows, labels=LABELS)
    summary, report = run_and_report(
        root, _offline(correct_rate=0.7, unparseable_rate=0.1), _config(), tmp_path / "out"
    )
    assert summary.quarantined_rows == 1
    quarantine = (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()
    assert json.loads(quarantine[0])["line"] == 31
    block = report["primary"]["classification"]
    assert 0 < block["macro_f1"] < 1 and set(block["per_class"]) == set(LABELS)
    assert sum(map(sum, block["confusion_matrix"]["matrix"])) == report["primary"]["n_scored"]


def test_summarization_reports_rouge_l(make_benchmark: MakeBenchmark, tmp_path: Path) -> None:
    root = make_benchmark(Task.SUMMARIZATION, [sum_row(i) for i in range(6)])
    _, report = run_and_report(root, _offline(correct_rate=0.5), _config(), tmp_path / "out")
    rouge = report["primary"]["rouge_l"]
    assert rouge["n"] == 6 and 0 < rouge["mean"] < 1
    assert report["primary"]["primary_value"]["value"] == rouge["mean"]


def test_format_spread_reports_min_max_over_prompt_variants(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    variant = PromptSpec(
        id="mcq-letter-terse", version="1", template="{question}\n{choices}\nLetter:"
    )
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(20)], spread=[variant])
    _, report = run_and_report(
        root, _offline(correct_rate=0.6), _config(include_format_spread=True), tmp_path / "out"
    )
    spread = report["format_spread"]
    assert spread["n_prompts"] == 2 and set(spread["per_prompt"]) == {
        "mcq-letter",
        "mcq-letter-terse",
    }
    assert spread["min"] == min(spread["per_prompt"].values()) and spread["max"] == max(
        spread["per_prompt"].values()
    )
    assert report["primary_prompt"] == "mcq-letter"


def test_aggregate_dir_counts_missing_items(make_benchmark: MakeBenchmark, tmp_path: Path) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(4)])
    out = tmp_path / "out"
    run_and_report(root, _offline(), _config(), out)
    next((out / "items").glob("*.json")).unlink()
    report = aggregate_dir(out)
    assert (report["primary"]["n_missing"], report["primary"]["completion_rate"]) == (1, 0.75)


def test_records_round_trip_through_the_schema(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(0)])
    run_and_report(root, _offline(), _config(), tmp_path / "out")
    line = (tmp_path / "out" / "results.jsonl").read_text().splitlines()[0]
    assert ItemResult.model_validate_json(line).item_id == "m0"


def test_editing_an_item_reruns_it_and_the_report_uses_the_new_content(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    rows = [mcq_row(i) for i in range(4)]
    root = make_benchmark(Task.MCQ, rows)
    out = tmp_path / "out"
    run_and_report(root, _offline(), _config(), out)
    rows[0] = {**rows[0], "answer": "value 0, corrected"}  # a gold answer fixed by its author
    write_jsonl(root / "items.jsonl", rows)
    build_benchmark(root)
    again = _offline()
    _, report = run_and_report(root, again, _config(), out)
    assert again.total_calls == 1  # the edited item only; before, 0 calls and the old record
    benchmark = load_benchmark(root)
    edited = benchmark.items[0]
    key = unit_key(
        benchmark, edited, benchmark.manifest.prompt, again, DecodingParams(), "letter", None
    )
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 4  # the stale record of m0 stays in items/ but is not reported
    assert next(r for r in results if r["item_id"] == "m0")["cache_key"] == key
    assert report["primary"]["completion_rate"] == 1.0


def test_deleted_items_leave_the_report(make_benchmark: MakeBenchmark, tmp_path: Path) -> None:
    rows = [mcq_row(i) for i in range(10)]
    root = make_benchmark(Task.MCQ, rows)
    out = tmp_path / "out"
    run_and_report(root, _offline(), _config(), out)
    write_jsonl(root / "items.jsonl", rows[:5])
    build_benchmark(root)
    _, report = run_and_report(root, _offline(), _config(), out)
    primary = report["primary"]
    assert (primary["n_results"], primary["completion_rate"]) == (5, 1.0)


def test_strict_accuracy_and_completion_count_the_items_expected(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(10)]))
    store = ResultStore(tmp_path / "out")
    run_benchmark(benchmark, _offline(), _config(), store)
    primary = aggregate(list(store), benchmark.manifest, expected_per_prompt=100)["primary"]
    assert primary["accuracy"]["rate"] == 1.0  # of the 10 scored
    assert primary["strict_accuracy"]["rate"] == pytest.approx(0.1)  # of the 100 expected
    assert (primary["n_missing"], primary["completion_rate"]) == (90, 0.1)


def test_more_records_than_expected_items_is_an_error(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(4)]))
    store = ResultStore(tmp_path / "out")
    run_benchmark(benchmark, _offline(), _config(), store)
    with pytest.raises(AggregationError, match=r"4 records .* 3 items expected"):
        aggregate(list(store), benchmark.manifest, expected_per_prompt=3)


class _BrokenProvider(OfflineProvider):
    """A provider whose client code raises something that is not a ProviderError."""

    def generate(self, prompt: str, params: DecodingParams, oracle: Any = None) -> Any:
        raise TypeError("int() argument must be a string, a bytes-like object or a real number")


def test_an_unexpected_provider_exception_is_an_errored_item_not_an_aborted_run(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(3)])
    summary, report = run_and_report(root, _BrokenProvider("tiny", "r1"), _config(), tmp_path / "o")
    assert (summary.errored, report["primary"]["n_errored"]) == (3, 3)
    record = json.loads((tmp_path / "o" / "results.jsonl").read_text().splitlines()[0])
    assert record["error"] == (
        "TransientError after 3 attempt(s): unexpected TypeError: int() argument must be a "
        "string, a bytes-like object or a real number"
    )


def test_a_server_answering_null_token_counts_is_scored(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        body = {"choices": [{"message": {"content": "A"}}], "usage": {"prompt_tokens": None}}
        return httpx.Response(200, json=body)

    provider = OpenAICompatibleProvider("http://server", "m")
    provider._client = httpx.Client(base_url="http://server", transport=httpx.MockTransport(reply))
    root = make_benchmark(Task.MCQ, [mcq_row(0)])
    summary, _ = run_and_report(root, provider, _config(), tmp_path / "o")
    record = json.loads((tmp_path / "o" / "results.jsonl").read_text().splitlines()[0])
    assert (summary.ok + summary.unparseable, record["usage"]) == (
        1,
        {"input_tokens": 0, "output_tokens": 0},
    )
