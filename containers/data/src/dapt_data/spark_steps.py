"""The pipeline's corpus-sized steps on Spark: ingest, clean, decontaminate, redact,
comprehension and the manifest's per-source files and token counts (dedup is
`dapt_data.spark_dedup`).

Each step applies the same pure functions as the single-process path, per partition
(`ingest_file` per input file; `clean_records`, `decontaminate_records`, `redact_records` per
partition of records), so a record is treated exactly as `dapt_data.pipeline` treats it; what
differs is only who holds the records: executors, never the driver. Every output row carries its
position in the step's input (`order`), and the JSONL files are written sorted by it, so
`records.jsonl`, `dropped.jsonl` and `quarantine.jsonl` are byte for byte the single-process
files and the later steps' resume keys (sha256 of their input) are the same with either engine.
The kept records are also written as Parquet (`records.parquet/`, the columns of
`spark_dedup.RECORD_SCHEMA` plus the order), the columnar form for readers that split work.

Counts are computed from the whole output with Spark aggregations (never accumulated), so they
equal the single-process counts and a retried task cannot count twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812 (Spark's own convention)
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from dapt_data.comprehension import DomainTerms, MiningConfig, document_words, mine
from dapt_data.config import ComprehensionConfig, IngestConfig, SourceConfig
from dapt_data.ingest import Ingested, ingest_file, listing_problems, oversized
from dapt_data.records import Dropped, Origin, Record
from dapt_data.redact import RedactionConfig, redact_records
from dapt_data.spark_dedup import PARQUET, RECORD_SCHEMA, read_records, write_jsonl
from dapt_data.storage import FileRef, join, list_names, read_bytes, sha256_of

Transform = Callable[[list[Record]], tuple[list[Record], list[Dropped]]]
"""A records -> (kept, dropped) function that treats each record on its own (the filter steps)."""

KEPT, DROPPED, STATS = 0, 1, 2
"""`part` of an output row: a kept record, a dropped (or quarantined) row, a partition's totals."""

ROWS = StructType(
    [
        StructField("order", LongType(), False),
        StructField("part", IntegerType(), False),
        StructField("reason", StringType(), True),
        StructField("line", StringType(), False),
    ]
)
INGESTED = StructType(
    [
        StructField("source_order", IntegerType(), False),
        StructField("file_order", IntegerType(), False),
        StructField("item_order", IntegerType(), False),
        StructField("part", IntegerType(), False),
        StructField("reason", StringType(), True),
        StructField("line", StringType(), False),
    ]
)
INGEST_ORDER = ["source_order", "file_order", "item_order"]
"""The order of ingest's rows: the config's sources, each one's files as listed (its listing
problems first), each file's rows; the Parquet of `raw/` has these columns instead of `order`."""


def _line(row: Any) -> str:
    return json.dumps(row.model_dump(mode="json"), ensure_ascii=False)  # = records.to_jsonl


def run_filter(
    spark: SparkSession, source: str, step_dir: str, transform: Transform
) -> tuple[dict[str, str], dict[str, Any]]:
    """A records -> (kept, dropped) step on the records JSONL `source`: `transform` (which must
    pickle: a `functools.partial` of a module-level function) is broadcast once, with what it
    holds (e.g. the benchmarks' n-gram index), and applied to each partition's records. Writes
    `records.jsonl`, `dropped.jsonl` and `records.parquet/` under `step_dir`; returns each
    output's sha256 by name and the step's counts (`in`, `out`, `dropped` by reason)."""

    shared = spark.sparkContext.broadcast(transform)

    def apply(rows: Iterable[Any]) -> Iterator[tuple[int, int, str | None, str]]:
        batch = list(rows)
        if not batch:
            return
        records = [Record.model_validate_json(row.value) for row in batch]
        kept, dropped = shared.value(records)
        yield from _merge(batch, records, kept, dropped)

    lines = read_records(spark, source)
    out = spark.createDataFrame(lines.rdd.mapPartitions(apply), ROWS, verifySchema=False)
    out = out.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        written = _write_outputs(out, step_dir, "dropped.jsonl")
        counts: dict[str, Any] = {
            "in": lines.count(),
            "out": out.where(F.col("part") == KEPT).count(),
            "dropped": _reasons(out.where(F.col("part") == DROPPED)),
        }
    finally:
        out.unpersist()
        shared.unpersist()
    return written, counts


