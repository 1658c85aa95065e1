"""A reduced run of the example pipeline on the real base model: the tests' shared fixture.

The same code path as `make adapt`, on the real SmolLM2-135M-Instruct (imported from its PyPI
wheel into the project cache, shared with `make adapt`), with 2 items per benchmark, 2
training steps on 128-token rows and a small held-out slice: about two minutes here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from dapt_local.config import AdaptConfig, load_config
from dapt_local.pipeline import run

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "website-builder" / "adapt.yaml"
CACHE = REPO / ".cache" / "dapt"

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ITEMS_PER_BENCHMARK = 2
"""Items each benchmark is sampled down to (every variant answers the same items)."""


def reduced(tmp: Path, **changes: Any) -> Path:
    """The example config, made small; `changes` replace top-level sections' keys."""
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    base = EXAMPLE.parent
    raw["output"] = str(tmp / "out")
    raw["cache"] = str(CACHE)
    raw["data"]["pipeline"] = str(base / raw["data"]["pipeline"])
    raw["data"]["public"]["heldout_examples"] = 4
    stage = raw["train"]["stage"]
    stage["steps"] = 2
    stage["data"]["seq_len"] = 128
    stage["micro_batch_size"] = 2
    stage["optimizer"]["warmup_steps"] = 0
    stage["checkpoint"] = {"every_steps": 1000, "keep_last": 1}
    for run_ in raw["evaluate"]["benchmarks"].values():
        run_["path"] = str(base / run_["path"])
        run_["sample"] = ITEMS_PER_BENCHMARK
        run_["max_tokens"] = min(run_.get("max_tokens", 64), 12)
    raw["evaluate"]["concurrency"] = 4
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    path = tmp / "adapt.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def reduced_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[AdaptConfig, dict[str, Any]]:
    """The reduced pipeline, run once for the session: (config, report)."""
    tmp = tmp_path_factory.mktemp("adapt")
    config = load_config(reduced(tmp))
    return config, run(config, show_progress=False)
