"""Memory: the frozen base of a LoRA run in bf16, and the fit check's accounting
(``dapt_trainer.memory``, mirrored by cli/train-fit.ts through ``conformance/memory.json``)
against what the trainer allocates on a tiny model (one process here; two in test_fsdp.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from dapt_trainer.config import ComputeConfig, MethodConfig
from dapt_trainer.memory import MemoryBytes, estimate, measure
from dapt_trainer.model import Dist, setup_model, trainable_parameters
from dapt_trainer.recipe import setup_optimizer

CPU = torch.device("cpu")
CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "conformance" / "memory.json").read_text(encoding="utf-8")
)["cases"]
TOLERANCE = 0.01
"""Measured bytes within 1% of the estimate (FSDP2 pads uneven shards; here they are exact)."""


def case(name: str) -> dict[str, Any]:
    return next(c for c in CASES if c["name"] == name)


def frozen_bytes(c: dict[str, Any]) -> int:
    return 2 if c["precision"] == "bf16" else 4


def estimated(c: dict[str, Any]) -> MemoryBytes:
    e = c["expect"]
    return estimate(
        c["method"],
        e["parameters"],
        e["adapter_parameters"],
        c["gpus"],
        frozen_bytes(c),
        c["grad_accum_steps"],
    )


def assert_measured(measured: MemoryBytes, c: dict[str, Any]) -> None:
    for part in ("weights", "gradients", "optimizer", "accumulation", "total"):
        want = c["expect"][part]
        assert getattr(measured, part) == pytest.approx(want, rel=TOLERANCE, abs=1), (c, part)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Llama with the conformance file's tiny dimensions (no tokenizer needed)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("memory") / "tiny"
    LlamaForCausalLM(LlamaConfig(**case("tiny full, one process")["model"])).save_pretrained(root)
    return root


def method_of(c: dict[str, Any]) -> MethodConfig:
    if c["method"] == "full":
        return MethodConfig(name="full")
    return MethodConfig.model_validate({"name": "lora", "lora": c["lora"]})


def one_step(model: Any, autocast: bool) -> torch.optim.Optimizer:
    """Forward, backward and an AdamW step as the recipe sets them up; the gradients stay."""
    from dapt_trainer.config import OptimizerConfig  # noqa: PLC0415

    optimizer, _ = setup_optimizer(trainable_parameters(model), OptimizerConfig(), 10, CPU)
    ids = torch.randint(0, 49, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    return optimizer


def test_every_conformance_case_is_the_estimate() -> None:
    for c in CASES:
        got = estimated(c)
        for part in ("weights", "gradients", "optimizer", "accumulation", "total"):
            assert getattr(got, part) == c["expect"][part], (c["name"], part)


def test_a_lora_base_is_kept_in_bf16_where_forwards_run_in_bf16(tiny_dir: Path) -> None:
    # GIVEN the same LoRA stage with bf16 compute (cpu_bf16: autocast as on a GPU) and in fp32
    c = case("tiny LoRA, bf16 frozen base, one process")
    bf16 = ComputeConfig(precision="bf16", cpu_bf16=True, activation_checkpointing=False)
    fp32 = ComputeConfig(precision="fp32", activation_checkpointing=False)
    models = {
        name: setup_model(tiny_dir, method_of(c), compute, Dist(), CPU)
        for name, compute in (("bf16", bf16), ("fp32", fp32))
    }
    # THEN the frozen weights are bf16 in the first (fp32 in the second), the adapters fp32
    for name, model in models.items():
        frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
        adapters = {p.dtype for p in model.parameters() if p.requires_grad}
        assert frozen == {torch.bfloat16 if name == "bf16" else torch.float32}, name
        assert adapters == {torch.float32}, name

    # AND the frozen parameter bytes halve, the adapters' stay
    def frozen_bytes_of(model: Any) -> int:
        return sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)

    assert frozen_bytes_of(models["bf16"]) * 2 == frozen_bytes_of(models["fp32"])
    # AND the bf16 model trains: one step under autocast, what the trainer holds is the estimate
    optimizer = one_step(models["bf16"], autocast=True)
    assert_measured(measure(models["bf16"], optimizer), c)


def test_full_fine_tuning_allocates_what_the_fit_check_counts(tiny_dir: Path) -> None:
    c = case("tiny full, one process")
    compute = ComputeConfig(precision="fp32", activation_checkpointing=False)
    model = setup_model(tiny_dir, method_of(c), compute, Dist(), CPU)
    assert sum(p.numel() for p in model.parameters()) == c["expect"]["parameters"]
    assert_measured(measure(model, one_step(model, autocast=False)), c)
