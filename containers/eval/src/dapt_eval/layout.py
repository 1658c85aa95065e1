"""Where each kind of object lives in the eval bucket (``eval_bucket_layout.json``).

The same file is read by the TypeScript Lambdas, the CLI and the eval stack's IAM scoping, so a
prefix is defined once for both runtimes.
"""

from __future__ import annotations

import json
from pathlib import Path

_LAYOUT: dict[str, str] = json.loads(
    Path(__file__).with_name("eval_bucket_layout.json").read_text(encoding="utf-8")
)

BENCHMARKS_PREFIX: str = _LAYOUT["benchmarks"]
"""Benchmark manifests and items."""
RUNS_PREFIX: str = _LAYOUT["runs"]
"""Run specs, shards, manifests and reports, one folder per run id."""
RESULTS_PREFIX: str = _LAYOUT["results"]
"""One result record per content-addressed key."""
ATHENA_PREFIX: str = _LAYOUT["athena"]
"""Rows of the Athena results table, one partition per run id."""
