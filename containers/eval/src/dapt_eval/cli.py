"""`dapt-eval` command line: build, run, batch, aggregate, compare, calibrate-judge, mcq-generate.

Argument parsing only; the work happens in `commands`. Exit codes: 0 success, 1 a user-facing
error (bad benchmark, bad config, untrusted judge with --require-trusted), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from dapt_eval import commands
from dapt_eval.aggregate import AggregationError
from dapt_eval.batch.config import BatchConfigError, add_batch_args, config_from
from dapt_eval.benchmark import BenchmarkError, build_benchmark
from dapt_eval.hashing import CanonicalJsonError
from dapt_eval.judge import DEFAULT_KAPPA_THRESHOLD, Judge
from dapt_eval.mcq import DEFAULT_PARAPHRASE_JACCARD
from dapt_eval.providers.base import DEFAULT_REVISION, DecodingParams, Provider
from dapt_eval.providers.factory import ProviderSpec, build_provider
from dapt_eval.providers.limiter import DEFAULT_FLOOR
from dapt_eval.providers.offline import OfflineBehaviour
from dapt_eval.runner import DEFAULT_CONCURRENCY, RunConfig, RunConfigError

USER_ERRORS = (
    BenchmarkError,
    BatchConfigError,
    AggregationError,
    RunConfigError,
    CanonicalJsonError,
    ValidationError,
    FileNotFoundError,
    ValueError,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dapt-eval` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.handler(args))
    except USER_ERRORS as err:
        print(f"dapt-eval {args.command}: error: {err}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their arguments."""
    parser = argparse.ArgumentParser(prog="dapt-eval", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser(
        "build", help="hash the items file into benchmark.json and validate rows"
    )
    build.add_argument("benchmark", type=Path)
    build.add_argument(
        "--allow-quarantined", action="store_true", help="exit 0 even if rows were quarantined"
    )
    build.set_defaults(handler=_build)

    run = sub.add_parser(
        "run", help="evaluate a benchmark with one model (resumes), then aggregate"
    )
    run.add_argument("--benchmark", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--run-id", default=None, help="default: a new UUID")
    run.add_argument("--mode", default=None, help="mcq: letter (default) or loglik")
    run.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="units at once, and the most provider calls in flight (lowered while the provider "
        "throttles)",
    )
    run.add_argument(
        "--min-concurrency",
        type=int,
        default=DEFAULT_FLOOR,
        help="the fewest provider calls kept in flight when throttled (= --concurrency: fixed)",
    )
    run.add_argument(
        "--format-spread", action="store_true", help="also run the manifest's prompt variants"
    )
    _add_decoding_args(run)
    _add_provider_args(run, "", required=True)
    _add_provider_args(run, "judge-", required=False)
    run.set_defaults(handler=_run)

    batch = sub.add_parser(
        "batch",
        help="evaluate a local/S3 Hugging Face model on this machine's GPU (needs the gpu extra)",
    )
    add_batch_args(batch)
    _add_provider_args(batch, "judge-", required=False)
    batch.set_defaults(handler=_batch)

    agg = sub.add_parser("aggregate", help="(re)build report.json from a run directory")
    agg.add_argument("--out", type=Path, required=True)
    agg.set_defaults(handler=_aggregate)

    cmp_ = sub.add_parser("compare", help="side-by-side report of N runs (first = baseline)")
    cmp_.add_argument("--run", type=Path, action="append", required=True, dest="runs")
    cmp_.add_argument("--out", type=Path, required=True)
    cmp_.add_argument(
        "--judge-calibration",
        type=Path,
        help="the judge's calibrate-judge report: judged runs show their calibration status",
    )
    cmp_.set_defaults(handler=_compare)

    cal = sub.add_parser("calibrate-judge", help="agreement of a judge with human verdicts")
    cal.add_argument("--items", type=Path, required=True)
    cal.add_argument("--out", type=Path, required=True, help="report JSON path")
    cal.add_argument("--kappa-threshold", type=float, default=DEFAULT_KAPPA_THRESHOLD)
    cal.add_argument("--require-trusted", action="store_true", help="exit 1 if kappa < threshold")
    _add_provider_args(cal, "judge-", required=True)
    cal.set_defaults(handler=_calibrate)

    gen = sub.add_parser("mcq-generate", help="MCQ benchmark from a QA benchmark via a teacher")
    gen.add_argument("--qa", type=Path, required=True)
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--version", required=True, help="version of the new MCQ benchmark")
    gen.add_argument("--paraphrase-threshold", type=float, default=DEFAULT_PARAPHRASE_JACCARD)
    _add_provider_args(gen, "teacher-", required=True)
    gen.set_defaults(handler=_generate)
    return parser


def _add_decoding_args(parser: argparse.ArgumentParser) -> None:
    defaults = DecodingParams()
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="sampling and MCQ shuffle seed"
    )


