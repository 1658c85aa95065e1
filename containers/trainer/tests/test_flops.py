"""The MFU's attention term: the (query, key) pairs each kernel computes, against hand counts."""

from __future__ import annotations

import pytest
import torch

from dapt_trainer.flops import attention_pairs

PAD = 0
T = 8


def _rows(*documents: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of T tokens holding documents of the given lengths, the rest padding (its own
    segment, positions restarting at 0, pad ids), as the packed stream builds them."""
    ids, positions = [], []
    for lengths in documents:
        row_ids: list[int] = []
        row_pos: list[int] = []
        for d in lengths:
            row_ids += [7] * d
            row_pos += list(range(d))
        pad = T - len(row_ids)
        ids.append(row_ids + [PAD] * pad)
        positions.append(row_pos + list(range(pad)))
    return torch.tensor(ids), torch.tensor(positions)


@pytest.mark.parametrize(
    ("kernel", "packed", "whole"),
    [
        # documents of 3 and 4 tokens and one pad: 3*4/2 + 4*5/2 = 16 (padding not counted);
        # whole rows of 8: 8*9/2 = 36 each
        ("flex_attention", 16, 72),
        # packed/padded rows get a mask: every pair of the row; unmasked rows: causal kernel
        ("sdpa", 64, 72),
        ("eager", 64, 128),
    ],
)
def test_attention_pairs_are_what_the_kernel_computes(kernel: str, packed: int, whole: int) -> None:
    assert attention_pairs(*_rows([3, 4]), PAD, kernel) == packed
    assert attention_pairs(*_rows([8], [8]), PAD, kernel) == whole


def test_a_micro_batch_with_one_packed_row_is_masked_for_sdpa() -> None:
    # transformers builds one mask for the whole micro batch: 2 rows x 64
    assert attention_pairs(*_rows([8], [5, 3]), PAD, "sdpa") == 128
    assert attention_pairs(*_rows([8], [5, 3]), PAD, "flex_attention") == 36 + 15 + 6


def test_flash_attention_is_varlen_at_one_row_per_forward_only() -> None:
    assert attention_pairs(*_rows([3, 4]), PAD, "flash_attention_2") == 6 + 10
    assert attention_pairs(*_rows([8]), PAD, "flash_attention_2") == 36
    # two unpacked rows (a document and padding each): causal over each whole row
    assert attention_pairs(*_rows([5], [8]), PAD, "flash_attention_2") == 2 * 36
