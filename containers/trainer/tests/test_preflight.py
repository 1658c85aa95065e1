"""The preflight job's arithmetic and a real run on one CPU process (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dapt_trainer.preflight import bus_bandwidth, efa_problems


def test_bus_bandwidth_follows_nccl_tests() -> None:
    algbw, busbw = bus_bandwidth(8 * 10**9, 1.0, world_size=8)
    assert algbw == pytest.approx(8.0)
    assert busbw == pytest.approx(8.0 * 2 * 7 / 8)


def test_efa_requested_without_devices_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FI_PROVIDER", "efa")
    monkeypatch.setattr("glob.glob", lambda _pattern: [])
    assert "no /dev/infiniband/uverbs*" in efa_problems()[0]
    monkeypatch.delenv("FI_PROVIDER")
    assert efa_problems() == []


def test_preflight_runs_under_torchrun_and_reports_json() -> None:
    env = {**os.environ, "PREFLIGHT_MAX_BYTES": "4096", "PREFLIGHT_ITERATIONS": "2"}
    env.pop("FI_PROVIDER", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=1",
            "-m",
            "dapt_trainer.preflight",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    assert report["world_size"] == 1
    assert report["backend"] == "gloo"
    assert [r["bytes"] for r in report["results"]] == [8, 64, 512, 4096]
    assert report["problems"] == []