def _merge(
    batch: list[Any], records: list[Record], kept: list[Record], dropped: list[Dropped]
) -> Iterator[tuple[int, int, str | None, str]]:
    """Each input row's result, by its order: the transform keeps its input order in both lists
    and puts every record in exactly one, so the two lists are read in step with the input."""
    k = d = 0
    for row, record in zip(batch, records, strict=True):
        if k < len(kept) and kept[k].id == record.id:
            yield row.order, KEPT, None, _line(kept[k])
            k += 1
        elif d < len(dropped) and dropped[d].record.id == record.id:
            yield row.order, DROPPED, dropped[d].reason, _line(dropped[d])
            d += 1
        else:
            raise RuntimeError(f"record {record.source_id!r}: the step neither kept nor dropped it")
    if k != len(kept) or d != len(dropped):
        raise RuntimeError("the step returned records it was not given")


def run_redact(
    spark: SparkSession, source: str, step_dir: str, options: RedactionConfig
) -> tuple[dict[str, str], dict[str, Any]]:
    """`redact_records` per partition; no record is dropped. Counts as the single-process step:
    `in`, `out`, `records_redacted`, `spans_by_type` (summed over the partitions' reports)."""

    def apply(rows: Iterable[Any]) -> Iterator[tuple[int, int, str | None, str]]:
        batch = list(rows)
        if not batch:
            return
        records = [Record.model_validate_json(row.value) for row in batch]
        redacted, report = redact_records(records, options)
        for row, record in zip(batch, redacted, strict=True):
            yield row.order, KEPT, None, _line(record)
        yield -1, STATS, None, report.model_dump_json()

    lines = read_records(spark, source)
    out = spark.createDataFrame(lines.rdd.mapPartitions(apply), ROWS, verifySchema=False)
    out = out.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        written = _write_outputs(out, step_dir, None)
        redacted, spans = 0, Counter[str]()
        for row in out.where(F.col("part") == STATS).select("line").collect():
            report = json.loads(row["line"])  # one small row per partition
            redacted += int(report["records_redacted"])
            spans.update(report["spans_by_type"])
        n = out.where(F.col("part") == KEPT).count()
    finally:
        out.unpersist()
    counts = {"in": n, "out": n, "records_redacted": redacted, "spans_by_type": dict(spans)}
    return written, counts


