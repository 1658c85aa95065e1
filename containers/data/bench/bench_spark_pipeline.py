"""The corpus-sized steps of the pipeline (ingest, clean, dedup, decontaminate, redact) with
`engine: local` and `engine: spark` on 1 and 2 local cores, at two corpus sizes (not a test).

    ../../.venv/bin/python bench/bench_spark_pipeline.py --mb 5 20

The corpus is `bench_pipeline.make_corpus` (~1 KB English-like documents, 10% near-copies, 5%
with an e-mail address and a phone number) split over 8 JSONL files, one source. The pipeline is
the real one (`dapt_data.pipeline`, default settings, redaction on, decontamination against the
example domain's QA benchmark); each run is its own process, timed from the first step to the
last one's marker. Memory: the process's peak RSS for `local`; for `spark`, the driver JVM's peak
RSS (in local mode the executors are its threads), the Python workers' peak RSS summed over the
workers alive at once (sampled every 0.1 s) and the driver's Python process. The outputs of the
two engines are compared (records.jsonl of redact, byte for byte). Prints the setup and a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pipeline import make_corpus  # noqa: E402
from bench_spark_dedup import WorkerSampler, own_peak_mb, setup, status_kb  # noqa: E402

STEPS = ("ingest", "clean", "dedup", "decontaminate", "redact")
EMR_PRICES = {"vcpu_hour": 0.052624, "gb_hour": 0.0057785}
"""EMR Serverless x86 on-demand, us-west-2, as AWS's EMR best-practices guide quotes them
(github.com/aws/aws-emr-best-practices, website/docs/benchmarks/benchmarking_variables.md);
AWS's pricing page was not reachable here."""
WORKER = {"vcpu": 4, "memory_gb": 16}
"""The projected worker: EMR Serverless's default Spark executor size (4 vCPU, 16 GB)."""
EXAMPLE = HERE.parents[2] / "examples" / "website-builder"


def write_corpus(megabytes: float, folder: Path, files: int = 8) -> float:
    """The corpus as `files` JSONL files of {"text": ...} rows; returns its size in MB."""
    docs = make_corpus(megabytes, dup_rate=0.1, pii_rate=0.05, seed=1)
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(docs) // files)
    for n in range(files):
        part = docs[n * per : (n + 1) * per]
        body = "".join(json.dumps({"text": d}) + "\n" for d in part)
        (folder / f"part-{n:02d}.jsonl").write_text(body, encoding="utf-8")
    return sum(len(d.encode("utf-8")) for d in docs) / 1e6


def config(corpus: Path, out: Path, engine: str, cores: int | None) -> Any:
    from dapt_data.config import parse_config  # noqa: PLC0415

    return parse_config(
        {
            "output": str(out),
            "engine": engine,
            "spark": {"cores": cores},
            "sources": [{"name": "corpus", "path": str(corpus), "format": "jsonl"}],
            "decontaminate": {"benchmarks": [str(EXAMPLE / "benchmarks" / "qa")]},
            "redact": {"enabled": True},
        },
        "bench",
    )


def run(corpus: Path, out: Path, engine: str, cores: int | None) -> dict[str, Any]:
    from dapt_data import pipeline  # noqa: PLC0415

    settings = config(corpus, out, engine, cores)
    sampler = None
    started = 0.0
    if engine == "spark":
        start = time.perf_counter()
        spark = pipeline.spark_session(settings)
        started = time.perf_counter() - start
        jvm = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
        sampler = WorkerSampler(jvm)
        sampler.start()
    seconds: dict[str, float] = {}
    counts: dict[str, Any] = {}
    for step in STEPS:
        start = time.perf_counter()
        result = getattr(pipeline, f"run_{step}")(settings)
        seconds[step] = time.perf_counter() - start
        counts[step] = result.counts.get("out")
    out_data: dict[str, Any] = {
        "seconds": sum(seconds.values()),
        "steps": seconds,
        "out": counts,
        "python_peak_mb": own_peak_mb(),
        "session_start_s": started,
    }
    if sampler is not None:
        sampler.stop()
        out_data["jvm_peak_mb"] = status_kb(sampler.jvm, "VmHWM") / 1024
        out_data["workers_peak_mb"] = sampler.peak_kb / 1024
        out_data["workers_max"] = sampler.most
    return out_data


