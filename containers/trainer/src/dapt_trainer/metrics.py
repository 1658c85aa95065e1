"""Per-step metrics: JSON lines in the stage output, and CloudWatch embedded-metric-format lines
on stdout (the Batch job's log stream; CloudWatch extracts the metrics without an agent)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO


def emf_line(
    record: dict[str, Any], dimensions: dict[str, str], namespace: str | None = None
) -> str:
    """One CloudWatch EMF document holding every numeric field of ``record``."""
    namespace = namespace or DEFAULT_NAMESPACE
    numeric = {k: v for k, v in record.items() if isinstance(v, int | float) and k != "step"}
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": k, "Unit": UNITS.get(k, "None")} for k in numeric],
                }
            ],
        },
        **dimensions,
        **numeric,
        "step": record.get("step"),
    }
    return json.dumps(document, separators=(",", ":"))


class MetricsLog:
    """Appends records to ``metrics.jsonl`` and echoes them as EMF on stdout (rank 0 only)."""

    def __init__(
        self, path: Path, dimensions: dict[str, str], enabled: bool, stream: TextIO | None = None
    ) -> None:
        self.path = path
        self.dimensions = dimensions
        self.enabled = enabled
        self.stream = stream or sys.stdout
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def keep_until(self, step: int) -> None:
        """Drop the records after ``step``: a run resumed from that step's checkpoint logs them
        again (they were written after the checkpoint by a process that then died)."""
        if not self.enabled or not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if _step(line) <= step]
        if len(kept) < len(lines):
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        print(emf_line(record, self.dimensions), file=self.stream, flush=True)


def _step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return float("inf")  # a line cut by the crash: dropped


DEFAULT_NAMESPACE = "DaptPlatform/Training"
UNITS = {
    "tokens_per_s": "Count/Second",
    "step_time_s": "Seconds",
    "mfu": "None",
    "packing_efficiency": "None",
}
