"""`dapt-local`: the whole method on this machine.

```
dapt-local run --config examples/website-builder/adapt.yaml [--full] [--no-progress]
dapt-local import-model --config adapt.yaml [--to s3://lake/models/NAME/]
```

`run` imports the base model, prepares the data, trains, serves and evaluates the base model,
the adapted model and the base model with retrieval, and writes the report; a rerun skips what
is done. `--full` evaluates every benchmark item instead of the configured samples.
Exit codes: 0 the gate passed, 3 it failed (the report says why), 2 bad config, 1 a stage
failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dapt_local.config import ConfigError, load_config
from dapt_local.model_import import ModelImportError, import_model, upload
from dapt_local.pipeline import PipelineError, run


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dapt-local`."""
    parser = argparse.ArgumentParser(prog="dapt-local", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="every stage, skipping what is done")
    run_parser.add_argument("--config", type=Path, required=True)
    run_parser.add_argument("--full", action="store_true", help="all benchmark items")
    run_parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    imp = commands.add_parser("import-model", help="import (and optionally upload) the base model")
    imp.add_argument("--config", type=Path, required=True)
    imp.add_argument("--to", help="an s3:// prefix to copy the imported folder to")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, full=getattr(args, "full", False))
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "import-model":
            model = import_model(config.base_model, Path(config.cache))
            where = upload(model, args.to) if args.to else str(model.path)
            print(json.dumps({"model": where, "revision": model.revision, "reused": model.reused}))
            return 0
        report = run(config, show_progress=not args.no_progress)
    except (PipelineError, ModelImportError) as err:
        print(f"dapt-local: {err}", file=sys.stderr)
        return 1
    print(summary(report))
    return 0 if report["decision"]["passed"] else EXIT_GATE_FAILED


def summary(report: dict[str, object]) -> str:
    """The lines printed after a run: the decision, each task, where the report is."""
    decision = report["decision"]
    tasks = report["tasks"]
    assert isinstance(decision, dict)
    assert isinstance(tasks, list)
    lines = [f"gate: {'PASS' if decision['passed'] else 'FAIL'}"]
    lines += [f"  - {reason}" for reason in decision["reasons"]]
    for task in tasks:
        models = task["models"]
        paired = task["paired_vs_base"].get("adapted")
        values = "  ".join(
            f"{v}={'n/a' if models[v]['value'] is None else format(models[v]['value'], '.3f')}"
            for v in ("base", "adapted", "base+retrieval")
            if v in models
        )
        delta = (
            f"  delta {paired['mean']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]"
            if paired and paired["mean"] is not None
            else ""
        )
        lines.append(f"{task['benchmark']:<14} {task['metric']:<26} {values}{delta}")
    lines.append(
        "(n/a: no reply in the asked format, so no macro-F1; delta = strict paired difference)"
    )
    timings = report["timings_s"]
    assert isinstance(timings, dict)
    lines.append("wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return "\n".join(lines)


EXIT_USAGE = 2
EXIT_GATE_FAILED = 3

if __name__ == "__main__":
    sys.exit(main())
