"""FSDP2 on two CPU processes (gloo): it reproduces the single-process run, its checkpoints
resume exactly on two processes and on one, and activation checkpointing keeps the losses.

Spawning two processes that import torch and transformers costs far more than the tiny runs
themselves, so every sharded job of this module runs in one spawn, one job after the other
(``SHARDED``); each test asserts on its jobs. A resume there starts a new recipe in the same
processes: model, optimizer, data position and RNG come only from the checkpoint on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from conftest import MakeConfig, config_factory, run_sharded, write_jsonl
from dapt_trainer.checkpoint import latest_complete
from dapt_trainer.model import Dist
from dapt_trainer.recipe import run_experiment

CPU = torch.device("cpu")
OPTIMIZER = {"lr": 3e-3, "warmup_steps": 2, "schedule": "cosine", "weight_decay": 0.01}
MATCHES = {"steps": 3, "micro_batch_size": 1, "checkpoint": {"every_steps": 2}}
RESUMES = {
    "steps": 6,
    "micro_batch_size": 1,
    "checkpoint": {"every_steps": 2, "keep_last": 2},
    "optimizer": OPTIMIZER,
}
STOP_AT = 3
AC_STEPS, AC_ACCUM, LAYERS = 3, 2, 2
ACCUMULATES = {"steps": AC_STEPS, "micro_batch_size": 1, "grad_accum_steps": AC_ACCUM}
AC_ON = {"precision": "fp32", "activation_checkpointing": True}
CHUNKED = {"precision": "fp32", "activation_checkpointing": False, "loss_chunk_tokens": 16}


def _jobs(make: MakeConfig, root: Path) -> dict[str, tuple[Any, int | None]]:
    """Name -> (config, stop step), in the order the spawned processes run them."""
    return {
        "two": (make(MATCHES, output=str(root / "two")), None),
        "full": (make(RESUMES, output=str(root / "full")), None),
        "cut": (make(RESUMES, output=str(root / "cut")), STOP_AT),
        "cut-one": (make(RESUMES, output=str(root / "cut-one")), STOP_AT),  # resumed by one
        "resumed": (make(RESUMES, output=str(root / "cut")), None),
        "plain": (make(ACCUMULATES, output=str(root / "plain")), None),
        "ac": (make(ACCUMULATES, output=str(root / "ac"), compute=AC_ON), None),
        "chunked": (
            make(
                {**ACCUMULATES, "eval_generation": [_items(root)]},
                output=str(root / "chunked"),
                compute=CHUNKED,
            ),
            None,
        ),
    }


def _items(root: Path) -> dict[str, Any]:
    """A generation task of three items: one rank decodes a stand-in in the second round."""
    rows = [{"question": q, "reference_answer": "the blog"} for q in ("a page", "a form", "a menu")]
    path = write_jsonl(root / "items.jsonl", rows)
    return {"name": "qa", "path": str(path), "max_new_tokens": 3}


@pytest.fixture(scope="module")
def sharded(
    model_dir: Path, corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, MakeConfig, dict[str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("sharded")
    make = config_factory(model_dir, corpus_dir, root)
    jobs = _jobs(make, root)
    results = run_sharded(list(jobs.values()), root)
    return root, make, dict(zip(jobs, results, strict=True))


def _final_weights(output: Path) -> dict[str, torch.Tensor]:
    final = output / "exp" / "dapt" / "final"
    assert (final / "COMPLETE").exists()
    weights: dict[str, torch.Tensor] = load_file(final / "model" / "model.safetensors")
    return weights


def test_two_process_fsdp2_matches_single_process(
    sharded: tuple[Path, MakeConfig, dict[str, dict[str, Any]]], make_config: MakeConfig
) -> None:
    root, _, results = sharded
    single = make_config({**MATCHES, "micro_batch_size": 2})
    expected = run_experiment(single, str(single.output), Dist(), CPU)[0].losses
    assert results["two"]["losses"] == pytest.approx(expected, rel=1e-4)
    final = root / "two" / "exp" / "dapt" / "final"
    assert (final / "COMPLETE").exists() and (final / "model" / "model.safetensors").exists()


def test_fsdp2_checkpoint_resumes_exactly_on_two_and_on_one_process(
    sharded: tuple[Path, MakeConfig, dict[str, dict[str, Any]]],
) -> None:
    """Two ranks stop at step 3 (a checkpoint at step 2 exists too), a new recipe resumes from
    step 3 with the losses and final weights of the uninterrupted two-rank run; one process
    (micro batch 2: the same global rows) resumes the same sharded checkpoint equally."""
    root, make, results = sharded
    expected = results["full"]["losses"]
    first, second = results["cut"], results["resumed"]
    assert results["full"]["status"] == "complete" and len(expected) == 6
    assert first["status"] == "interrupted" and first["step"] == STOP_AT
    ckpts = root / "cut-one" / "exp" / "dapt" / "checkpoints"
    assert latest_complete(str(ckpts)) == str(ckpts / f"step-{STOP_AT:08d}")
    assert {p.name for p in (ckpts / f"step-{STOP_AT:08d}").glob("rng-rank*.pt")} == {
        "rng-rank0.pt",
        "rng-rank1.pt",
    }

    assert second["status"] == "complete" and second["step"] == 6
    assert first["losses"] + second["losses"] == pytest.approx(expected, rel=1e-6)
    want = _final_weights(root / "full")
    got = _final_weights(root / "cut")
    assert want.keys() == got.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-6, atol=1e-7, msg=name)

    one = make({**RESUMES, "micro_batch_size": 2}, output=str(root / "cut-one"))
    [third] = run_experiment(one, str(one.output), Dist(), CPU)
    assert third.status == "complete" and third.step == 6
    assert results["cut-one"]["losses"] + third.losses == pytest.approx(expected, rel=1e-5)
    for name, tensor in _final_weights(root / "cut-one").items():
        torch.testing.assert_close(tensor, want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_activation_checkpointing_under_fsdp2_keeps_the_losses(
    sharded: tuple[Path, MakeConfig, dict[str, dict[str, Any]]],
) -> None:
    """Two ranks with gradient accumulation, with and without activation checkpointing: the
    layers are recomputed in backward (one extra forward per layer and micro batch) and the
    losses are the same."""
    root, _, results = sharded
    without, with_ac = results["plain"], results["ac"]
    assert without["status"] == with_ac["status"] == "complete"
    assert with_ac["layer_calls"] - without["layer_calls"] == AC_STEPS * AC_ACCUM * LAYERS
    assert with_ac["losses"] == pytest.approx(without["losses"], rel=1e-6)
    assert (root / "ac" / "exp" / "dapt" / "final" / "COMPLETE").exists()


def test_the_chunked_loss_and_generation_eval_under_fsdp2(
    sharded: tuple[Path, MakeConfig, dict[str, dict[str, Any]]],
) -> None:
    """The LM head + cross-entropy in chunks of 16 of a row's 64 tokens, on two ranks: the head's
    all-gathered weight is used inside the root's forward as in the unchunked run, so the
    losses (hence the gradients of the steps before them) are the same."""
    root, _, results = sharded
    assert results["chunked"]["status"] == "complete"
    assert results["chunked"]["losses"] == pytest.approx(results["plain"]["losses"], rel=1e-5)
    # The same job evaluates by generation, the ranks decoding in lockstep (no hang), items
    # split between them, at step 0 and after the last step.
    metrics = root / "chunked" / "exp" / "dapt" / "metrics.jsonl"
    records = [json.loads(x) for x in metrics.read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in records if "generation/qa/contains" in r] == [0, AC_STEPS]
