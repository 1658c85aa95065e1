"""The attention term of the MFU: the (query, key) pairs the attention kernel computes for a
micro batch, from its packed position ids.

torchtitan's per-token ``12 * L * H * Q * T`` counts every token attending to all ``T``
positions of its row. The kernels do less, or more:

- ``flash_attention_2`` with one row per forward (varlen from the position ids) and
  ``flex_attention`` (a block mask) are causal within each document: a document of ``d`` tokens
  costs ``d (d + 1) / 2`` pairs, and documents packed in a row never attend to each other
  (flex skips whole masked blocks; partial blocks at the diagonal are not counted). With
  several rows per forward transformers runs flash attention causal over each whole row
  (``T (T + 1) / 2``; the config allows that only for unpacked rows).
- ``sdpa`` runs its causal kernel (``T (T + 1) / 2`` pairs a row) only when transformers passes
  no mask, i.e. when every row of the micro batch is one document of ``T`` tokens; packed or
  padded rows get a block-diagonal mask, and a masked SDPA computes every pair: ``T^2``.
- ``eager`` multiplies the whole ``T x T`` score matrix, then masks: ``T^2``.

Each pair costs ``4 Q`` FLOPs per head and layer forward (``Q K^T`` and ``A V``) and twice that
backward: ``12 L H Q`` per pair. For the per-document kernels a row's padding (its last
segment, all pad tokens) is left out, as its tokens are left out of the dense term; the dense
``T^2`` of a masked kernel includes it (the kernel computes those pairs like the others).
"""

from __future__ import annotations

import numpy as np
import torch

CAUSAL_PER_DOCUMENT = frozenset({"flash_attention_2", "flex_attention"})
"""Kernels that skip the pairs masked by causality and by document boundaries."""


def attention_pairs(
    input_ids: torch.Tensor, position_ids: torch.Tensor, pad_id: int, kernel: str
) -> int:
    """(query, key) pairs ``kernel`` computes for a ``[rows, T]`` micro batch."""
    rows, length = position_ids.shape
    positions = position_ids.numpy(force=True)
    ids = input_ids.numpy(force=True)
    if kernel == "flash_attention_2" and rows > 1:  # varlen only at batch size 1
        return rows * length * (length + 1) // 2
    if kernel in CAUSAL_PER_DOCUMENT:
        return sum(_causal_document_pairs(positions[r], ids[r], pad_id) for r in range(rows))
    one_document_rows = bool((positions == np.arange(length)).all())
    if kernel == "sdpa" and one_document_rows:
        return rows * length * (length + 1) // 2
    return rows * length * length


def _causal_document_pairs(positions: np.ndarray, ids: np.ndarray, pad_id: int) -> int:
    starts = np.flatnonzero(positions == 0).tolist()
    ends = [*starts[1:], len(positions)]
    pairs = 0
    for start, end in zip(starts, ends, strict=True):
        if start > 0 and end == len(positions) and bool((ids[start:end] == pad_id).all()):
            continue  # the row's padding
        d = end - start
        pairs += d * (d + 1) // 2
    return pairs
