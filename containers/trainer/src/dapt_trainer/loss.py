"""The training loss: summed next-token cross-entropy of a micro batch, optionally computed in
chunks of tokens so the ``[tokens, vocab]`` logits never exist whole.

A 128k-vocabulary model (Llama-3) with 8192 target tokens per micro batch materialises
8192 x 128256 logits: 2.1 GB in bf16 and 4.2 GB more for the fp32 copy cross-entropy reads,
plus their gradient, each more than a 1B model's weights. The chunked path runs the LM head and
the cross-entropy over ``chunk_tokens`` tokens at a time, each chunk under activation
checkpointing, so at most one chunk's logits (and their gradient) are alive: the backward
recomputes a chunk's logits (one more LM head forward, ``2 * hidden * vocab`` FLOPs per
token, not counted in the MFU) instead of keeping them. Positions without a target (the prompt
of an instruction example, padding) skip the head altogether.

The head runs inside the model's forward (its ``forward`` is swapped for the call), so under
FSDP2 its weight is the all-gathered one, exactly as in the unchunked forward, and nothing
about sharding, checkpoints or the exported model changes. This relies on the model applying
the head to the final hidden states and returning what it gives unchanged; architectures
known to do so are listed in ``CHUNKABLE_MODEL_TYPES`` (Gemma-2's softcapping, Cohere's and
Granite's logit scaling change the logits after the head: they use the unchunked path).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import nn
from torch.utils.checkpoint import checkpoint

from dapt_trainer.data.tokenize import IGNORE_INDEX


def chunkable_head(model: nn.Module) -> nn.Linear | None:
    """The LM head the chunked loss can take over, or None when this model must use the
    unchunked path (an architecture that changes the logits after the head, or a head that is
    not a plain linear layer, e.g. one with a LoRA adapter)."""
    hf = _hf_model(model)
    head = hf.get_output_embeddings()
    if getattr(hf.config, "model_type", None) not in CHUNKABLE_MODEL_TYPES:
        return None
    return head if type(head) is nn.Linear else None


def token_loss_sum(
    model: nn.Module,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    targets: torch.Tensor,
    chunk_tokens: int | None,
    autocast: bool,
) -> torch.Tensor:
    """Summed fp32 cross-entropy over the target tokens (``targets`` already shifted,
    IGNORE_INDEX where nothing is predicted). ``chunk_tokens``: tokens per LM head chunk, None
    for the whole micro batch at once (the model's own forward, also used when the micro batch
    has no more tokens than a chunk)."""
    device_type = input_ids.device.type
    chunked = chunk_tokens is not None and input_ids.numel() > chunk_tokens
    head = chunkable_head(model) if chunked else None
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        if head is None or chunk_tokens is None:  # chunk_tokens: for mypy
            logits = model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits
        else:
            with _head_computes_loss(head, targets, chunk_tokens):
                loss: torch.Tensor = model(
                    input_ids=input_ids, position_ids=position_ids, use_cache=False
                ).logits
            return loss
    return F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def chunked_cross_entropy_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk_tokens: int,
) -> torch.Tensor:
    """``cross_entropy(linear(hidden, weight, bias).float(), targets, reduction="sum")`` over
    the positions with a target, ``chunk_tokens`` at a time, each chunk checkpointed.

    At least one (possibly empty) chunk always runs, so the head's weight is part of the graph
    even for a micro batch without targets (every FSDP2 rank reduces the same gradients)."""
    hidden = hidden.flatten(0, -2)
    targets = targets.flatten()
    keep = targets != IGNORE_INDEX
    hidden, targets = hidden[keep], targets[keep]  # a CPU-GPU sync point (data-dependent size)
    total: torch.Tensor | None = None
    for start in range(0, max(len(targets), 1), chunk_tokens):
        end = start + chunk_tokens
        part = checkpoint(
            _chunk_loss,
            hidden[start:end],
            weight,
            bias,
            targets[start:end],
            use_reentrant=False,
            preserve_rng_state=False,  # nothing random in a head and a cross-entropy
        )
        total = part if total is None else total + part
    assert total is not None
    return total


def _chunk_loss(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor
) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias)  # in the autocast dtype, like the model's own head
    return F.cross_entropy(logits.float(), targets, reduction="sum")


@contextmanager
def _head_computes_loss(
    head: nn.Linear, targets: torch.Tensor, chunk_tokens: int
) -> Iterator[None]:
    """While inside, calling ``head`` on the final hidden states returns the summed loss (a
    0-d tensor) in place of the logits."""

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        return chunked_cross_entropy_sum(hidden, head.weight, head.bias, targets, chunk_tokens)

    head.forward = forward  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        del head.forward


def _hf_model(model: nn.Module) -> Any:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


CHUNKABLE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "olmo2"})
"""Architectures whose causal-LM forward returns ``lm_head(final hidden states)`` unchanged
(checked in transformers 5.23's modeling files)."""
