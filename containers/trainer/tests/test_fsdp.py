"""FSDP2 on two CPU processes (gloo) reproduces the single-process run."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from torch.multiprocessing.spawn import spawn

from conftest import MakeConfig
from dapt_trainer.config import ExperimentConfig, dump_config, parse_config
from dapt_trainer.model import Dist, setup_device
from dapt_trainer.recipe import run_experiment


def _worker(rank: int, world: int, port: int, config_yaml: str, out: str) -> None:
    import yaml  # noqa: PLC0415

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    config = parse_config(yaml.safe_load(config_yaml))
    dist = Dist.from_env()
    device = setup_device(dist)
    try:
        [result] = run_experiment(config, str(config.output), dist, device)
        if rank == 0:
            Path(out).write_text(json.dumps(result.losses), encoding="utf-8")
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_process_fsdp2_matches_single_process(make_config: MakeConfig, tmp_path: Path) -> None:
    stage = {"steps": 3, "micro_batch_size": 2, "checkpoint": {"every_steps": 2}}
    single: ExperimentConfig = make_config(stage, output=str(tmp_path / "one"))
    expected = run_experiment(single, str(single.output), Dist(), torch.device("cpu"))[0].losses

    sharded = make_config({**stage, "micro_batch_size": 1}, output=str(tmp_path / "two"))
    out = tmp_path / "losses.json"
    spawn(_worker, args=(2, _free_port(), dump_config(sharded), str(out)), nprocs=2)  # type: ignore[no-untyped-call]
    losses = json.loads(out.read_text())
    assert losses == pytest.approx(expected, rel=1e-4)
    final = tmp_path / "two" / "exp" / "dapt" / "final"
    assert (final / "COMPLETE").exists() and (final / "model" / "model.safetensors").exists()
