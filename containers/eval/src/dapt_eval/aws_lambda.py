"""The `Aggregate` step of the evaluation fan-out, as a Lambda handler (container image).

Event: `{"run_id": "..."}` (other keys Step Functions passes are ignored).
Environment: `EVAL_BUCKET` (the eval bucket), optional `AGGREGATE_CONCURRENCY` (S3 reads in
flight, default 32).

Reads `runs/<run_id>/run.json` and every expected `results/items/<cache_key>.json`, then writes
`runs/<run_id>/report.json`, `report.html`, `results.jsonl` and the Athena partition
`athena/results/run_id=<run_id>/results.jsonl`. Every output is a deterministic function of
the plan and the records, so a rerun overwrites the same objects with the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dapt_eval.fanout import RUN_ID_PATTERN, Plan, PlanError, RunOutputs, aggregate_run, parse_plan
from dapt_eval.layout import ATHENA_PREFIX, RUNS_PREFIX
from dapt_eval.s3store import DEFAULT_FETCH_CONCURRENCY, S3ResultStore, make_s3_client

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


class AggregateEvent(BaseModel):
    """The state input: only `run_id` is read."""

    model_config = ConfigDict(extra="ignore")

    run_id: str = Field(pattern=RUN_ID_PATTERN)


def aggregate_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Aggregate one run; returns keys of the outputs, the completion rate and the counts."""
    del context  # unused: the work is bounded by the number of keys, not by remaining time
    bucket = _env("EVAL_BUCKET")
    concurrency = int(os.environ.get("AGGREGATE_CONCURRENCY", DEFAULT_FETCH_CONCURRENCY))
    try:
        run_id = AggregateEvent.model_validate(event).run_id
    except ValidationError as err:
        raise ValueError(f"aggregate event {event!r} is invalid: {err.errors()[0]['msg']}") from err
    client = make_s3_client(concurrency)
    return aggregate_s3_run(client, bucket, run_id, concurrency)


def aggregate_s3_run(
    client: Any, bucket: str, run_id: str, concurrency: int = DEFAULT_FETCH_CONCURRENCY
) -> dict[str, Any]:
    """Read the plan and records from S3, aggregate, write the outputs, return the summary."""
    keys = output_keys(run_id)
    plan = read_plan(client, bucket, keys["plan"])
    if plan.run_id != run_id:
        raise PlanError(
            f"s3://{bucket}/{keys['plan']} has run_id '{plan.run_id}', "
            f"the event asked for '{run_id}'"
        )
    store = S3ResultStore(bucket, client=client, concurrency=concurrency)
    fetched = list(store.fetch_many(plan.cache_keys))
    outputs = aggregate_run(plan, fetched)
    write_outputs(client, bucket, keys, outputs)
    log.info("run %s: completion %.3f, counts %s", run_id, outputs.completion_rate, outputs.counts)
    return {
        "run_id": run_id,
        "report_key": keys["report"],
        "html_key": keys["html"],
        "results_key": keys["results"],
        "athena_key": keys["athena"],
        "completion_rate": outputs.completion_rate,
        "counts": outputs.counts,
    }


def output_keys(run_id: str) -> dict[str, str]:
    """Where the plan is read and each output written, for one run."""
    run = f"{RUNS_PREFIX}{run_id}/"
    return {
        "plan": f"{run}run.json",
        "report": f"{run}report.json",
        "html": f"{run}report.html",
        "results": f"{run}results.jsonl",
        "athena": f"{ATHENA_PREFIX}run_id={run_id}/results.jsonl",
    }


def read_plan(client: Any, bucket: str, key: str) -> Plan:
    """`run.json`, validated; a missing object is a PlanError naming it."""
    where = f"s3://{bucket}/{key}"
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise PlanError(f"{where} does not exist: the Plan step writes it first") from err
        raise
    return parse_plan(response["Body"].read().decode("utf-8"), where)


def write_outputs(client: Any, bucket: str, keys: dict[str, str], outputs: RunOutputs) -> None:
    """Write every output; all are computed before the first write, so a failure writes none."""
    report = json.dumps(outputs.report, indent=2, ensure_ascii=False) + "\n"
    bodies = [
        (keys["report"], report, "application/json"),
        (keys["html"], outputs.html, "text/html; charset=utf-8"),
        (keys["results"], outputs.results_jsonl, "application/x-ndjson"),
        (keys["athena"], outputs.athena_jsonl, "application/x-ndjson"),
    ]
    for key, body, content_type in bodies:
        client.put_object(
            Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType=content_type
        )


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise RuntimeError(f"{name} environment variable is not set")
    return value
