"""Deduplicate on Spark: exact and near-duplicates across the whole corpus, not per partition.

The same rules as `dapt_data.dedup`, on a DataFrame of records (`read_records`), with nothing
collected to the driver:

1. per partition, each record's `dedup.content_hash`, its MinHash (`dedup.signature`: the same
   datasketch permutations, seed and shingles) and its LSH band keys;
2. **exact**: the first record (by record order) of each content hash is kept, every other one
   is an `exact_duplicate` of it;
3. **near**, on what exact kept: records sharing a band key (the bands datasketch's
   `MinHashLSH` chooses for `dedup.threshold`, `dedup.num_perm` and `dedup.LSH_WEIGHTS`) are
   candidate pairs; a pair whose estimated Jaccard (the share of equal MinHash values, as
   `MinHash.jaccard`) is >= the threshold is an edge; the connected components of the edges
   (union-find on the driver over the edge list, 16 bytes a pair, up to `DRIVER_EDGES` pairs;
   above that min-label propagation with pointer jumping in DataFrame joins) are duplicate
   groups, and each
   group keeps its first record. Every other member is a `near_duplicate` whose `matched` is the
   kept record when their pair is an edge, else its most similar neighbour in the group.

**The same decisions as `dedup.near_dedup`**, which applies these rules in one process (groups
by union-find over the same candidate pairs): the same kept ids and `dropped.jsonl` rows, chains
included (on A~B~C with A, C not similar both B and C go, C with `matched` = B and the detail
naming A as the group's kept record). Candidate generation pairs every two members of an LSH
bucket, so a bucket of k records costs k(k-1)/2 comparisons, as the single-process pass
compares each record with every earlier member of its buckets.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasketch import MinHash, MinHashLSH
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812 (Spark's own convention)
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
)

from dapt_data.config import DedupConfig
from dapt_data.dedup import LSH_WEIGHTS, SCHEME, content_hash, signature
from dapt_data.records import Dropped, Record
from dapt_data.storage import is_s3, join, list_names, s3_client, sha256_of, split_s3

PARQUET = "records.parquet"
STAGING = ".spark"
DRIVER_EDGES = 2_000_000
"""Duplicate pairs up to which components are joined on the driver (32 MB of record orders)."""


@dataclass
class SparkDedup:
    """The result as DataFrames: `kept` (order, id, source_id, line: the record's JSON line) and
    `dropped` (phase, order, reason, line: the `Dropped` row's JSON line, in `dropped.jsonl`
    order: exact duplicates first, then near ones, each by record order)."""

    kept: DataFrame
    dropped: DataFrame
    cached: list[DataFrame] = field(default_factory=list)

    def release(self) -> None:
        """Drop the intermediate results this dedup keeps in executor memory."""
        for frame in self.cached:
            frame.unpersist()


def read_records(spark: SparkSession, uri: str) -> DataFrame:
    """A records JSONL (one `Record` a line, as the steps write it) as (order, value) rows;
    `order` increases with the line's position in the file (the order "first" refers to)."""
    lines = spark.read.text(uri).where(F.trim(F.col("value")) != "")
    return lines.select(F.monotonically_increasing_id().alias("order"), "value")


def lsh_bands(config: DedupConfig) -> list[tuple[int, int]]:
    """The (start, end) MinHash slices of the LSH bands: datasketch's own choice for these
    settings (`MinHashLSH(...).hashranges`), so candidates are those `dedup.near_dedup` finds."""
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm, weights=LSH_WEIGHTS)
    return [(int(start), int(end)) for start, end in lsh.hashranges]


def dedup_frame(
    lines: DataFrame, config: DedupConfig, driver_edges: int | None = None
) -> SparkDedup:
    """Exact then near dedup of `read_records` rows, as `config` says (see the module doc)."""
    base = _signed(lines, config).persist(StorageLevel.MEMORY_AND_DISK)
    cached = [base]
    kept = base
    dropped: list[DataFrame] = []
    if config.exact:
        kept, exact = _exact(base)
        dropped.append(exact)
    if config.near:
        limit = DRIVER_EDGES if driver_edges is None else driver_edges
        kept, near = _near(kept, config, limit, cached)
        dropped.append(near)
    rows = _format_dropped(_union(dropped, base.sparkSession), config)
    return SparkDedup(kept.select("order", "id", "source_id", "line"), rows, cached)


