"""What training keeps in accelerator memory besides activations, per GPU: the accounting the
fit check (``cli/train-fit.ts``, ``npx dapt train``) mirrors, and the measurement it is tested
against (``tests/test_memory.py``; the shared cases are ``conformance/memory.json``).

Per parameter, sharded over G GPUs by FSDP2 (G = 1: one GPU, nothing sharded):

- **full fine-tuning**: fp32 master weights (4) + fp32 gradients (4, reduced in fp32) + AdamW's
  two fp32 moments (8) = 16 bytes / G. Gradients are reduce-scattered every micro batch, so
  accumulation keeps only the sharded ones.
- **LoRA**: the frozen base in bf16 where forwards run in bf16 (2 bytes; 4 in fp32) / G, the
  adapters 16 bytes / G as above, and, sharded with ``grad_accum_steps`` > 1, the adapters'
  unsharded fp32 gradients held between micro batches (4 bytes each, on every GPU: FSDP2's
  ``set_requires_gradient_sync(False)`` skips the reduce-scatter until the last micro batch).

Not counted: activations and logits (sequence length, micro batch, activation checkpointing),
the bf16 copies FSDP2 all-gathers for the layers in flight, and the allocator's slack; the fit
check keeps a margin for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MemoryBytes:
    """Bytes per GPU by what they hold."""

    weights: float
    gradients: float
    optimizer: float
    accumulation: float
    """Unsharded gradients held between micro batches (sharded LoRA with accumulation)."""

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.accumulation


def estimate(
    method: str,
    parameters: int,
    adapter_parameters: int,
    gpus: int,
    frozen_bytes: int,
    grad_accum_steps: int,
) -> MemoryBytes:
    """The accounting above. ``parameters``: the base model's; ``adapter_parameters``: LoRA's
    (ignored for full fine-tuning); ``frozen_bytes``: 2 for a bf16 frozen base, 4 for fp32."""
    if method == "full":
        return MemoryBytes(
            weights=MASTER_BYTES * parameters / gpus,
            gradients=GRADIENT_BYTES * parameters / gpus,
            optimizer=ADAM_BYTES * parameters / gpus,
            accumulation=0.0,
        )
    deferred = gpus > 1 and grad_accum_steps > 1
    return MemoryBytes(
        weights=(frozen_bytes * parameters + MASTER_BYTES * adapter_parameters) / gpus,
        gradients=GRADIENT_BYTES * adapter_parameters / gpus,
        optimizer=ADAM_BYTES * adapter_parameters / gpus,
        accumulation=GRADIENT_BYTES * adapter_parameters if deferred else 0.0,
    )


def measure(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> MemoryBytes:
    """What this rank holds now: its shards of the parameters, their gradients, the
    optimizer's state tensors, and FSDP2's unsharded gradients awaiting a reduce-scatter."""
    weights = sum(_local_bytes(p) for p in model.parameters())
    gradients = sum(_local_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    state = optimizer.state.values() if optimizer is not None else []
    moments = sum(_local_bytes(t) for s in state for t in s.values() if _is_moment(t))
    return MemoryBytes(weights, gradients, moments, _unsharded_gradient_bytes(model))


def _local_bytes(tensor: torch.Tensor) -> int:
    local = getattr(tensor, "_local_tensor", tensor)  # a DTensor's shard on this rank
    return int(local.numel() * local.element_size())


def _is_moment(value: object) -> bool:
    # AdamW's ``step`` is a scalar tensor per parameter (or a float): not per-element state.
    return isinstance(value, torch.Tensor) and value.dim() > 0


def _unsharded_gradient_bytes(model: nn.Module) -> int:
    from torch.distributed.fsdp import FSDPModule  # noqa: PLC0415

    total = 0
    for module in model.modules():
        if not isinstance(module, FSDPModule):
            continue
        # FSDP2 keeps a skipped reduce-scatter's gradient on the unsharded parameter; no public
        # API reports it, so the parameter groups are read here (torch 2.8-2.15).
        for group in module._get_fsdp_state()._fsdp_param_groups:
            for param in group.fsdp_params:
                grad = param.unsharded_accumulated_grad
                if grad is not None:
                    total += _local_bytes(grad)
    return total


MASTER_BYTES = 4
"""A trained weight in fp32."""
GRADIENT_BYTES = 4
"""Its gradient, kept and reduced in fp32."""
ADAM_BYTES = 8
"""AdamW's first and second moments in fp32."""