def compare(local: Path, spark: Path) -> str:
    """Which of the Spark run's JSONL outputs differ from the local run's (none should)."""
    names = sorted(
        str(p.relative_to(local)) for p in local.rglob("*.jsonl") if "records.parquet" not in str(p)
    )
    different = [n for n in names if (local / n).read_bytes() != (spark / n).read_bytes()]
    return f"{len(names)} JSONL outputs compared, different: {different or 'none'}"


def projection(gigabytes: float, mb_per_core_s: float, workers: int) -> list[str]:
    """vCPU-hours, memory GB-hours, hours and cost of `gigabytes` on EMR Serverless at the
    measured per-core rate, as a projection: it assumes throughput scales linearly from one
    local core to `workers` x 4 vCPU and leaves out session starts, the driver, shuffle growth
    and storage beyond the free 20 GB a worker."""
    vcpu_hours = gigabytes * 1000 / mb_per_core_s / 3600
    gb_hours = vcpu_hours * WORKER["memory_gb"] / WORKER["vcpu"]
    cost = vcpu_hours * EMR_PRICES["vcpu_hour"] + gb_hours * EMR_PRICES["gb_hour"]
    hours = vcpu_hours / (workers * WORKER["vcpu"])
    return [
        f"projection for {gigabytes:g} GB at {mb_per_core_s:.3f} MB/s per core (spark local[1], "
        f"largest size): {vcpu_hours:,.0f} vCPU-hours, {gb_hours:,.0f} memory GB-hours; "
        f"{workers} workers of {WORKER['vcpu']} vCPU / {WORKER['memory_gb']} GB: "
        f"{hours:.1f} hours; ${cost:,.0f} at ${EMR_PRICES['vcpu_hour']}/vCPU-hour and "
        f"${EMR_PRICES['gb_hour']}/GB-hour (x86, us-west-2)"
    ]


def in_child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        corpus, out, engine, cores = sys.argv[2:6]
        print(json.dumps(run(Path(corpus), Path(out), engine, int(cores) or None)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[5, 20])
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", default="/tmp/bench_spark_pipeline")
    parser.add_argument("--project-gb", type=float, default=100)
    parser.add_argument("--workers", type=int, default=50)
    args = parser.parse_args()
    work = Path(args.work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    print("\n".join(setup(None)), flush=True)
    header = [
        "engine", "MB", "wall (s)", "MB/s", "per step (s): " + ", ".join(STEPS),
        "process / driver Python peak RSS (MB)", "JVM peak RSS (MB)",
        "Python workers peak RSS (MB)",
    ]  # fmt: skip
    rows: list[list[str]] = []
    one_core = 0.0
    for megabytes in args.mb:
        tag = f"{megabytes:g}mb"
        corpus = work / f"corpus_{tag}"
        size = write_corpus(megabytes, corpus)
        runs = [("local", 0), *(("spark", c) for c in args.cores)]
        per_core: dict[int, float] = {}
        names: list[str] = []
        for engine, cores in runs:
            name = f"{engine}{cores or ''}_{tag}"
            result = in_child(str(corpus), str(work / name), engine, str(cores))
            names.append(name)
            steps = ", ".join(f"{result['steps'][s]:.1f}" for s in STEPS)
            label = "local (1 process)" if engine == "local" else (
                f"spark local[{cores}] (start {result['session_start_s']:.1f} s apart)"
            )  # fmt: skip
            if engine == "spark":
                per_core[cores] = size / result["seconds"]
                if cores == 1:
                    one_core = per_core[cores]
            rows.append(
                [label, f"{size:.1f}", f"{result['seconds']:.1f}",
                 f"{size / result['seconds']:.2f}", steps, f"{result['python_peak_mb']:.0f}",
                 f"{result.get('jvm_peak_mb', 0):.0f}" if engine == "spark" else "-",
                 f"{result['workers_peak_mb']:.0f} ({result['workers_max']} procs)"
                 if engine == "spark" else "-"]
            )  # fmt: skip
            print(rows[-1], result["out"], flush=True)
        for name in names:
            if name.startswith("spark"):
                print(f"  {size:.1f} MB {name}: {compare(work / f'local_{tag}', work / name)}")
        if len(per_core) > 1:
            low, high = min(per_core), max(per_core)
            print(f"  {size:.1f} MB: spark local[{high}] / local[{low}] throughput ratio "
                  f"{per_core[high] / per_core[low]:.2f}", flush=True)  # fmt: skip
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if one_core:
        print("\n".join(projection(args.project_gb, one_core, args.workers)))
    print("\n| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
