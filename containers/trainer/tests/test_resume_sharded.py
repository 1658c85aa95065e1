"""Resume beyond the single-process full fine-tune: FSDP2 checkpoints (two gloo CPU processes,
also resumed by one process), LoRA checkpoints, and activation checkpointing under FSDP2."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint.filesystem import FileSystemReader

from conftest import MakeConfig, run_sharded
from dapt_trainer.checkpoint import latest_complete
from dapt_trainer.model import Dist
from dapt_trainer.recipe import run_experiment

CPU = torch.device("cpu")
OPTIMIZER = {"lr": 3e-3, "warmup_steps": 2, "schedule": "cosine", "weight_decay": 0.01}


def _final_weights(output: Path) -> dict[str, torch.Tensor]:
    final = output / "exp" / "dapt" / "final"
    assert (final / "COMPLETE").exists()
    weights: dict[str, torch.Tensor] = load_file(final / "model" / "model.safetensors")
    return weights


def test_fsdp2_checkpoint_resumes_exactly_on_two_and_on_one_process(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """Two ranks stop at step 3 (a checkpoint at step 2 exists too), fresh ranks resume from step 3
    with the losses and final weights of the uninterrupted two-rank run; one process (micro batch
    2: the same global rows) resumes the same sharded checkpoint equally."""
    stage = {
        "steps": 6,
        "micro_batch_size": 1,
        "checkpoint": {"every_steps": 2, "keep_last": 2},
        "optimizer": OPTIMIZER,
    }
    full = make_config(stage, output=str(tmp_path / "full"))
    cut = make_config(stage, output=str(tmp_path / "cut"))
    stop_at = 3
    reference, first = run_sharded([(full, None), (cut, stop_at)], tmp_path)
    expected = reference["losses"]
    assert reference["status"] == "complete" and len(expected) == 6
    assert first["status"] == "interrupted" and first["step"] == stop_at
    ckpts = tmp_path / "cut" / "exp" / "dapt" / "checkpoints"
    assert latest_complete(str(ckpts)) == str(ckpts / f"step-{stop_at:08d}")
    assert {p.name for p in (ckpts / f"step-{stop_at:08d}").glob("rng-rank*.pt")} == {
        "rng-rank0.pt",
        "rng-rank1.pt",
    }
    shutil.copytree(tmp_path / "cut", tmp_path / "cut-one")  # the same checkpoint, for one process

    [second] = run_sharded([(cut, None)], tmp_path)
    assert second["status"] == "complete" and second["step"] == 6
    assert first["losses"] + second["losses"] == pytest.approx(expected, rel=1e-6)
    want = _final_weights(tmp_path / "full")
    got = _final_weights(tmp_path / "cut")
    assert want.keys() == got.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-6, atol=1e-7, msg=name)

    one = make_config({**stage, "micro_batch_size": 2}, output=str(tmp_path / "cut-one"))
    [third] = run_experiment(one, str(one.output), Dist(), CPU)
    assert third.status == "complete" and third.step == 6
    assert first["losses"] + third.losses == pytest.approx(expected, rel=1e-5)
    for name, tensor in _final_weights(tmp_path / "cut-one").items():
        torch.testing.assert_close(tensor, want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_lora_resume_gives_the_uninterrupted_losses(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """A LoRA stage (with dropout, so the restored RNG matters) stopped at step 4 and resumed
    continues with the losses of the uninterrupted run; its checkpoint holds only the adapters."""
    stage: dict[str, Any] = {
        "steps": 7,
        "checkpoint": {"every_steps": 3, "keep_last": 2},
        "optimizer": OPTIMIZER,
        "method": {
            "name": "lora",
            "lora": {
                "rank": 4,
                "alpha": 8,
                "dropout": 0.1,
                "target_modules": ["q_proj", "v_proj", "down_proj"],
            },
        },
    }
    full = make_config(stage, output=str(tmp_path / "full"))
    expected = run_experiment(full, str(full.output), Dist(), CPU)[0].losses
    assert len(expected) == 7

    stop_at = 4
    cut = make_config(stage, output=str(tmp_path / "cut"))
    [first] = run_experiment(cut, str(cut.output), Dist(), CPU, stop=lambda s: s == stop_at)
    assert first.status == "interrupted" and first.step == stop_at
    ckpt = latest_complete(str(tmp_path / "cut" / "exp" / "dapt" / "checkpoints"))
    assert ckpt is not None and ckpt.endswith(f"step-{stop_at:08d}")
    saved = FileSystemReader(str(Path(ckpt) / "dcp")).read_metadata().state_dict_metadata
    weights = [k for k in saved if k.startswith("model.")]
    assert weights and all("lora_" in k for k in weights), weights

    [second] = run_experiment(cut, str(cut.output), Dist(), CPU)
    assert second.status == "complete" and second.step == 7
    assert first.losses + second.losses == pytest.approx(expected, rel=1e-6)


def test_activation_checkpointing_under_fsdp2_keeps_the_losses(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """Two ranks with gradient accumulation, with and without activation checkpointing: the
    layers are recomputed in backward (one extra forward per layer and micro batch) and the
    losses are the same."""
    steps, accum, layers = 3, 2, 2
    stage = {"steps": steps, "micro_batch_size": 1, "grad_accum_steps": accum}
    plain = make_config(stage, output=str(tmp_path / "plain"))
    checkpointed = make_config(
        stage,
        output=str(tmp_path / "ac"),
        compute={"precision": "fp32", "activation_checkpointing": True},
    )
    assert checkpointed.compute.activation_checkpointing
    assert not plain.compute.activation_checkpointing
    without, with_ac = run_sharded([(plain, None), (checkpointed, None)], tmp_path)
    assert without["status"] == with_ac["status"] == "complete"
    assert with_ac["layer_calls"] - without["layer_calls"] == steps * accum * layers
    assert with_ac["losses"] == pytest.approx(without["losses"], rel=1e-6)
    assert (tmp_path / "ac" / "exp" / "dapt" / "final" / "COMPLETE").exists()
