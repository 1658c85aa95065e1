"""Mixed, packed rows of ``seq_len`` tokens, and the batches built from them.

Packing puts several documents in one row and restarts ``position_ids`` at 0 at every document
start. Transformers' LLaMA turns such position ids into a block-diagonal causal mask (SDPA and
eager, when no attention mask is passed) or into flash-attention varlen boundaries, so no token
attends across a document boundary: a packed row gives the same per-token losses as the same
documents one per row (tested). Padding at the end of a row is its own segment and has no targets.
Transformers derives that mask only when the forward gets no attention mask and no KV cache: the
recipe passes ``use_cache=False`` (tested for SDPA, eager and flex attention).

Rows are filled from a window of ``data.pack_window`` documents drawn ahead: a row starts with
the oldest piece in the window (so nothing waits more than a window's worth of rows) and is
topped up with the largest pieces that still fit (best fit); when none fits, the oldest
completion document is cut to fill the row exactly and its rest starts the next row. Instruction
examples are never cut, which is why the window matters for them.

Every rank builds the same global stream and keeps its own rows, so the stream state is global
and a run resumes identically with any world size that divides the batch. The state is a
handful of integers: the mixture sampler's counters and the window's (source, document, start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dapt_trainer.config import DataConfig
from dapt_trainer.data.cache import Array, NoDataError, TokenizedSource, no_data_problems
from dapt_trainer.data.mixture import MixtureSampler, target_weights
from dapt_trainer.data.readers import Quarantined
from dapt_trainer.data.tokenize import IGNORE_INDEX


@dataclass(frozen=True, eq=False)
class Row:
    input_ids: Array
    targets: Array
    position_ids: Array
    n_real: int
    """Tokens that are not padding."""

    def as_lists(self) -> tuple[list[int], list[int], list[int], int]:
        return (
            self.input_ids.tolist(),
            self.targets.tolist(),
            self.position_ids.tolist(),
            self.n_real,
        )


@dataclass
class Batch:
    """Tensors of one micro batch, [rows, seq_len]."""

    input_ids: torch.Tensor
    targets: torch.Tensor
    position_ids: torch.Tensor

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in self.tensors()))

    def pin_memory(self) -> Batch:
        return Batch(*(t.pin_memory() for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.input_ids, self.targets, self.position_ids


Piece = tuple[int, int, int, int]
"""(source, document, start, usable end) of a document, or of the rest of a cut one."""


@dataclass
class PackedStream:
    """The global stream of rows for one stage; ``state_dict`` captures it between rows."""

    data: DataConfig
    sources: list[TokenizedSource]
    seed: int
    pad_id: int
    sampler: MixtureSampler = field(init=False)
    window: list[Piece] = field(default_factory=list, init=False)
    stats: dict[str, int] = field(default_factory=dict, init=False)
    placed: list[int] = field(default_factory=list, init=False)
    """Tokens of each source put into rows so far: what was trained on once those rows were
    (the mixture's ``consumed`` also counts what waits in the window, and rejected documents)."""
    quarantined: list[Quarantined] = field(default_factory=list, init=False)
    """Documents with no target within ``seq_len`` (instruction examples whose response starts
    after it), met during the run; each reported once."""
    _rejected: set[tuple[int, int]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        problems = no_data_problems(self.sources)
        if problems:
            raise NoDataError("; ".join(problems))
        self.sampler = MixtureSampler(
            weights=target_weights(self.data),
            sizes=[s.n_train for s in self.sources],
            seed=self.seed,
        )
        self.stats = {"real_tokens": 0, "total_tokens": 0, "rows": 0}
        self.placed = [0] * len(self.sources)

    def _draw(self) -> Piece:
        seq_len = self.data.seq_len
        for _ in range(MAX_REJECTS_IN_A_ROW):
            s = self.sampler.next_source()
            source = self.sources[s]
            doc = source.n_heldout + self.sampler.next_example(s)
            usable = source.usable(doc, seq_len)
            if not source.has_targets(doc, usable):
                if (s, doc) not in self._rejected:
                    self._rejected.add((s, doc))
                    self.quarantined.append(
                        Quarantined(
                            source.config.name,
                            str(source.path),
                            doc + 1,
                            f"document {doc} has no target token within seq_len = {seq_len}",
                        )
                    )
                self.sampler.charge(s, max(usable, 1))  # keep the schedule moving
                continue
            self.sampler.charge(s, usable)
            return (s, doc, 0, usable)
        raise RuntimeError(
            f"{MAX_REJECTS_IN_A_ROW} documents in a row had no target within seq_len; "
            "see the quarantine report"
        )

    def _best_fit(self, space: int) -> int | None:
        """Index of the largest piece that fits ``space`` (the oldest among equals); else the
        oldest piece that may be cut; else None (the row is closed with padding)."""
        best, best_len, cuttable = None, 0, None
        for k, (s, _, start, end) in enumerate(self.window):
            n = end - start
            if best_len < n <= space:
                best, best_len = k, n
            if cuttable is None and self.sources[s].splittable:
                cuttable = k
        return best if best is not None else cuttable

    def next_row(self) -> Row:
        seq_len = self.data.seq_len
        window = self.data.pack_window if self.data.packing else 1
        ids = np.full(seq_len, self.pad_id, dtype=np.int64)
        targets = np.full(seq_len, IGNORE_INDEX, dtype=np.int64)
        positions = np.zeros(seq_len, dtype=np.int64)
        fill = 0
        while fill < seq_len:
            while len(self.window) < window:
                self.window.append(self._draw())
            k = 0 if fill == 0 else self._best_fit(seq_len - fill)
            if k is None:
                break
            s, doc, start, end = self.window.pop(k)
            n = min(end - start, seq_len - fill)
            source = self.sources[s]
            ids[fill : fill + n] = source.ids(doc, start, start + n)
            targets[fill : fill + n] = source.targets(doc, start, start + n, end)
            positions[fill : fill + n] = np.arange(n)
            self.placed[s] += n
            if start + n < end:  # the rest of a cut document starts the next row
                self.window.insert(0, (s, doc, start + n, end))
            fill += n
            if not self.data.packing:
                break
        positions[fill:] = np.arange(seq_len - fill)
        self.stats["real_tokens"] += fill
        self.stats["total_tokens"] += seq_len
        self.stats["rows"] += 1
        return Row(ids, targets, positions, fill)

    def packing_efficiency(self) -> float:
        return self.stats["real_tokens"] / max(self.stats["total_tokens"], 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler.state_dict(),
            "window": [list(p) for p in self.window],
            "stats": dict(self.stats),
            "placed": list(self.placed),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "window" not in state:
            raise ValueError(
                "the checkpoint's data state was written by an older trainer (no 'window'); "
                "resume it with that version or start the stage again"
            )
        self.sampler.load_state_dict(state["sampler"])
        self.window = [(int(a), int(b), int(c), int(d)) for a, b, c, d in state["window"]]
        self.stats = dict(state["stats"])
        self.placed = list(state.get("placed", placed_tokens(state)))


def placed_tokens(state: dict[str, Any]) -> list[int]:
    """Tokens of each source trained on up to a stream state: its ``placed`` counters, or for a
    state saved before they existed, what was drawn less what still waits in the window."""
    if "placed" in state:
        return [int(n) for n in state["placed"]]
    out = [int(n) for n in state["sampler"]["consumed"]]
    for s, _, start, end in state["window"]:
        out[int(s)] -= int(end) - int(start)
    return out


def collate(rows: list[Row]) -> Batch:
    return Batch(
        torch.from_numpy(np.stack([r.input_ids for r in rows])),
        torch.from_numpy(np.stack([r.targets for r in rows])),
        torch.from_numpy(np.stack([r.position_ids for r in rows])),
    )


def step_batches(
    stream: PackedStream, micro_batch_size: int, grad_accum_steps: int, rank: int, world_size: int
) -> list[Batch]:
    """This rank's micro batches of one optimizer step, drawn from the global stream.

    The global step holds ``accum x world x micro`` rows; for accumulation slot ``a`` rank ``r``
    takes rows ``[(a * world + r) * micro, ...)``. A single process with ``micro * world`` rows
    therefore sees exactly the rows that ``world`` processes see together.
    """
    out = []
    for _ in range(grad_accum_steps):
        rows = [stream.next_row() for _ in range(world_size * micro_batch_size)]
        mine = rows[rank * micro_batch_size : (rank + 1) * micro_batch_size]
        out.append(collate(mine))
    return out


def heldout_batches(
    sources: list[TokenizedSource], data: DataConfig, pad_id: int, micro_batch_size: int
) -> dict[str, list[Batch]]:
    """Held-out documents per source, one per row (unpacked), truncated to seq_len."""
    seq_len = data.seq_len
    out: dict[str, list[Batch]] = {}
    for source in sources:
        rows = []
        for doc in range(source.n_heldout):
            n = min(source.length(doc), seq_len)
            ids = np.full(seq_len, pad_id, dtype=np.int64)
            targets = np.full(seq_len, IGNORE_INDEX, dtype=np.int64)
            ids[:n] = source.ids(doc, 0, n)
            targets[:n] = source.targets(doc, 0, n, source.usable(doc, seq_len))
            positions = np.concatenate([np.arange(n), np.arange(seq_len - n)])
            rows.append(Row(ids, targets, positions, n))
        if rows:
            out[source.config.name] = [
                collate(rows[i : i + micro_batch_size])
                for i in range(0, len(rows), micro_batch_size)
            ]
    return out


def pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


MAX_REJECTS_IN_A_ROW = 1000