def _add_provider_args(parser: argparse.ArgumentParser, prefix: str, required: bool) -> None:
    """`--{prefix}provider` etc.; the same flags for candidate, judge and teacher models."""
    parser.add_argument(
        f"--{prefix}provider",
        required=required,
        choices=["offline", "openai", "bedrock", "sagemaker"],
    )
    parser.add_argument(f"--{prefix}model", default=None)
    parser.add_argument(f"--{prefix}revision", default=DEFAULT_REVISION)
    parser.add_argument(f"--{prefix}base-url", default=None, help="openai: server root URL")
    parser.add_argument(
        f"--{prefix}api-key-env", default=None, help="openai: env var holding the key"
    )
    parser.add_argument(f"--{prefix}region", default=None, help="bedrock/sagemaker: AWS region")
    parser.add_argument(f"--{prefix}endpoint", default=None, help="sagemaker: endpoint name")
    parser.add_argument(
        f"--{prefix}inference-component",
        default=None,
        help="sagemaker: inference component of the endpoint (a base model or a LoRA adapter)",
    )
    parser.add_argument(f"--{prefix}offline-correct-rate", type=float, default=1.0)
    parser.add_argument(f"--{prefix}offline-unparseable-rate", type=float, default=0.0)
    parser.add_argument(f"--{prefix}offline-error-rate", type=float, default=0.0)


def _provider(args: argparse.Namespace, prefix: str) -> Provider | None:
    key = prefix.replace("-", "_")
    kind = getattr(args, f"{key}provider")
    if kind is None:
        return None
    endpoint = getattr(args, f"{key}endpoint")
    spec = ProviderSpec(
        kind=kind,
        model_id=getattr(args, f"{key}model") or endpoint or kind,
        revision=getattr(args, f"{key}revision"),
        base_url=getattr(args, f"{key}base_url"),
        api_key_env=getattr(args, f"{key}api_key_env"),
        region=getattr(args, f"{key}region"),
        endpoint_name=endpoint,
        inference_component_name=getattr(args, f"{key}inference_component"),
        offline=OfflineBehaviour(
            correct_rate=getattr(args, f"{key}offline_correct_rate"),
            unparseable_rate=getattr(args, f"{key}offline_unparseable_rate"),
            error_rate=getattr(args, f"{key}offline_error_rate"),
        ),
    )
    return build_provider(spec)


def _build(args: argparse.Namespace) -> int:
    manifest, load = build_benchmark(args.benchmark)
    print(
        f"{manifest.name}@{manifest.version}: items_sha256={manifest.items_sha256}; "
        f"{load.summary()}"
    )
    for row in load.quarantined:
        print(f"  quarantined line {row.line}: {row.reason}")
    return 0 if args.allow_quarantined or not load.quarantined else 1


def _run(args: argparse.Namespace) -> int:
    provider = _provider(args, "")
    assert provider is not None
    judge_provider = _provider(args, "judge-")
    config = RunConfig(
        run_id=args.run_id or str(uuid.uuid4()),
        decoding=DecodingParams(
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            top_p=args.top_p,
            seed=args.seed,
        ),
        mode=args.mode,
        concurrency=args.concurrency,
        min_concurrency=args.min_concurrency,
        include_format_spread=args.format_spread,
    )
    judge = Judge(judge_provider) if judge_provider else None
    summary, report = commands.run_and_report(args.benchmark, provider, config, args.out, judge)
    print(
        json.dumps(
            {"summary": summary.to_json(), "primary": report["primary"]["primary_value"]}, indent=2
        )
    )
    print(
        f"completion rate: {summary.completion_rate:.1%} "
        f"({summary.ok + summary.unparseable}/{summary.total} units finished)"
    )
    return 0


def _batch(args: argparse.Namespace) -> int:
    from dapt_eval.batch.job import run_batch_job  # noqa: PLC0415 - keeps torch out of the CLI

    judge_provider = _provider(args, "judge-")
    outcome = run_batch_job(config_from(args), Judge(judge_provider) if judge_provider else None)
    summary = outcome.summary
    print(json.dumps({"model": outcome.identity, "summary": summary.to_json()}, indent=2))
    print(
        f"completion rate: {summary.completion_rate:.1%} "
        f"({summary.ok + summary.unparseable}/{summary.total} units finished)"
    )
    return 0


def _aggregate(args: argparse.Namespace) -> int:
    report = commands.aggregate_dir(args.out)
    print(json.dumps(report["primary"]["primary_value"]))
    return 0


def _compare(args: argparse.Namespace) -> int:
    comparison = commands.compare_dirs(args.runs, args.out, args.judge_calibration)
    print(
        f"wrote {args.out / 'compare.json'} and compare.html for {len(comparison['models'])} runs"
    )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    judge_provider = _provider(args, "judge-")
    assert judge_provider is not None
    report = commands.calibrate_file(
        args.items, Judge(judge_provider), args.out, args.kappa_threshold
    )
    print(
        json.dumps(
            {
                k: report[k]
                for k in ("cohen_kappa", "trusted", "leniency", "severity", "n_unparseable")
            }
        )
    )
    return 1 if args.require_trusted and not report["trusted"] else 0


def _generate(args: argparse.Namespace) -> int:
    teacher = _provider(args, "teacher-")
    assert teacher is not None
    report = commands.generate_mcq(
        args.qa, teacher, args.out, args.version, args.paraphrase_threshold
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
