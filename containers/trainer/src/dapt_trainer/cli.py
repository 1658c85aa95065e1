"""``dapt-train``: run an experiment's stages from a YAML config.

Inside the AWS Batch job the config comes from the environment (``DAPT_CONFIG``, ``DAPT_OUTPUT``)
and torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; by hand, ``--config FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Never reach a model hub: weights come from a local folder or S3 only. Set before transformers
# is imported anywhere in this process.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from dapt_trainer.checkpoint import ResumeError
from dapt_trainer.config import ConfigError, ExperimentConfig, load_config
from dapt_trainer.data.cache import NoDataError
from dapt_trainer.data.readers import ManifestError
from dapt_trainer.generation_eval import GenerationEvalError
from dapt_trainer.inputs import input_problems
from dapt_trainer.model import Dist, setup_device
from dapt_trainer.recipe import PublishError, StopFlag, prepare_token_caches, run_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dapt-train", description=__doc__)
    parser.add_argument("--config", help="YAML file, local or s3:// (default: $DAPT_CONFIG)")
    parser.add_argument("--output", help="local folder or s3:// prefix (default: $DAPT_OUTPUT)")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    parser.add_argument(
        "--tokenize-only",
        action="store_true",
        help="tokenise every stage's sources into the shared token cache and exit (no GPU)",
    )
    args = parser.parse_args(argv)

    location = args.config or os.environ.get(ENV_CONFIG)
    if not location:
        missing = f"{ENV_CONFIG}: environment variable is not set (or pass --config)"
        print(str(ConfigError(ENVIRONMENT, [missing])), file=sys.stderr)
        return EXIT_USAGE
    try:
        experiment = load_config(location)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    output = args.output or os.environ.get(ENV_OUTPUT) or experiment.output
    if not output:
        missing = f"{ENV_OUTPUT}: environment variable is not set (or set 'output' or --output)"
        print(str(ConfigError(ENVIRONMENT, [missing])), file=sys.stderr)
        return EXIT_USAGE
    # Models, tokenizers, chat templates, manifests and data files: found before a GPU is paid for.
    problems = input_problems(experiment)
    if problems:
        print(str(ConfigError(location, problems)), file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.check:
            print(json.dumps({"config": location, "stages": [s.name for s in experiment.stages]}))
        return (
            0
            if args.check
            else tokenize_only(experiment, output)
            if args.tokenize_only
            else train(experiment, output)
        )
    # e.g. a data file differs from what its manifest promised, a source with no usable row, a
    # checkpoint saved with another config
    except (ManifestError, NoDataError, ResumeError, GenerationEvalError) as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE


def train(experiment: ExperimentConfig, output: str) -> int:
    """Run every stage; 143 when stopped by SIGTERM after a checkpoint, else 0."""
    stop = StopFlag()
    stop.install()
    dist = Dist.from_env()
    device = setup_device(dist)
    try:
        results = run_experiment(experiment, output, dist, device, lambda _step: stop.requested)
    finally:
        import torch.distributed  # noqa: PLC0415

        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if dist.is_main:
        print(
            json.dumps(
                {
                    "event": "done",
                    "stages": [
                        {"stage": r.stage, "status": r.status, "step": r.step, "heldout": r.heldout}
                        for r in results
                    ],
                }
            ),
            flush=True,
        )
    # 143 (128 + SIGTERM) after a clean checkpoint lets a Batch retry strategy resume the job.
    return EXIT_INTERRUPTED if any(r.status == "interrupted" for r in results) else 0


def tokenize_only(experiment: ExperimentConfig, output: str) -> int:
    """Fill the shared token cache; 1 when a source could not be published there."""
    try:
        summary = prepare_token_caches(experiment, output)
    except PublishError as err:
        print(str(err), file=sys.stderr)
        return 1
    print(json.dumps({"event": "tokenized", "sources": summary}), flush=True)
    return 0


JOB_CONTRACT = json.loads(Path(__file__).with_name("job_contract.json").read_text(encoding="utf-8"))
"""Environment variables and exit codes shared with the stacks and the CLI."""
ENV_CONFIG: str = JOB_CONTRACT["environment"]["config"]
ENV_OUTPUT: str = JOB_CONTRACT["environment"]["output"]
ENVIRONMENT = "<environment>"
"""The source a problem of the environment (or of the flags standing in for it) is reported
under."""
EXIT_USAGE: int = JOB_CONTRACT["exitCodes"]["configError"]
"""A configuration or usage error: it fails the same way every time, so Batch never retries it."""
EXIT_INTERRUPTED: int = JOB_CONTRACT["exitCodes"]["interrupted"]

if __name__ == "__main__":
    sys.exit(main())
