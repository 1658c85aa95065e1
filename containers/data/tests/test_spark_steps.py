"""The pipeline with `engine: spark` (`dapt_data.spark_steps`, `dapt_data.spark_dedup`): the
example domain gives the same files, counts and manifest as the single-process engine, and the
EMR entry point runs the batch command on Spark. Opt-in like every Spark test (conftest.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from dapt_data import spark_entry
from dapt_data.config import Engine, SourceConfig, load_config
from dapt_data.pipeline import run_all
from dapt_data.spark_steps import INGEST_ORDER
from pipeline_fixtures import EXAMPLE, english_paragraph, write_public_corpus


def _tickets(folder: Path) -> SourceConfig:
    """A labelled JSONL source with a malformed line and a row without text, spread over two
    files, so ingest has quarantine rows between records."""
    folder.mkdir()
    rng = random.Random(3)
    good = [json.dumps({"text": english_paragraph(rng), "label": "billing"}) for _ in range(3)]
    (folder / "a.jsonl").write_text(
        "\n".join([good[0], "{not json", good[1]]) + "\n", encoding="utf-8"
    )
    (folder / "b.jsonl").write_text(
        "\n".join([json.dumps({"label": "none"}), good[2]]) + "\n", encoding="utf-8"
    )
    return SourceConfig.model_validate(
        {"name": "tickets", "path": str(folder), "format": "jsonl", "label_field": "label"}
    )


def _files(root: Path) -> dict[str, bytes]:
    """Every file under `root` by relative path, with `root` itself written as `<out>`."""
    return {
        str(p.relative_to(root)): p.read_bytes().replace(str(root).encode(), b"<out>")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_the_example_domain_gives_the_same_files_and_manifest_on_spark(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN the example domain's pipeline (decontamination against its six benchmarks,
    # redaction, comprehension, instructions), public text as `make adapt` adds it, and a
    # source with malformed rows
    base = load_config(EXAMPLE / "pipeline.yaml")
    public = SourceConfig.model_validate(
        {
            "name": "public",
            "path": str(write_public_corpus(tmp_path / "public.jsonl")),
            "format": "jsonl",
            "origin": "public",
        }
    )
    sources = [*base.sources, public, _tickets(tmp_path / "tickets")]
    local = base.model_copy(update={"output": str(tmp_path / "local"), "sources": sources})
    on_spark = local.model_copy(update={"output": str(tmp_path / "spark"), "engine": Engine.SPARK})
    # WHEN the whole pipeline runs with each engine
    by_local = run_all(local)
    by_spark = run_all(on_spark)
    # THEN every step counts the same
    as_text = [json.dumps(r.counts, sort_keys=True) for r in by_local]
    assert [json.dumps(r.counts, sort_keys=True) for r in by_spark] == [
        t.replace(str(tmp_path / "local"), str(tmp_path / "spark")) for t in as_text
    ]
    counts = {r.step: r.counts for r in by_local}
    assert counts["raw"]["quarantined"] == {"invalid_json": 1, "missing_field": 1}
    assert counts["decontaminate"]["dropped"]
    assert counts["redact"]["records_redacted"]
    # AND every file is byte for byte the same (the manifest included), except the step
    # markers, which also list Spark's Parquet parts
    local_files, spark_files = _files(tmp_path / "local"), _files(tmp_path / "spark")
    extra = set(spark_files) - set(local_files)
    assert extra
    assert all("/records.parquet/" in name for name in extra)
    assert set(local_files) <= set(spark_files)
    different = [
        name
        for name in local_files
        if local_files[name] != spark_files[name] and not name.endswith("_step.json")
    ]
    assert different == []
    assert any(name.startswith("manifests/") or "manifest" in name for name in local_files)
    # AND each Spark step's Parquet holds its kept records, in order
    for step in ("raw", "clean", "dedup", "decontaminate", "redact"):
        kept = (tmp_path / "local" / step / "records.jsonl").read_text(encoding="utf-8")
        ids = [json.loads(line)["id"] for line in kept.splitlines()]
        parquet = spark.read.parquet(str(tmp_path / "spark" / step / "records.parquet"))
        order = INGEST_ORDER if step == "raw" else ["order"]
        assert [r.id for r in parquet.orderBy(*order).select("id").collect()] == ids, step


def test_the_emr_entry_point_runs_batch_on_spark(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the environment a job run gets, asking for ingest and clean of the example KB
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"output: {tmp_path / 'out'}\n"
        f"sources:\n  - {{name: kb, path: {EXAMPLE / 'kb'}, format: markdown}}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PIPELINE_CONFIG", str(config))
    monkeypatch.setenv("STEPS", "ingest,clean")
    # WHEN the entry point runs as spark-submit would start it
    code = spark_entry.main([])
    # THEN the steps ran on Spark (they wrote Parquet) and the job succeeded
    assert code == 0
    assert list((tmp_path / "out" / "clean" / "records.parquet").glob("part-*"))
    # AND anything but the batch command is refused as a bad invocation
    assert spark_entry.main(["run"]) == 2
