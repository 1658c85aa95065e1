"""The commands behind the CLI, as plain functions over paths and objects (tested directly).

Run directory layout (also what the TypeScript fan-out writes to S3):
  run.json          run config, benchmark manifest and run summary
  items/<key>.json  one result record per (item, prompt), named by cache key
  results.jsonl     all records, sorted by (prompt_id, item_id)
  quarantine.jsonl  benchmark rows rejected by the loader
  report.json       aggregated metrics
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dapt_eval.aggregate import AggregationError, aggregate
from dapt_eval.benchmark import (
    MANIFEST_FILE,
    QUARANTINE_FILE,
    Benchmark,
    Manifest,
    Quarantined,
    load_benchmark,
    load_rows,
    write_manifest,
)
from dapt_eval.compare import RunView, calibration_from_report, compare, render_html
from dapt_eval.hashing import sha256_file
from dapt_eval.judge import DEFAULT_KAPPA_THRESHOLD, Judge, calibrate
from dapt_eval.mcq import (
    DEFAULT_PARAPHRASE_JACCARD,
    MCQ_GENERATION_PROMPT,
    GenerationRejection,
    generate_distractors,
    length_balance,
)
from dapt_eval.prompts import DEFAULT_PROMPTS
from dapt_eval.providers.base import Oracle, Provider
from dapt_eval.providers.retry import RetryPolicy
from dapt_eval.results import ItemResult, ResultStore
from dapt_eval.runner import (
    RunConfig,
    RunSummary,
    resolve_mode,
    run_benchmark,
    sample_items,
    unit_key,
)
from dapt_eval.schemas import JudgeCalibrationItem, McqItem, QaItem, Task

RUN_FILE = "run.json"
REPORT_FILE = "report.json"
RESULTS_FILE = "results.jsonl"


def run_and_report(
    benchmark_dir: Path,
    provider: Provider,
    config: RunConfig,
    out_dir: Path,
    judge: Judge | None = None,
    progress: Callable[[ItemResult], None] | None = None,
) -> tuple[RunSummary, dict[str, Any]]:
    """Load, run (resuming), record the run, then aggregate. Returns the summary and report."""
    benchmark = load_benchmark(benchmark_dir)
    store = ResultStore(out_dir)
    write_quarantine(out_dir / QUARANTINE_FILE, benchmark.load.quarantined)
    summary = run_benchmark(benchmark, provider, config, store, judge, progress)
    write_json(out_dir / RUN_FILE, run_record(benchmark, provider, config, judge, summary))
    return summary, aggregate_dir(out_dir)


def run_record(
    benchmark: Benchmark,
    provider: Provider,
    config: RunConfig,
    judge: Judge | None,
    summary: RunSummary,
) -> dict[str, Any]:
    """`run.json`: enough to aggregate and compare later without the benchmark directory.

    `n_items` is what the run evaluates: the sample when the run is sampled (`sample` says of
    how many items, with which seed). `cache_keys` are the run's units for the benchmark's
    items as they are now: what `aggregate_dir` reports on."""
    manifest = benchmark.manifest
    mode = resolve_mode(
        manifest.task, config.mode, provider, judge, manifest.cloze_prompt is not None
    )
    chosen = sample_items(benchmark.items, config.sample, config.sample_seed)
    prompts = manifest.prompts_for(mode, config.include_format_spread)
    unit_judge = judge if manifest.task is Task.QA and mode == "judge" else None
    keys = [
        unit_key(benchmark, item, prompt, provider, config.decoding, mode, unit_judge)
        for prompt in prompts
        for item in chosen
    ]
    return {
        "run_id": config.run_id,
        "manifest": manifest.model_dump(mode="json"),
        "model": provider.identity(),
        "decoding": config.decoding.cache_dict(),
        "mode": mode,
        "include_format_spread": config.include_format_spread,
        "judge": judge.describe() if judge and mode == "judge" else None,
        "n_items": len(chosen),
        "sample": (
            {"n": len(chosen), "of": len(benchmark.items), "seed": config.sample_seed}
            if len(chosen) < len(benchmark.items)
            else None
        ),
        "item_ids": [item.id for item in chosen],
        "prompt_ids": [p.id for p in prompts],
        "cache_keys": keys,
        "summary": summary.to_json(),
    }


def aggregate_dir(out_dir: Path) -> dict[str, Any]:
    """Aggregate a run directory into report.json and results.jsonl."""
    record = read_json(out_dir / RUN_FILE)
    manifest = Manifest.model_validate(record["manifest"])
    store = ResultStore(out_dir)
    # Only this run's units: records an earlier, larger or different run left here, or records
    # of an item since edited (its content is in the key) or deleted, are not counted.
    # run.json written before cache_keys existed: filtered by item and prompt ids, as before.
    keys = set(record["cache_keys"]) if "cache_keys" in record else None
    items = set(record["item_ids"]) if "item_ids" in record else None
    prompts = set(record["prompt_ids"]) if "prompt_ids" in record else None
    results = sorted(
        (
            r
            for r in store
            if (keys is None or r.cache_key in keys)
            and (items is None or r.item_id in items)
            and (prompts is None or r.prompt_id in prompts)
        ),
        key=lambda r: (r.prompt_id, r.item_id),
    )
    report = aggregate(results, manifest, expected_per_prompt=int(record["n_items"]))
    report["run_id"] = record["run_id"]
    report["sample"] = record.get("sample")
    report["quarantined_rows"] = (record.get("summary") or {}).get("quarantined_rows")
    store.write_jsonl(out_dir / RESULTS_FILE, results)
    write_json(out_dir / REPORT_FILE, report)
    return report


def compare_dirs(
    run_dirs: list[Path], out_dir: Path, judge_calibration: Path | None = None
) -> dict[str, Any]:
    """Compare runs (first = baseline) into compare.json and compare.html.

    `judge_calibration` is the judge's `calibrate-judge` report: judged runs show whether it
    calibrates their judge, and its agreement and injection-resistance figures.
    """
    calibration = None if judge_calibration is None else read_json(judge_calibration)
    views = []
    for run_dir in run_dirs:
        if not (run_dir / REPORT_FILE).is_file():
            raise AggregationError(
                f"{run_dir} has no {REPORT_FILE}: run `dapt-eval aggregate` first"
            )
        report = read_json(run_dir / REPORT_FILE)
        report["judge_calibration"] = calibration_from_report(calibration, report.get("judge"))
        model = report["model"]
        label = f"{model['provider']}:{model['model_id']}@{model['revision']}"
        views.append(RunView(label, report, list(ResultStore(run_dir))))
    comparison = compare(views)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "compare.json", comparison)
    (out_dir / "compare.html").write_text(render_html(comparison), encoding="utf-8")
    return comparison


def calibrate_file(
    items_path: Path,
    judge: Judge,
    out_path: Path,
    kappa_threshold: float = DEFAULT_KAPPA_THRESHOLD,
) -> dict[str, Any]:
    """Calibrate a judge on a human-labelled JSONL and write the JSON report."""
    load = load_rows(items_path, JudgeCalibrationItem)
    report = calibrate(load.rows, judge, kappa_threshold)
    report["calibration_set"] = {
        "path": str(items_path),
        "sha256": sha256_file(items_path),
        "n_quarantined": len(load.quarantined),
        "quarantined": [q.to_json() for q in load.quarantined],
    }
    write_json(out_path, report)
    return report


def generate_mcq(
    qa_dir: Path,
    teacher: Provider,
    out_dir: Path,
    version: str,
    threshold: float = DEFAULT_PARAPHRASE_JACCARD,
    retry: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Turn a QA benchmark into an MCQ benchmark directory (manifest hashed, ready to run)."""
    qa = load_benchmark(qa_dir)
    if qa.manifest.task is not Task.QA:
        raise ValueError(
            f"{qa_dir / MANIFEST_FILE}: task is '{qa.manifest.task.value}', mcq-generate needs 'qa'"
        )
    accepted: list[McqItem] = []
    rejected: list[GenerationRejection] = []
    for item in qa.items:
        assert isinstance(item, QaItem)
        outcome = generate_distractors(
            item, teacher, retry=retry, threshold=threshold, oracle=_teacher_oracle(item)
        )
        (accepted if isinstance(outcome, McqItem) else rejected).append(outcome)  # type: ignore[arg-type]
    out_dir.mkdir(parents=True, exist_ok=True)
    items_path = out_dir / "items.jsonl"
    items_path.write_text("".join(i.model_dump_json() + "\n" for i in accepted), encoding="utf-8")
    (out_dir / "generation_quarantine.jsonl").write_text(
        "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rejected),
        encoding="utf-8",
    )
    manifest = Manifest(
        name=f"{qa.manifest.name}-mcq",
        version=version,
        task=Task.MCQ,
        prompt=DEFAULT_PROMPTS[Task.MCQ],
        items_sha256=sha256_file(items_path),
        created_by=(
            f"dapt-eval mcq-generate ({MCQ_GENERATION_PROMPT.id}@{MCQ_GENERATION_PROMPT.version})"
        ),
        notes=f"from {qa.manifest.name}@{qa.manifest.version} with teacher {teacher.identity()}",
    )
    write_manifest(out_dir, manifest)
    report = {
        "source": f"{qa.manifest.name}@{qa.manifest.version}",
        "teacher": teacher.identity(),
        "prompt": f"{MCQ_GENERATION_PROMPT.id}@{MCQ_GENERATION_PROMPT.version}",
        "paraphrase_jaccard_threshold": threshold,
        "n_source": len(qa.items),
        "n_accepted": len(accepted),
        "n_rejected": len(rejected),
        "length_balance": length_balance(accepted),
    }
    write_json(out_dir / "generation_report.json", report)
    return report


def _teacher_oracle(item: QaItem) -> Oracle:
    """Offline-teacher oracle: well-formed distractors (real teachers ignore it)."""
    good = {
        "near_miss": f"Not quite: {item.reference_answer[::-1]}",
        "wrong": ["An unrelated answer", "Another unrelated answer"],
    }
    return Oracle(json.dumps(good), ('{"near_miss": "x"}',))


def write_quarantine(path: Path, rows: list[Quarantined]) -> None:
    """`quarantine.jsonl`: one {line, reason, raw} per rejected row (empty file if none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(q.to_json(), ensure_ascii=False) + "\n" for q in rows), encoding="utf-8"
    )


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON with a trailing newline (reports are read by people and diffed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(data, indent=2, ensure_ascii=False, default=_default) + "\n", encoding="utf-8"
    )


def read_json(path: Path) -> Any:
    """Read a JSON file, naming it when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return json.loads(path.read_text(encoding="utf-8"))


def _default(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, ItemResult):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")