def run_step(
    spark: SparkSession, source: str, step_dir: str, config: DedupConfig
) -> tuple[dict[str, str], dict[str, Any]]:
    """The pipeline's dedup step on Spark: read `source` (records JSONL), write under `step_dir`
    `records.parquet/` (the kept records, Spark's Parquet writer), `records.jsonl` and
    `dropped.jsonl` (byte for byte what `dedup.py` writes where the two agree). Returns each
    output's sha256 by name (relative to `step_dir`) and the step's counts."""
    lines = read_records(spark, source)
    result = dedup_frame(lines, config)
    kept = result.kept.persist(StorageLevel.MEMORY_AND_DISK)
    dropped = result.dropped.persist(StorageLevel.MEMORY_AND_DISK)
    result.cached += [kept, dropped]
    try:
        parquet = join(step_dir, PARQUET)
        write_parquet(kept, parquet)
        write_jsonl(kept, ["order"], join(step_dir, "records.jsonl"))
        write_jsonl(dropped, ["phase", "order"], join(step_dir, "dropped.jsonl"))
        by_reason = dropped.groupBy("reason").count().collect()
        reasons = dict(sorted((r["reason"], int(r["count"])) for r in by_reason))
        counts = {"in": lines.count(), "out": kept.count(), "dropped": reasons}
    finally:
        result.release()
    names = ["records.jsonl", "dropped.jsonl"]
    names += [f"{PARQUET}/{n}" for n in list_names(parquet) if n.startswith("part-")]
    return {name: sha256_of(join(step_dir, name)) for name in names}, counts


def write_parquet(kept: DataFrame, uri: str) -> None:
    """The kept records as Parquet (`RECORD_SCHEMA` columns plus `order`), replacing `uri`."""
    columns = F.from_json("line", RECORD_SCHEMA).alias("record")
    records = kept.select("order", columns).select("order", "record.*")
    records.sortWithinPartitions("order").write.mode("overwrite").parquet(uri)


def write_jsonl(frame: DataFrame, order: list[str], uri: str) -> None:
    """`frame`'s `line` column as one JSONL file at `uri`, sorted by `order`: Spark's text writer
    in one task (executors hold the rows, not the driver), then moved to its name. The bytes
    are `records.to_jsonl`'s (a line each, a final newline, empty when there are no rows)."""
    staging = f"{uri}{STAGING}"
    frame.orderBy(*order).select("line").coalesce(1).write.mode("overwrite").text(staging)
    parts = [n for n in list_names(staging) if n.startswith("part-")]
    if len(parts) > 1:
        raise RuntimeError(f"{staging}: expected one part file from coalesce(1), found {parts}")
    _move(join(staging, parts[0]) if parts else None, uri)
    _remove_tree(staging)


def _move(part: str | None, uri: str) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        client = s3_client()
        if part is None:
            client.put_object(Bucket=bucket, Key=key, Body=b"")
            return
        source_bucket, source_key = split_s3(part)
        client.copy({"Bucket": source_bucket, "Key": source_key}, bucket, key)
        return
    target = Path(uri)
    if part is None:
        target.write_bytes(b"")
        return
    Path(part).replace(target)


def _remove_tree(uri: str) -> None:
    if not is_s3(uri):
        shutil.rmtree(uri, ignore_errors=True)
        return
    bucket, prefix = split_s3(uri.rstrip("/") + "/")
    client = s3_client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects})


def _signed(lines: DataFrame, config: DedupConfig) -> DataFrame:
    """Parse each record and add its content hash, MinHash values and band keys (per partition,
    with the pure functions of `dapt_data.dedup`)."""
    bands = lsh_bands(config) if config.near else []

    def sign(rows: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
        template = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=SCHEME)
        for row in rows:
            try:
                record = Record.model_validate_json(row.value)
            except ValueError as err:
                raise ValueError(f"input row {row.order} is not a valid record: {err}") from err
            line = json.dumps(record.model_dump(mode="json"), ensure_ascii=False)
            values: list[int] = []
            keys: list[bytes] = []
            if bands:
                hashvalues = signature(record.text, config, template).hashvalues
                values = [int(v) for v in hashvalues]
                # datasketch's own band key (MinHashLSH._byteswap): equal bytes <=> equal band
                keys = [bytes(hashvalues[s:e].byteswap().data) for s, e in bands]
            yield (row.order, record.id, record.source_id, line, content_hash(record.text),
                   values, keys)  # fmt: skip

    spark = lines.sparkSession
    return spark.createDataFrame(lines.rdd.mapPartitions(sign), SIGNED, verifySchema=False)


def _exact(base: DataFrame) -> tuple[DataFrame, DataFrame]:
    first = base.groupBy("hash").agg(F.min(F.struct("order", "source_id")).alias("first"))
    joined = base.join(first, "hash")
    kept = joined.where(F.col("order") == F.col("first.order")).drop("first")
    dropped = joined.where(F.col("order") != F.col("first.order")).select(
        F.lit(0).alias("phase"),
        "order",
        "line",
        F.lit("exact_duplicate").alias("reason"),
        F.col("first.source_id").alias("matched"),
        F.lit(1.0).alias("score"),
        F.lit(None).cast("string").alias("kept_source_id"),
        "hash",
    )
    return kept, dropped


