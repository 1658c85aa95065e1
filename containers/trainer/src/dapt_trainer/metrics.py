"""Per-step metrics: JSON lines in the stage output, CloudWatch embedded-metric-format lines
on stdout (the Batch job's log stream; CloudWatch extracts the metrics without an agent), and
the same records as TensorBoard scalars (`tensorboard --logdir <stage>/tensorboard`).

``metrics.jsonl`` is the record; the TensorBoard event file is rebuilt from it whenever a resume
drops lines, so both always hold each step once."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


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
    """Appends records to ``metrics.jsonl``, echoes them as EMF on stdout and, with
    ``tensorboard``, adds them to ``tensorboard/`` beside it (rank 0 only)."""

    def __init__(
        self,
        path: Path,
        dimensions: dict[str, str],
        enabled: bool,
        stream: TextIO | None = None,
        tensorboard: bool = False,
    ) -> None:
        self.path = path
        self.dimensions = dimensions
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.tensorboard = (
            TensorBoardLog(path.parent / TENSORBOARD_DIR) if enabled and tensorboard else None
        )
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def keep_until(self, step: int) -> None:
        """Drop the records after ``step``: a run resumed from that step's checkpoint logs them
        again (they were written after the checkpoint by a process that then died)."""
        if not self.enabled:
            return
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        kept = [line for line in lines if _step(line) <= step]
        if len(kept) < len(lines):
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        if self.tensorboard:
            self.tensorboard.rebuild(json.loads(line) for line in kept)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        print(emf_line(record, self.dimensions), file=self.stream, flush=True)
        if self.tensorboard:
            self.tensorboard.write(record)

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()


TENSORBOARD_DIR = "tensorboard"
"""Beside ``metrics.jsonl`` in the stage output; uploaded with it when the output is S3."""


class TensorBoardLog:
    """Every numeric field of a record (``step`` aside) as a TensorBoard scalar at its step;
    `loss`, `lr`, `heldout/...`, `generation/<task>/contains` and so on keep their names, so
    TensorBoard groups them by their prefix."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._writer: SummaryWriter | None = None

    def write(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        if not isinstance(step, int | float) or isinstance(step, bool):
            return
        writer = self._open()
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                writer.add_scalar(key, value, global_step=int(step))
        writer.flush()

    def rebuild(self, records: Iterable[dict[str, Any]]) -> None:
        """Start a new event file holding ``records`` only (after a resume dropped lines:
        TensorBoard would otherwise show the dead process's steps beside the new ones)."""
        self.close()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        for record in records:
            self.write(record)

    def event_file(self) -> Path | None:
        """The event file (one: each rebuild starts the folder again), None before any write."""
        found = sorted(self.log_dir.glob("events.out.tfevents.*")) if self.log_dir.exists() else []
        return found[-1] if found else None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self) -> SummaryWriter:
        if self._writer is None:
            # Imported here: loading TensorBoard takes a second, and only rank 0 writes.
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer


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
