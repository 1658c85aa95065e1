"""S3 result store on moto: round trip, conditional writes, the runner writing through it."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import BUCKET, MakeBenchmark, mcq_row
from dapt_eval.benchmark import load_benchmark
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.providers.retry import RetryPolicy
from dapt_eval.results import ItemResult, ModelRef, Status
from dapt_eval.runner import RunConfig, run_benchmark
from dapt_eval.s3store import InvalidRecordError, S3ResultStore
from dapt_eval.schemas import Task


def record(key: str, status: Status = "ok", error: str | None = None) -> ItemResult:
    return ItemResult(
        run_id="r1",
        benchmark="bench",
        benchmark_version="1.0.0",
        item_id="m1",
        task="mcq",
        model=ModelRef(provider="offline", model_id="tiny", revision="1"),
        decoding={"temperature": 0, "max_tokens": 256, "top_p": 1, "seed": 0, "stop": []},
        prompt_id="mcq-letter",
        prompt_version="1",
        mode="letter",
        status=status,
        prediction="A" if status == "ok" else None,
        correct=True if status == "ok" else None,
        score=None,
        judge=None,
        error=error,
        cache_key=key,
        latency_ms=1.5,
    )


KEY = "a" * 64


def test_s3_store_round_trip_and_missing_key(s3: Any) -> None:
    store = S3ResultStore(BUCKET, client=s3)
    assert store.get(KEY) is None and not store.is_finished(KEY)
    assert store.write(record(KEY)) == "created"
    assert store.get(KEY) == record(KEY) and store.is_finished(KEY)
    body = s3.get_object(Bucket=BUCKET, Key=f"results/items/{KEY}.json")["Body"].read()
    assert body.decode().count("\n") == 1  # one line of JSON, like the local store


def test_s3_store_never_replaces_a_finished_record(s3: Any) -> None:
    store = S3ResultStore(BUCKET, client=s3)
    store.write(record(KEY, "ok"))
    assert store.write(record(KEY, "errored", error="TransientError after 5 attempt(s)")) == (
        "kept_finished"
    )
    assert store.get(KEY) == record(KEY, "ok")


def test_s3_store_replaces_an_errored_record(s3: Any) -> None:
    store = S3ResultStore(BUCKET, client=s3)
    store.write(record(KEY, "errored", error="first"))
    assert not store.is_finished(KEY)
    assert store.write(record(KEY, "errored", error="second")) == "replaced"
    assert store.get(KEY) == record(KEY, "errored", error="second")
    assert store.write(record(KEY, "ok")) == "replaced"
    assert store.is_finished(KEY)


def test_s3_store_create_is_conditional(s3: Any) -> None:
    """The first write uses If-None-Match: * (moto enforces it like S3)."""
    s3.put_object(Bucket=BUCKET, Key=f"results/items/{KEY}.json", Body=b"x")
    with pytest.raises(s3.exceptions.ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=BUCKET, Key=f"results/items/{KEY}.json", Body=b"y", IfNoneMatch="*")


def test_s3_store_reports_and_replaces_an_invalid_object(s3: Any) -> None:
    store = S3ResultStore(BUCKET, client=s3)
    s3.put_object(Bucket=BUCKET, Key=f"results/items/{KEY}.json", Body=b'{"status": "ok"}')
    with pytest.raises(InvalidRecordError, match=r"s3://eval-bucket/results/items/a+\.json .*"):
        store.get(KEY)
    assert store.fetch(KEY).problem is not None and not store.fetch(KEY).missing
    assert store.write(record(KEY)) == "replaced"  # a corrupt record is not finished
    assert store.get(KEY) == record(KEY)


def test_s3_store_rejects_a_record_under_the_wrong_key(s3: Any) -> None:
    store = S3ResultStore(BUCKET, client=s3)
    s3.put_object(
        Bucket=BUCKET, Key=f"results/items/{KEY}.json", Body=record("b" * 64).model_dump_json()
    )
    assert "record cache_key 'bbbb" in str(store.fetch(KEY).problem)


def test_fetch_many_keeps_the_order_given(s3: Any) -> None:
    store = S3ResultStore(BUCKET, client=s3, concurrency=4)
    keys = [f"{i:064x}" for i in range(12)]
    for key in keys[::2]:
        store.write(record(key))
    fetched = list(store.fetch_many(keys))
    assert [f.cache_key for f in fetched] == keys
    assert [f.missing for f in fetched] == [i % 2 == 1 for i in range(12)]


def test_runner_writes_through_the_s3_store_and_resumes(
    s3: Any, make_benchmark: MakeBenchmark
) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(6)]))
    store = S3ResultStore(BUCKET, client=s3)
    retry = RetryPolicy(max_attempts=1, sleep=lambda _: None)
    provider = OfflineProvider("tiny", "1", OfflineBehaviour(correct_rate=0.5))
    first = run_benchmark(benchmark, provider, RunConfig(run_id="r1", retry=retry), store)
    calls = provider.total_calls
    second = run_benchmark(benchmark, provider, RunConfig(run_id="r2", retry=retry), store)
    assert first.ok == 6 and second.skipped == 6 and provider.total_calls == calls
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="results/items/")["KeyCount"]
    assert listed == 6