def run_ingest(
    spark: SparkSession,
    sources: list[SourceConfig],
    listings: dict[str, Any],
    limits: IngestConfig,
    step_dir: str,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Every listed file read by one Spark task (`ingest_file`, after the size check that keeps
    an oversized file unread); a source's listing problems are quarantined first, as in the
    single-process step. Writes `records.jsonl`, `quarantine.jsonl` and `records.parquet/`."""
    problems: list[tuple[int, int, int, int, str | None, str]] = []
    tasks: list[tuple[int, int, SourceConfig, FileRef]] = []
    for s, source in enumerate(sources):
        found = listing_problems(source, listings[source.name])
        problems += [
            (s, -1, i, DROPPED, q.reason, _line(q)) for i, q in enumerate(found.quarantined)
        ]
        tasks += [(s, f, source, ref) for f, ref in enumerate(listings[source.name].files)]

    def read(task: tuple[int, int, SourceConfig, FileRef]) -> Iterator[tuple[Any, ...]]:
        s, f, source, ref = task
        result = oversized(source, ref, limits)
        if result is None:
            result = ingest_file(source, ref, read_bytes(ref.uri), limits)
        yield from _ingested(s, f, result)

    context = spark.sparkContext
    files = context.parallelize(tasks, max(1, len(tasks))).flatMap(read)
    out = spark.createDataFrame(
        files.union(context.parallelize(problems, 1)), INGESTED, verifySchema=False
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        written = _write_outputs(out, step_dir, "quarantine.jsonl", INGEST_ORDER)
        per: dict[tuple[int, int], int] = {
            (int(r["source_order"]), int(r["part"])): int(r["count"])
            for r in out.groupBy("source_order", "part").count().collect()
        }
        quarantined = _reasons(out.where(F.col("part") == DROPPED))
    finally:
        out.unpersist()
    counts = {
        "in_files": len(tasks),
        "out": sum(n for (_, part), n in per.items() if part == KEPT),
        "quarantined": quarantined,
        "sources": {
            source.name: {
                "files": len(listings[source.name].files),
                "records": per.get((s, KEPT), 0),
                "quarantined": per.get((s, DROPPED), 0),
            }
            for s, source in enumerate(sources)
        },
    }
    return written, counts


def run_comprehension(
    spark: SparkSession,
    source: str,
    step_dir: str,
    wanted: set[str],
    settings: MiningConfig,
    section: ComprehensionConfig,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Reading comprehension mined per partition (`comprehension.mine`) with the corpus-wide
    domain terms (`domain_terms`) broadcast. Writes `records.jsonl` and `records.parquet/`;
    counts as the single-process step (`documents`, `out`, `without_tasks`, `tasks`)."""
    from dapt_data.pipeline import comprehension_record  # noqa: PLC0415 (pipeline imports us)

    lines = read_records(spark, source)
    shared = spark.sparkContext.broadcast(domain_terms(lines, wanted))

    def apply(rows: Iterable[Any]) -> Iterator[tuple[int, int, str | None, str]]:
        per_task: Counter[str] = Counter()
        documents = without = 0
        for row in rows:
            record = Record.model_validate_json(row.value)
            if record.source not in wanted:
                continue
            documents += 1
            tasks = mine(record.source_id, record.text, settings, shared.value)
            if not tasks:
                without += 1
                continue
            per_task.update(t.task.value for t in tasks)
            yield row.order, KEPT, None, _line(comprehension_record(record, tasks, section))
        stats = {"documents": documents, "without_tasks": without, "tasks": dict(per_task)}
        yield -1, STATS, None, json.dumps(stats)

    out = spark.createDataFrame(lines.rdd.mapPartitions(apply), ROWS, verifySchema=False)
    out = out.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        written = _write_outputs(out, step_dir, None)
        parts = [json.loads(r["line"]) for r in out.where(F.col("part") == STATS).collect()]
        made = out.where(F.col("part") == KEPT).count()
    finally:
        out.unpersist()
        shared.unpersist()
    tasks: Counter[str] = Counter()
    for part in parts:  # one small row per partition
        tasks.update(part["tasks"])
    documents = sum(p["documents"] for p in parts)
    counts = {
        "documents": documents,
        "out": made,
        "without_tasks": sum(p["without_tasks"] for p in parts),
        "tasks": dict(sorted(tasks.items())),
    }
    return written, counts


def domain_terms(lines: DataFrame, wanted: set[str]) -> DomainTerms:
    """`DomainTerms` of the records of `wanted` sources against the public ones, for `mine`:
    each word's documents in either group are summed by key across partitions, and only the
    words that are terms (`DomainTerms.is_term`) are collected, with their counts, so `mine`
    decides as it does with the whole corpus's counts (a word it is not given counts 0, which
    is never a term)."""

    def words(rows: Iterable[Any]) -> Iterator[tuple[str, int, int]]:
        for row in rows:
            record = Record.model_validate_json(row.value)
            if record.source in wanted:
                hit = (1, 0)
            elif record.origin is Origin.PUBLIC:
                hit = (0, 1)
            else:
                continue
            yield "", *hit  # "" (never a word) counts the documents of each group
            for word in document_words(record.text):
                yield word, *hit

    # Summed by the JVM (a DataFrame aggregation, not a Python shuffle, which would need a
    # fixed PYTHONHASHSEED on every worker).
    hits = lines.sparkSession.createDataFrame(
        lines.rdd.mapPartitions(words), "word string, domain long, public long"
    )
    summed = hits.groupBy("word").agg(F.sum("domain").alias("d"), F.sum("public").alias("p"))
    summed = summed.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        documents = summed.where(F.col("word") == "").collect()
        n_domain, n_public = (documents[0]["d"], documents[0]["p"]) if documents else (0, 0)

        def is_term(row: Any) -> bool:
            probe = DomainTerms(
                Counter({row.word: row.d}), Counter({row.word: row.p}), n_domain, n_public
            )
            return bool(row.word) and probe.is_term(row.word)

        # the terms only (a share of the vocabulary) reach the driver
        found = [
            (r.word, (r.d, r.p))
            for r in summed.where(F.col("d") >= 2).rdd.filter(is_term).collect()
        ]
    finally:
        summed.unpersist()
    return DomainTerms(
        domain=Counter({w: d for w, (d, _) in found}),
        public=Counter({w: p for w, (_, p) in found}),
        n_domain=n_domain,
        n_public=n_public,
    )


def _ingested(s: int, f: int, result: Ingested) -> Iterator[tuple[Any, ...]]:
    for i, record in enumerate(result.records):
        yield s, f, i, KEPT, None, _line(record)
    for i, row in enumerate(result.quarantined):
        yield s, f, i, DROPPED, row.reason, _line(row)


def source_files(
    spark: SparkSession, source: str, names: list[str], final_dir: str, counter: Any
) -> dict[str, tuple[str, str, int, int]]:
    """The manifest's per-source files on Spark: the records of `source` split by their source
    name into `<final_dir>/<name>.jsonl` (in record order) with each file's sha256, records and
    tokens (`counter.count` per partition, summed). `counter` must pickle (it is sent to the
    executors). Returns name -> (uri, sha256, records, tokens)."""
    lines = read_records(spark, source)
    parsed = lines.select(
        "order",
        F.get_json_object("value", "$.source").alias("source"),
        F.col("value").alias("line"),
    ).persist(StorageLevel.MEMORY_AND_DISK)

    def count(rows: Iterable[Any]) -> Iterator[tuple[str, int, int]]:
        texts: dict[str, list[str]] = {}
        for row in rows:
            texts.setdefault(row.source, []).append(Record.model_validate_json(row.line).text)
        for name, own in texts.items():
            yield name, len(own), counter.count(own)

    try:
        totals: dict[str, list[int]] = {}
        for name, n, tokens in parsed.rdd.mapPartitions(count).collect():  # a row per partition
            seen = totals.setdefault(name, [0, 0])
            seen[0] += n
            seen[1] += tokens
        out = {}
        for name in names:
            uri = join(final_dir, f"{name}.jsonl")
            write_jsonl(parsed.where(F.col("source") == name), ["order"], uri)
            n, tokens = totals.get(name, [0, 0])
            out[name] = (uri, sha256_of(uri), n, tokens)
    finally:
        parsed.unpersist()
    return out


def _write_outputs(
    out: DataFrame, step_dir: str, other: str | None, order: list[str] | None = None
) -> dict[str, str]:
    """records.jsonl (and `other`: the dropped or quarantined rows) sorted by `order`, and the
    kept records as Parquet; the sha256 of each file by its name under `step_dir`."""
    order = order or ["order"]
    kept = out.where(F.col("part") == KEPT)
    parquet = join(step_dir, PARQUET)
    columns = F.from_json("line", RECORD_SCHEMA).alias("record")
    records = kept.select(*order, columns).select(*order, "record.*")
    records.sortWithinPartitions(*order).write.mode("overwrite").parquet(parquet)
    write_jsonl(kept, order, join(step_dir, "records.jsonl"))
    names = ["records.jsonl"]
    if other is not None:
        write_jsonl(out.where(F.col("part") == DROPPED), order, join(step_dir, other))
        names.append(other)
    names += [f"{PARQUET}/{n}" for n in list_names(parquet) if n.startswith("part-")]
    return {name: sha256_of(join(step_dir, name)) for name in names}


def _reasons(rows: DataFrame) -> dict[str, int]:
    return dict(
        sorted((r["reason"], int(r["count"])) for r in rows.groupBy("reason").count().collect())
    )
