"""FSDP2 on two CPU processes (gloo): it reproduces the single-process run, its checkpoints
resume exactly on two processes and on one, and activation checkpointing keeps the losses.

Spawning two processes that import torch and transformers costs far more than the tiny runs
themselves, so every sharded job of this module runs in one spawn, one job after the other
(``SHARDED``); each test asserts on its jobs. A resume there starts a new recipe in the same
processes: model, optimizer, data position and RNG come only from the checkpoint on disk."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from conftest import MakeConfig, config_factory, run_sharded, write_jsonl
from dapt_trainer.checkpoint import latest_complete
from dapt_trainer.config import ExperimentConfig
from dapt_trainer.memory import measure
from dapt_trainer.model import Dist, setup_model
from dapt_trainer.recipe import StageRecipe, run_experiment
from test_memory import TOLERANCE
from test_memory import case as memory_case

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
LOADED = "loaded.pt"
FULL_CASE = "tiny full, FSDP2 on two processes"
LORA_CASE = "tiny LoRA, FSDP2 on two processes with accumulation"


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


def _probes(make: MakeConfig, root: Path) -> dict[str, tuple[str, Any]]:
    """Name -> (``module:function``, config): what runs on every rank after the jobs."""
    one_step = {"steps": 2, "micro_batch_size": 1, "grad_accum_steps": 2}
    lora = {"name": "lora", "lora": memory_case(LORA_CASE)["lora"]}
    return {
        "load": ("test_fsdp:probe_load", make({"method": lora}, output=str(root / "load"))),
        "full-memory": ("test_fsdp:probe_memory", make(one_step, output=str(root / "fm"))),
        "lora-memory": (
            "test_fsdp:probe_memory",
            make({**one_step, "method": lora}, output=str(root / "lm")),
        ),
    }


@pytest.fixture(scope="module")
def sharded(
    model_dir: Path, corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, MakeConfig, dict[str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("sharded")
    make = config_factory(model_dir, corpus_dir, root)
    jobs, probes = _jobs(make, root), _probes(make, root)
    results = run_sharded(list(jobs.values()), root, probes=list(probes.values()))
    return root, make, dict(zip([*jobs, *probes], results, strict=True))


def probe_load(config: ExperimentConfig, dist: Dist, device: torch.device) -> dict[str, Any]:
    """Set the model up as the recipe does, counting the weight loads of this rank; rank 0
    saves the gathered full weights and the buffers next to the config's output."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    calls = [0]
    original = AutoModelForCausalLM.from_pretrained

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    stage = config.stages[0]
    AutoModelForCausalLM.from_pretrained = counted
    try:
        torch.manual_seed(config.seed)
        model = setup_model(Path(str(stage.model.path)), stage.method, config.compute, dist, device)
    finally:
        AutoModelForCausalLM.from_pretrained = original
    weights = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    if dist.is_main:
        buffers = {name: b.clone() for name, b in model.named_buffers()}
        Path(str(config.output)).mkdir(parents=True, exist_ok=True)
        torch.save({"weights": weights, "buffers": buffers}, Path(str(config.output), LOADED))
    return {"from_pretrained": calls[0], "weights": measure(model).weights}


def probe_memory(config: ExperimentConfig, dist: Dist, device: torch.device) -> dict[str, Any]:
    """One optimizer step of the recipe (two micro batches); what this rank holds before each
    micro batch (the second one: the first one's gradients) and after the optimizer step.
    Not from a forward hook: inside the root's forward FSDP2 has swapped in its unsharded
    parameters."""
    recipe = StageRecipe(config, config.stages[0], str(config.output), dist, device)
    recipe.setup()
    seen: dict[str, Any] = {"forwards": []}
    loss_sum = recipe.loss_sum

    def measured_loss_sum(batch: Any) -> torch.Tensor:
        seen["forwards"].append(asdict(measure(recipe.model)))
        return loss_sum(batch)

    def after_step(*_: Any) -> None:
        seen["after_step"] = asdict(measure(recipe.model, recipe.optimizer))

    recipe.loss_sum = measured_loss_sum  # type: ignore[method-assign]
    recipe.optimizer.register_step_post_hook(after_step)
    recipe.train_step()
    recipe.cleanup()
    return seen


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


def test_only_rank_0_reads_the_weights_and_the_shards_are_the_single_process_load(
    sharded: tuple[Path, MakeConfig, dict[str, dict[str, Any]]], model_dir: Path
) -> None:
    """Every rank builds the model on the meta device and receives its shards from rank 0,
    the only one to load the weights (the old load read them on every rank and moved the
    whole model to each device before sharding): the gathered weights and the buffers are
    exactly those of the single-process load, LoRA adapters (seeded) included."""
    root, make, results = sharded
    ranks = results["load"]["ranks"]
    assert [r["from_pretrained"] for r in ranks] == [1, 0]
    config = make({"method": {"name": "lora", "lora": memory_case(LORA_CASE)["lora"]}})
    stage = config.stages[0]
    torch.manual_seed(config.seed)
    single = setup_model(model_dir, stage.method, config.compute, Dist(), CPU)
    loaded = torch.load(root / "load" / LOADED, weights_only=True)
    want = single.state_dict()
    assert loaded["weights"].keys() == want.keys()
    for name, tensor in want.items():
        assert torch.equal(loaded["weights"][name], tensor), name
    for name, buffer in single.named_buffers():
        assert torch.equal(loaded["buffers"][name], buffer), name
    # Each rank holds its shards only: together, the model once.
    assert sum(r["weights"] for r in ranks) == sum(
        p.numel() * p.element_size() for p in single.parameters()
    )


@pytest.mark.parametrize(
    ("probe", "name"), [("full-memory", FULL_CASE), ("lora-memory", LORA_CASE)]
)
def test_sharded_training_allocates_what_the_fit_check_counts(
    sharded: tuple[Path, MakeConfig, dict[str, dict[str, Any]]], probe: str, name: str
) -> None:
    """Two ranks, two micro batches per step. Full fine-tuning reduce-scatters every micro batch
    (before: once per step, holding unsharded fp32 gradients of every weight in between), so
    the second forward finds only sharded gradients; LoRA defers it and holds the adapters'
    unsharded gradients, as counted. Per GPU = the mean of the ranks (shards may be uneven)."""
    _, _, results = sharded
    c = memory_case(name)
    ranks = results[probe]["ranks"]

    def mean(when: str, part: str) -> float:
        values: list[float] = [
            (r["forwards"][1] if when == "second" else r[when])[part] for r in ranks
        ]
        return sum(values) / len(values)

    expect = c["expect"]
    held = mean("second", "gradients") + mean("second", "accumulation")
    if c["method"] == "full":
        assert mean("second", "accumulation") == 0
        assert held == pytest.approx(expect["gradients"], rel=TOLERANCE)
    else:
        assert mean("second", "accumulation") == pytest.approx(
            expect["accumulation"], rel=TOLERANCE
        )
    for part in ("weights", "gradients", "optimizer"):
        assert mean("after_step", part) == pytest.approx(expect[part], rel=TOLERANCE), part
    assert mean("after_step", "accumulation") == 0
