"""The local SparkSession the Spark tests share (test_spark_dedup.py, test_spark_steps.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from dapt_data.spark import session


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    if os.environ.get("DAPT_TEST_SPARK") != "1":
        # ~90 s of JVM CPU on a 2-core box: far over the CI budget; run on demand for now.
        pytest.skip("Spark tests run with DAPT_TEST_SPARK=1")
    active = session(cores=2, shuffle_partitions=2)
    # Small input splits, so even these test files are read as several partitions and the
    # duplicates of a record sit in other partitions than the record.
    active.conf.set("spark.sql.files.maxPartitionBytes", "16384")
    yield active
    jvm = active.sparkContext._jvm.java.lang.ProcessHandle.current().pid()  # type: ignore[union-attr]
    ticks = Path(f"/proc/{jvm}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
    print(f"\nSpark JVM CPU: {sum(map(int, ticks)) / os.sysconf('SC_CLK_TCK'):.1f} s")
    active.stop()
