"""The aggregate Lambda on moto: completion with missing records, errored counted apart,
mixed modes refused, Athena rows typed by the schema file, reruns byte-identical."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from conftest import BUCKET, MakeBenchmark, cls_row, mcq_row
from dapt_eval.aggregate import AggregationError, aggregate
from dapt_eval.athena import athena_columns
from dapt_eval.aws_lambda import aggregate_handler
from dapt_eval.benchmark import Benchmark, load_benchmark
from dapt_eval.compare import calibration_from_gate
from dapt_eval.fanout import PlanError
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.providers.retry import RetryPolicy
from dapt_eval.runner import RunConfig, run_benchmark, unit_key
from dapt_eval.s3store import S3ResultStore
from dapt_eval.schemas import Task

RUN_ID = "run-1"
NO_RETRY = RetryPolicy(max_attempts=1, sleep=lambda _: None)


@pytest.fixture
def env(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("EVAL_BUCKET", BUCKET)
    return s3


def run_model(
    s3: Any, benchmark: Benchmark, model: str, behaviour: OfflineBehaviour, mode: str = "letter"
) -> list[str]:
    """Write one model's records to S3, as the workers would; returns the expected keys."""
    provider = OfflineProvider(model, "1", behaviour)
    config = RunConfig(run_id=RUN_ID, mode=mode, retry=NO_RETRY)
    run_benchmark(benchmark, provider, config, S3ResultStore(BUCKET, client=s3))
    return [
        unit_key(benchmark, item, benchmark.manifest.prompt, provider, config.decoding, mode, None)
        for item in benchmark.items
    ]


def write_plan(s3: Any, benchmark: Benchmark, keys: list[str], **extra: Any) -> dict[str, Any]:
    manifest = benchmark.manifest
    plan = {
        "run_id": RUN_ID,
        "benchmark": {
            "name": manifest.name,
            "version": manifest.version,
            "task": manifest.task.value,
            "labels": manifest.labels,
            "n_items": len(benchmark.items),
        },
        "cache_keys": keys,
        "created_at": "2024-01-01T00:00:00Z",  # extra keys are accepted
        **extra,
    }
    s3.put_object(Bucket=BUCKET, Key=f"runs/{RUN_ID}/run.json", Body=json.dumps(plan).encode())
    return plan


def read(s3: Any, key: str) -> str:
    return str(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())


def test_completion_counts_missing_and_errored_apart(
    env: Any, make_benchmark: MakeBenchmark
) -> None:
    # GIVEN two models on 20 MCQ items, some errored, and 3 records never written
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(20)]))
    base = run_model(env, benchmark, "base", OfflineBehaviour(correct_rate=0.5, error_rate=0.2))
    dapt = run_model(env, benchmark, "dapt", OfflineBehaviour(correct_rate=0.9))
    for key in dapt[:3]:
        env.delete_object(Bucket=BUCKET, Key=f"results/items/{key}.json")
    models = [
        {"provider": "offline", "model_id": m, "revision": "1"} for m in ("base", "dapt", "ghost")
    ]
    write_plan(env, benchmark, base + dapt, models=models)

    # WHEN the Step Functions task invokes the handler (with extra state keys)
    out = aggregate_handler({"run_id": RUN_ID, "Execution": {"Id": "x"}}, None)

    # THEN missing records lower completion and are listed; errored ones are counted apart
    counts = out["counts"]
    assert counts["expected"] == 40 and counts["missing"] == 3 and counts["found"] == 37
    assert counts["errored"] > 0 and counts["ok"] + counts["unparseable"] == counts["finished"]
    assert out["completion_rate"] == pytest.approx(counts["finished"] / 40)
    report = json.loads(read(env, out["report_key"]))
    assert sorted(report["missing_cache_keys"]) == sorted(dapt[:3])
    assert report["models_without_records"] == ["offline:ghost@1"]
    assert [m["label"] for m in report["models"]] == ["offline:base@1", "offline:dapt@1"]
    dapt_primary = report["models"][1]["report"]["primary"]
    assert dapt_primary["n_missing"] == 3 and dapt_primary["n_expected"] == 20
    base_primary = report["models"][0]["report"]["primary"]
    assert base_primary["n_errored"] == counts["errored"]
    pair = report["comparison"]["paired"][0]
    assert pair["a"] == "offline:base@1" and pair["b"] == "offline:dapt@1"
    page = read(env, out["html_key"])
    assert "<svg" in page and "offline:dapt@1" in page and "<script" not in page
    assert "missing" in page


def test_model_report_equals_the_cli_aggregate(env: Any, make_benchmark: MakeBenchmark) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(8)]))
    keys = run_model(env, benchmark, "solo", OfflineBehaviour(correct_rate=0.6, error_rate=0.1))
    # the Plan Lambda's gate record (its fields as lambda/shared/calibration.ts writes them)
    gate = {
        "calibrated": True,
        "report_key": "calibration/judge.json",
        "cohen_kappa": 0.8,
        "kappa_threshold": 0.6,
        "injection_resistance": 0.9,
        "problems": [],
    }
    write_plan(env, benchmark, keys, judge_calibration=gate)
    out = aggregate_handler({"run_id": RUN_ID}, None)
    report = json.loads(read(env, out["report_key"]))
    store = S3ResultStore(BUCKET, client=env)
    records = sorted(
        (r for r in (store.get(k) for k in keys) if r is not None),
        key=lambda r: (r.prompt_id, r.item_id),
    )
    expected = aggregate(records, benchmark.manifest, expected_per_prompt=8)
    expected["run_id"] = RUN_ID
    expected["quarantined_rows"] = None  # the plan written here does not say
    expected["judge_calibration"] = calibration_from_gate(gate)
    assert report["models"][0]["report"] == json.loads(json.dumps(expected))
    assert report["comparison"]["paired"] == []  # one model: the table without pairs
    lines = read(env, out["results_key"]).splitlines()
    assert [json.loads(line)["item_id"] for line in lines] == [r.item_id for r in records]


