"""`dapt-data`: run the pipeline or one step; `batch` is the AWS Batch entry point.

```
dapt-data run --config pipeline.yaml            # every step; finished steps are skipped
dapt-data STEP --config pipeline.yaml           # one step, STEP one of: ingest, clean, dedup,
                                                 #   decontaminate, redact, synthesize,
                                                 #   comprehension, instructions, manifest
dapt-data public-text --out FILE                 # Python's help topics as public JSONL text
dapt-data batch                                  # reads PIPELINE_CONFIG, OUTPUT_URI, STEPS
```

`--engine local|spark` (any command that runs steps) overrides the config's `engine`; the EMR
Serverless job (`dapt_data.spark_entry`) runs `batch --engine spark`.

Exit codes: 0 done, 2 bad config or environment, 1 a step failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dapt_data.config import ConfigError, Engine, PipelineConfig, load_config
from dapt_data.pipeline import (
    StepResult,
    run_clean,
    run_comprehension,
    run_decontaminate,
    run_dedup,
    run_ingest,
    run_instructions,
    run_manifest,
    run_redact,
    run_synthesize,
    summary,
)
from dapt_data.public import export as export_public
from dapt_data.storage import is_s3, read_bytes

Step = Callable[[PipelineConfig], StepResult]

STEPS: dict[str, Step] = {
    "ingest": run_ingest,
    "clean": run_clean,
    "dedup": run_dedup,
    "decontaminate": run_decontaminate,
    "redact": run_redact,
    "synthesize": run_synthesize,
    "comprehension": run_comprehension,
    "instructions": run_instructions,
    "manifest": run_manifest,
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="dapt-data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="every step in order")
    run.add_argument("--config", type=Path, required=True)
    stepwise = [run]
    for name in STEPS:
        step = commands.add_parser(name, help=f"only the {name} step")
        step.add_argument("--config", type=Path, required=True)
        stepwise.append(step)
    stepwise.append(
        commands.add_parser("batch", help="AWS Batch entry point: settings from the environment")
    )
    for command in stepwise:
        command.add_argument(
            "--engine",
            choices=[e.value for e in Engine],
            help="override the config's engine (local: this process; spark: Apache Spark)",
        )
    public = commands.add_parser(
        "public-text", help="write Python's help topics (PSF-2.0) as public JSONL text"
    )
    public.add_argument("--out", type=Path, required=True)
    return parser


def run_steps(config: PipelineConfig, names: Sequence[str]) -> list[StepResult]:
    """Run the named steps in order, printing each summary as it finishes."""
    results = []
    for name in names:
        result = STEPS[name](config)
        print(summary([result]), flush=True)
        results.append(result)
    return results


def batch_settings(env: Mapping[str, str]) -> tuple[str, str | None, list[str]]:
    """(config URI, output override, steps) from the environment; all problems at once."""
    problems = []
    config_uri = env.get("PIPELINE_CONFIG", "")
    if not config_uri:
        problems.append("PIPELINE_CONFIG: environment variable is not set")
    raw = env.get("STEPS", "all")
    steps = [s.strip() for s in raw.split(",") if s.strip()]
    steps = list(STEPS) if steps == ["all"] else steps
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        problems.append(
            f"STEPS = '{raw}': unknown steps {unknown}; choose from {list(STEPS)} or 'all'"
        )
    if problems:
        raise ConfigError(ENVIRONMENT, problems)
    return config_uri, env.get("OUTPUT_URI") or None, steps


def configured_steps(
    config: PipelineConfig, names: list[str], every: bool, source: str = "<config>"
) -> list[str]:
    """`names` without optional steps whose section is absent; naming one alone is an error
    (of the config at `source`, which lacks the section)."""
    absent = [n for n in names if n in OPTIONAL_STEPS and getattr(config, n) is None]
    if absent and not every:
        raise ConfigError(
            source, [f"{n}: the '{n}' step needs this section; none is set" for n in absent]
        )
    return [n for n in names if n not in absent]


def load_config_uri(uri: str) -> PipelineConfig:
    """A config from a local path or S3 (copied to a temp file to keep its suffix)."""
    if not is_s3(uri):
        return load_config(Path(uri))
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / uri.rsplit("/", 1)[-1]
        local.write_bytes(read_bytes(uri))
        try:
            return load_config(local)
        except ConfigError as err:  # name the S3 object, not the temporary copy
            raise ConfigError(uri, err.problems) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `dapt-data`."""
    args = build_parser().parse_args(argv)
    if args.command == "public-text":
        print(f"{export_public(args.out)} documents written to {args.out}")
        return 0
    try:
        if args.command == "batch":
            uri, output, names = batch_settings(os.environ)
            config = load_config_uri(uri)
            if output:
                config = config.model_copy(update={"output": output})
        else:
            uri = str(args.config)
            config = load_config(args.config)
            names = list(STEPS) if args.command == "run" else [args.command]
        if args.engine:
            config = config.model_copy(update={"engine": Engine(args.engine)})
        names = configured_steps(config, names, every=names == list(STEPS), source=uri)
    except ConfigError as err:
        print(f"dapt-data: {err}", file=sys.stderr)
        return 2
    try:
        run_steps(config, names)
    except Exception as err:  # the summary so far is printed; the message names the rule
        print(f"dapt-data: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


OPTIONAL_STEPS = ("synthesize", "comprehension", "instructions")
"""Steps that need their own config section; `run` and `STEPS=all` leave them out without it."""
ENVIRONMENT = "<environment>"
"""The source of a config error in the batch job's settings (PIPELINE_CONFIG, STEPS)."""

if __name__ == "__main__":
    sys.exit(main())
