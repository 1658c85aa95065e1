"""The chunked LM head + cross-entropy: the same loss and gradients as the model's own forward,
with at most one chunk of logits ever allocated."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import LlamaConfig, LlamaForCausalLM

from dapt_trainer.config import MethodConfig
from dapt_trainer.data.tokenize import IGNORE_INDEX
from dapt_trainer.loss import chunkable_head, token_loss_sum
from dapt_trainer.model import apply_method

VOCAB, ROWS, SEQ, CHUNK = 1000, 2, 48, 16


class LargestTensor(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Records the most elements any op's output held (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.numel = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def _model(tied: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (ROWS, SEQ), generator=g)
    targets = torch.randint(0, VOCAB, (ROWS, SEQ), generator=g)
    targets[0, :10] = IGNORE_INDEX  # a prompt: no target, skipped by the chunked head
    targets[1, -5:] = IGNORE_INDEX  # padding
    positions = torch.arange(SEQ).repeat(ROWS, 1)
    return ids, positions, targets


def _loss_and_grads(
    model: torch.nn.Module, chunk: int | None
) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    model.zero_grad(set_to_none=True)
    largest = LargestTensor()
    with largest:
        loss = token_loss_sum(model, *_batch(), chunk_tokens=chunk, autocast=False)
        loss.backward()  # type: ignore[no-untyped-call]
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, largest.numel


@pytest.mark.parametrize("tied", [False, True])
def test_chunked_loss_equals_the_full_logits_loss_with_one_chunk_of_logits(tied: bool) -> None:
    model = _model(tied)
    full_loss, full_grads, full_largest = _loss_and_grads(model, None)
    loss, grads, largest = _loss_and_grads(model, CHUNK)
    assert loss == pytest.approx(float(full_loss), rel=1e-5)
    assert grads.keys() == full_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # The full path holds [ROWS * SEQ, VOCAB] logits; the chunked one never more than a chunk's
    # (the next largest tensors, the [VOCAB, 16] head weight and its gradient, are smaller).
    assert full_largest >= ROWS * SEQ * VOCAB
    assert largest <= CHUNK * VOCAB


def test_a_micro_batch_within_one_chunk_and_a_lora_head_use_the_models_forward() -> None:
    model = _model()
    ids, positions, targets = _batch()
    small = token_loss_sum(model, ids, positions, targets, chunk_tokens=ROWS * SEQ, autocast=False)
    full = token_loss_sum(model, ids, positions, targets, chunk_tokens=None, autocast=False)
    assert float(small.detach()) == float(full.detach())  # bit for bit: the same code path
    assert chunkable_head(model) is model.lm_head
    lora = MethodConfig.model_validate(
        {"name": "lora", "lora": {"rank": 2, "alpha": 4, "target_modules": ["q_proj", "lm_head"]}}
    )
    assert chunkable_head(apply_method(_model(), lora)) is None  # a LoRA layer, not nn.Linear


def test_a_micro_batch_without_targets_still_reaches_the_head() -> None:
    model = _model()
    ids, positions, targets = _batch()
    loss = token_loss_sum(
        model, ids, positions, torch.full_like(targets, IGNORE_INDEX), CHUNK, autocast=False
    )
    loss.backward()  # type: ignore[no-untyped-call]
    assert float(loss.detach()) == 0.0
    assert model.lm_head.weight.grad is not None  # every FSDP rank reduces the same gradients
