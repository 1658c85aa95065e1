"""Configuration of the GPU batch job, from CLI flags with environment-variable defaults.

AWS Batch passes settings as environment variables (the job definition's `environment`), a
developer passes flags; each flag falls back to its variable, so both read the same dataclass.
Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dapt_eval.config_errors import ConfigError
from dapt_eval.providers.base import DecodingParams

DEFAULT_BATCH_SIZE = 8
DEFAULT_SCRATCH = Path("/tmp/dapt-eval-scratch")  # the job's own ephemeral disk


class BatchConfigError(ConfigError):
    """The batch job cannot start; every problem names its flag and variable."""

    what = "batch job"


BATCH_SOURCE = "<flags/env>"
"""The source of the batch job's config errors: its flags, each falling back to a variable."""


@dataclass(frozen=True)
class BatchConfig:
    """Everything the batch job needs; see ENV_VARS for the variable behind each field.

    A dataclass built by `config_from` (flags and variables, not a file), so its fields are
    documented by attribute docstrings rather than pydantic descriptions."""

    model_uri: str
    """Hugging Face-format model directory: a local path or `s3://bucket/prefix/`."""
    benchmark_uri: str
    """Benchmark directory (benchmark.json + items.jsonl): a local path or `s3://...`."""
    out_dir: Path | None = None
    """Local run directory (items/, run.json, report.json); exclusive with `eval_bucket`."""
    eval_bucket: str | None = None
    """Write records to `s3://<eval_bucket>/results/items/`; exclusive with `out_dir`."""
    run_id: str = ""
    """Recorded in every result (not part of the cache key); default: a new UUID."""
    model_id: str | None = None
    """Model id in results and cache keys; default: the model directory's name."""
    revision: str | None = None
    """Model revision; default: `sha256:<16 hex>` of the model directory's content."""
    mode: str | None = None
    """Scoring mode as the runner's TASK_MODES name it (MCQ: `letter`, the default, `loglik` or
    `cloze`); None picks the task's first mode."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Sequences per forward pass (generation and log-likelihood)."""
    decoding: DecodingParams = field(default_factory=DecodingParams)
    """Greedy only: temperature must be 0; `max_tokens` caps new tokens; `seed` shuffles MCQ."""
    include_format_spread: bool = False
    """Also evaluate the manifest's prompt variants."""
    scratch_dir: Path = DEFAULT_SCRATCH
    """Where S3 models and benchmarks are downloaded."""
    device: str = "auto"
    """`auto` (cuda if available, else cpu), `cuda` or `cpu`."""

    def __post_init__(self) -> None:
        problems = []
        if (self.out_dir is None) == (self.eval_bucket is None):
            problems.append(
                "--out (OUT_DIR): set exactly one of it and --eval-bucket (EVAL_BUCKET)"
            )
        if self.batch_size < 1:
            problems.append(f"--batch-size (BATCH_SIZE) = {self.batch_size}: must be >= 1")
        if self.decoding.temperature != 0:
            problems.append(
                f"--temperature (TEMPERATURE) = {self.decoding.temperature}: the batch job "
                "decodes greedily, so it must be 0"
            )
        if self.device not in ("auto", "cuda", "cpu"):
            problems.append(f"--device (DEVICE) = '{self.device}': must be auto, cuda or cpu")
        if problems:
            raise BatchConfigError(BATCH_SOURCE, problems)


def add_batch_args(parser: argparse.ArgumentParser) -> None:
    """`dapt-eval batch` flags; each defaults to its environment variable (read at parse)."""
    for flag, (env, help_text) in ENV_VARS.items():
        kwargs: dict[str, object] = {"default": None, "help": f"{help_text} [env {env}]"}
        if flag in ("format-spread",):
            kwargs["action"] = "store_const"
            kwargs["const"] = "1"
        parser.add_argument(f"--{flag}", **kwargs)  # type: ignore[arg-type]


def config_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> BatchConfig:
    """Flags first, then environment variables, then defaults; all problems reported together."""
    environ = os.environ if env is None else env

    def value(flag: str) -> str | None:
        given = getattr(args, flag.replace("-", "_"), None)
        return str(given) if given is not None else environ.get(ENV_VARS[flag][0]) or None

    problems: list[str] = []

    def number(flag: str, default: float, kind: type[int] | type[float]) -> float:
        raw = value(flag)
        if raw is None:
            return default
        try:
            return kind(raw)
        except ValueError:
            problems.append(f"--{flag} ({ENV_VARS[flag][0]}) = '{raw}': not a {kind.__name__}")
            return default

    model_uri, benchmark_uri = value("model"), value("benchmark")
    for flag, given in (("model", model_uri), ("benchmark", benchmark_uri)):
        if not given:
            problems.append(f"--{flag} ({ENV_VARS[flag][0]}): required")
    defaults = DecodingParams()
    batch_size = int(number("batch-size", DEFAULT_BATCH_SIZE, int))
    max_tokens = int(number("max-tokens", defaults.max_tokens, int))
    seed = int(number("seed", defaults.seed, int))
    temperature = float(number("temperature", defaults.temperature, float))
    if problems:
        raise BatchConfigError(BATCH_SOURCE, problems)
    out = value("out")
    return BatchConfig(
        model_uri=str(model_uri),
        benchmark_uri=str(benchmark_uri),
        out_dir=Path(out) if out else None,
        eval_bucket=value("eval-bucket"),
        run_id=value("run-id") or "",
        model_id=value("model-id"),
        revision=value("revision"),
        mode=value("mode"),
        batch_size=batch_size,
        decoding=DecodingParams(temperature=temperature, max_tokens=max_tokens, seed=seed),
        include_format_spread=(value("format-spread") or "").lower() in ("1", "true", "yes"),
        scratch_dir=Path(value("scratch") or DEFAULT_SCRATCH),
        device=value("device") or "auto",
    )


ENV_VARS: dict[str, tuple[str, str]] = {
    "model": ("MODEL_URI", "model directory: local path or s3://bucket/prefix/"),
    "benchmark": ("BENCHMARK_URI", "benchmark directory: local path or s3://bucket/prefix/"),
    "out": ("OUT_DIR", "local run directory (exclusive with --eval-bucket)"),
    "eval-bucket": ("EVAL_BUCKET", "write records to s3://BUCKET/results/items/"),
    "run-id": ("RUN_ID", "run id recorded in results (default: a new UUID)"),
    "model-id": ("MODEL_ID", "model id (default: the model directory's name)"),
    "revision": ("MODEL_REVISION", "revision (default: sha256 of the model files)"),
    "mode": ("MODE", "mcq: letter (default) or loglik"),
    "batch-size": ("BATCH_SIZE", f"sequences per forward pass (default {DEFAULT_BATCH_SIZE})"),
    "max-tokens": ("MAX_TOKENS", "max new tokens per generation (default 256)"),
    "temperature": ("TEMPERATURE", "must be 0: greedy decoding"),
    "seed": ("SEED", "MCQ shuffle seed, part of the cache key (default 0)"),
    "format-spread": ("FORMAT_SPREAD", "also run the prompt variants (env: 1/true)"),
    "scratch": ("SCRATCH_DIR", f"download directory for s3:// inputs (default {DEFAULT_SCRATCH})"),
    "device": ("DEVICE", "auto (cuda if available), cuda or cpu"),
}