def test_mixed_modes_across_models_are_refused(env: Any, make_benchmark: MakeBenchmark) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(4)]))
    a = run_model(env, benchmark, "a", OfflineBehaviour(), "letter")
    b = run_model(env, benchmark, "b", OfflineBehaviour(), "loglik")
    write_plan(env, benchmark, a + b)
    with pytest.raises(
        AggregationError, match=r"'mode' differs across runs: \['letter', 'loglik'\]"
    ):
        aggregate_handler({"run_id": RUN_ID}, None)
    assert "Contents" not in env.list_objects_v2(Bucket=BUCKET, Prefix="athena/")  # nothing


def test_records_of_another_benchmark_are_refused(env: Any, make_benchmark: MakeBenchmark) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(3)]))
    keys = run_model(env, benchmark, "a", OfflineBehaviour())
    plan = write_plan(env, benchmark, keys)
    plan["benchmark"]["version"] = "2.0.0"
    env.put_object(Bucket=BUCKET, Key=f"runs/{RUN_ID}/run.json", Body=json.dumps(plan).encode())
    with pytest.raises(AggregationError, match=r"bench@2\.0\.0 .* records are for \['bench@1"):
        aggregate_handler({"run_id": RUN_ID}, None)


def test_athena_rows_match_the_schema_file(env: Any, make_benchmark: MakeBenchmark) -> None:
    labels = ["billing", "domains", "editor"]
    rows = [cls_row(i, labels[i % 3]) for i in range(9)]
    benchmark = load_benchmark(make_benchmark(Task.CLASSIFICATION, rows, labels=labels))
    keys = run_model(
        env, benchmark, "a", OfflineBehaviour(correct_rate=0.7, error_rate=0.2), "label"
    )
    write_plan(env, benchmark, keys)
    out = aggregate_handler({"run_id": RUN_ID}, None)

    schema_text = resources.files("dapt_eval").joinpath("athena_schema.json").read_text()
    schema = json.loads(schema_text)
    lines = read(env, f"athena/results/run_id={RUN_ID}/results.jsonl").splitlines()
    assert out["athena_key"] == f"athena/results/run_id={RUN_ID}/results.jsonl"
    assert len(lines) == 9
    python_types = {"string": str, "boolean": bool, "double": float, "bigint": int}
    for line in lines:
        row = json.loads(line)
        assert list(row) == [c["name"] for c in schema]  # every column, schema order, no run_id
        for column in schema:
            value = row[column["name"]]
            assert value is None or type(value) is python_types[column["type"]], column
    statuses = {json.loads(line)["status"] for line in lines}
    assert "errored" in statuses
    assert [c.name for c in athena_columns()] == [c["name"] for c in schema]


def test_rerun_writes_identical_objects(env: Any, make_benchmark: MakeBenchmark) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(6)]))
    a = run_model(env, benchmark, "a", OfflineBehaviour(correct_rate=0.5))
    b = run_model(env, benchmark, "b", OfflineBehaviour(correct_rate=0.8))
    write_plan(env, benchmark, a + b)
    first = aggregate_handler({"run_id": RUN_ID}, None)
    bodies = {k: read(env, first[k]) for k in ("report_key", "html_key", "results_key")}
    second = aggregate_handler({"run_id": RUN_ID}, None)
    assert first == second
    assert {k: read(env, second[k]) for k in bodies} == bodies


def test_plan_errors_name_the_missing_fields(env: Any) -> None:
    env.put_object(
        Bucket=BUCKET,
        Key=f"runs/{RUN_ID}/run.json",
        Body=json.dumps({"run_id": RUN_ID, "benchmark": {"name": "b"}}).encode(),
    )
    with pytest.raises(PlanError) as caught:
        aggregate_handler({"run_id": RUN_ID}, None)
    message = str(caught.value)
    assert f"s3://{BUCKET}/runs/{RUN_ID}/run.json is not a valid run plan" in message
    for field in ("benchmark.version: Field required", "benchmark.task", "cache_keys"):
        assert field in message


def test_missing_plan_and_missing_bucket_variable(
    env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PlanError, match=r"runs/nope/run.json does not exist"):
        aggregate_handler({"run_id": "nope"}, None)
    with pytest.raises(ValueError, match="aggregate event"):
        aggregate_handler({"run_id": "../escape"}, None)
    monkeypatch.delenv("EVAL_BUCKET")
    with pytest.raises(RuntimeError, match="EVAL_BUCKET environment variable is not set"):
        aggregate_handler({"run_id": RUN_ID}, None)


def test_athena_schema_file_is_the_one_the_package_ships() -> None:
    shipped = Path(str(resources.files("dapt_eval").joinpath("athena_schema.json")))
    assert shipped.is_file()
    types = {c["type"] for c in json.loads(shipped.read_text())}
    assert types <= {"string", "boolean", "double", "bigint"}


def test_one_model_with_mixed_modes_is_refused_naming_the_model(
    env: Any, make_benchmark: MakeBenchmark
) -> None:
    benchmark = load_benchmark(make_benchmark(Task.MCQ, [mcq_row(i) for i in range(3)]))
    letter = run_model(env, benchmark, "same", OfflineBehaviour(), "letter")
    loglik = run_model(env, benchmark, "same", OfflineBehaviour(), "loglik")
    write_plan(env, benchmark, letter + loglik)
    with pytest.raises(AggregationError, match=r"model offline:same@1: .*'mode' takes 2 values"):
        aggregate_handler({"run_id": RUN_ID}, None)