def _near(
    kept: DataFrame, config: DedupConfig, driver_edges: int, cached: list[DataFrame]
) -> tuple[DataFrame, DataFrame]:
    nodes = kept.select("order", "source_id", "sig")
    keys = kept.select("order", F.posexplode("bands").alias("band", "key"))
    # The two sides of the self-join as new columns, so Spark cannot confuse them.
    left = keys.select(F.col("order").alias("src"), "band", "key")
    right = keys.select(F.col("order").alias("dst"), "band", "key")
    pairs = (
        left.join(right, ["band", "key"])
        .where(F.col("src") < F.col("dst"))
        .select("src", "dst")
        .distinct()
    )
    sig_a = nodes.select(F.col("order").alias("src"), F.col("sig").alias("sig_src"))
    sig_b = nodes.select(F.col("order").alias("dst"), F.col("sig").alias("sig_dst"))
    edges = (
        pairs.join(sig_a, "src")
        .join(sig_b, "dst")
        .select("src", "dst", _jaccard("sig_src", "sig_dst", config.num_perm).alias("score"))
        .where(F.col("score") >= config.threshold)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    cached.append(edges)
    roots = components(edges.select("src", "dst"), driver_edges=driver_edges)
    cached.append(roots)
    # Every node of an edge has a root; the non-roots are the near duplicates.
    members = roots.where(F.col("node") != F.col("root"))
    both_ways = edges.select(
        F.col("src").alias("node"), F.col("dst").alias("other"), "score"
    ).unionByName(edges.select(F.col("dst").alias("node"), F.col("src").alias("other"), "score"))
    best = _best_neighbour(members.join(both_ways, "node"))
    names = nodes.select("order", "source_id")
    matched = names.select(F.col("order").alias("other"), F.col("source_id").alias("matched"))
    root_names = names.select(
        F.col("order").alias("root"), F.col("source_id").alias("kept_source_id")
    )
    near = (
        best.join(matched, "other")
        .join(root_names, "root")
        .join(kept.select(F.col("order").alias("node"), "line", "hash"), "node")
        .select(
            F.lit(1).alias("phase"),
            F.col("node").alias("order"),
            "line",
            F.lit("near_duplicate").alias("reason"),
            "matched",
            "score",
            # named in the detail only when the match is not the kept record (a chain)
            F.when(F.col("other") != F.col("root"), F.col("kept_source_id")).alias(
                "kept_source_id"
            ),
            "hash",
        )
    )
    still_kept = kept.join(members.select(F.col("node").alias("order")), "order", "left_anti")
    return still_kept, near


def _jaccard(left: str, right: str, num_perm: int) -> Column:
    """`MinHash.jaccard`: the count of equal values over num_perm, as a double."""
    equal = F.filter(F.arrays_zip(F.col(left), F.col(right)), lambda p: p[left] == p[right])
    return F.size(equal).cast(DoubleType()) / F.lit(float(num_perm))


def _best_neighbour(incident: DataFrame) -> DataFrame:
    """Per duplicate, the neighbour it is reported against: the group's kept record if they are
    similar, else the most similar one (ties: the earliest)."""
    rank = F.row_number().over(
        _window("node").orderBy(
            (F.col("other") == F.col("root")).desc(), F.col("score").desc(), F.col("other")
        )
    )
    return incident.withColumn("rank", rank).where(F.col("rank") == 1).drop("rank")


def _window(column: str) -> Any:
    from pyspark.sql.window import Window  # noqa: PLC0415 (keeps the import list short)

    return Window.partitionBy(column)


def components(
    edges: DataFrame, max_iterations: int = 100, driver_edges: int = DRIVER_EDGES
) -> DataFrame:
    """Connected components of an undirected (src, dst) edge list as (node, root) rows, root =
    the smallest node of the component.

    Up to `driver_edges` edges (16 bytes each: the record orders of a duplicate pair, never the
    records) are joined on the driver with union-find, since each round of the distributed
    algorithm is several Spark jobs; above it, `propagate_labels` runs on the cluster.
    """
    count = edges.count()
    if count > driver_edges:
        return propagate_labels(edges, max_iterations)
    parent: dict[int, int] = {}

    def find(node: int) -> int:
        root = node
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[node] != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    for row in edges.select("src", "dst").toLocalIterator():
        a, b = find(row.src), find(row.dst)
        if a != b:
            parent[max(a, b)] = min(a, b)
    rows = [(node, find(node)) for node in list(parent)]
    return edges.sparkSession.createDataFrame(rows, ROOTS)


def propagate_labels(edges: DataFrame, max_iterations: int = 100) -> DataFrame:
    """`components` on the cluster: min-label propagation, each round followed by a pointer jump
    (label <- label of label), until no label changes. Rounds grow with the logarithm of the
    longest chain of duplicates, not with the corpus."""
    links = edges.select(F.col("src").alias("u"), F.col("dst").alias("v"))
    links = links.unionByName(links.select(F.col("v").alias("u"), F.col("u").alias("v")))
    links = links.persist(StorageLevel.MEMORY_AND_DISK)
    labels = (
        links.groupBy("u")
        .agg(F.least(F.min("v"), F.col("u")).alias("label"))
        .select(F.col("u").alias("node"), "label")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    for _ in range(max_iterations):
        spread = (
            links.join(labels.select(F.col("node").alias("v"), F.col("label").alias("seen")), "v")
            .groupBy("u")
            .agg(F.min("seen").alias("seen"))
            .select(F.col("u").alias("node"), "seen")
        )
        step = labels.join(spread, "node", "left").select(
            "node", F.least("label", F.coalesce("seen", "label")).alias("label")
        )
        via = step.select(F.col("node").alias("label"), F.col("label").alias("via"))
        jumped = (
            step.join(via, "label", "left")
            .select("node", F.least("label", F.coalesce("via", "label")).alias("label"))
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        changed = (
            jumped.join(labels.withColumnRenamed("label", "old"), "node")
            .where(F.col("label") != F.col("old"))
            .count()
        )
        labels.unpersist()
        labels = jumped
        if changed == 0:
            links.unpersist()
            return labels.withColumnRenamed("label", "root")
    raise RuntimeError(
        f"connected components did not converge in {max_iterations} rounds of label "
        "propagation: raise max_iterations"
    )


def _union(parts: list[DataFrame], spark: SparkSession) -> DataFrame:
    if not parts:
        return spark.createDataFrame([], CANDIDATE)
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def _format_dropped(candidates: DataFrame, config: DedupConfig) -> DataFrame:
    """The `Dropped` JSON line of each removed record, written as `dedup.py` writes it."""
    threshold = config.threshold

    def render(rows: Iterable[Any]) -> Iterator[tuple[int, int, str, str]]:
        for row in rows:
            record = Record.model_validate_json(row.line)
            if row.reason == "exact_duplicate":
                detail = f"same content hash {row.hash[:16]} as {row.matched}"
                score = 1.0
            else:
                detail = (
                    f"estimated Jaccard {row.score:.3f} >= dedup.threshold {threshold} "
                    f"with {row.matched}"
                )
                if row.kept_source_id is not None:  # a chain: see the module doc
                    detail += f" (near-duplicate group kept {row.kept_source_id})"
                score = round(row.score, 4)
            dropped = Dropped(
                step="dedup",
                reason=row.reason,
                detail=detail,
                matched=row.matched,
                score=score,
                record=record,
            )
            line = json.dumps(dropped.model_dump(mode="json"), ensure_ascii=False)
            yield (row.phase, row.order, row.reason, line)

    spark = candidates.sparkSession
    return spark.createDataFrame(candidates.rdd.mapPartitions(render), DROPPED, verifySchema=False)


SIGNED = StructType(
    [
        StructField("order", LongType(), False),
        StructField("id", StringType(), False),
        StructField("source_id", StringType(), False),
        StructField("line", StringType(), False),
        StructField("hash", StringType(), False),
        StructField("sig", ArrayType(LongType(), False), False),
        StructField("bands", ArrayType(BinaryType(), False), False),
    ]
)
CANDIDATE = StructType(
    [
        StructField("phase", IntegerType(), False),
        StructField("order", LongType(), False),
        StructField("line", StringType(), False),
        StructField("reason", StringType(), False),
        StructField("matched", StringType(), True),
        StructField("score", DoubleType(), True),
        StructField("kept_source_id", StringType(), True),
        StructField("hash", StringType(), False),
    ]
)
ROOTS = StructType([StructField("node", LongType(), False), StructField("root", LongType(), False)])
DROPPED = StructType(
    [
        StructField("phase", IntegerType(), False),
        StructField("order", LongType(), False),
        StructField("reason", StringType(), False),
        StructField("line", StringType(), False),
    ]
)
RECORD_SCHEMA = StructType(
    [
        StructField("id", StringType(), False),
        StructField("source", StringType(), False),
        StructField("source_id", StringType(), False),
        StructField("kind", StringType(), False),
        StructField("origin", StringType(), False),
        StructField("text", StringType(), False),
        StructField("label", StringType(), True),
        StructField("meta", MapType(StringType(), StringType()), True),
    ]
)
"""A `Record` as Parquet columns (`meta` a string map)."""
