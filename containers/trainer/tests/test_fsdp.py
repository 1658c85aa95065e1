"""FSDP2 on two CPU processes (gloo) reproduces the single-process run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import MakeConfig, run_sharded
from dapt_trainer.config import ExperimentConfig
from dapt_trainer.model import Dist
from dapt_trainer.recipe import run_experiment


def test_two_process_fsdp2_matches_single_process(make_config: MakeConfig, tmp_path: Path) -> None:
    stage = {"steps": 3, "micro_batch_size": 2, "checkpoint": {"every_steps": 2}}
    single: ExperimentConfig = make_config(stage, output=str(tmp_path / "one"))
    expected = run_experiment(single, str(single.output), Dist(), torch.device("cpu"))[0].losses

    sharded = make_config({**stage, "micro_batch_size": 1}, output=str(tmp_path / "two"))
    [result] = run_sharded([(sharded, None)], tmp_path)
    assert result["losses"] == pytest.approx(expected, rel=1e-4)
    final = tmp_path / "two" / "exp" / "dapt" / "final"
    assert (final / "COMPLETE").exists() and (final / "model" / "model.safetensors").exists()
