"""Mixed, packed rows of ``seq_len`` tokens, and the batches built from them.

Packing puts several documents in one row and restarts ``position_ids`` at 0 at every document
start. Transformers' LLaMA turns such position ids into a block-diagonal causal mask (SDPA and
eager, when no attention mask is passed) or into flash-attention varlen boundaries, so no token
attends across a document boundary: a packed row gives the same per-token losses as the same
documents one per row (tested). Padding at the end of a row is its own segment and has no targets.

Every rank builds the same global stream and keeps its own rows, so the stream state is global
and a run resumes identically with any world size that divides the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from dapt_trainer.config import DataConfig, SourceConfig
from dapt_trainer.data.mixture import MixtureSampler, target_weights
from dapt_trainer.data.readers import Quarantined, SourceRows, read_source
from dapt_trainer.data.tokenize import IGNORE_INDEX, Document, TemplateError, encode


@dataclass(frozen=True)
class Row:
    input_ids: list[int]
    targets: list[int]
    position_ids: list[int]
    n_real: int
    """Tokens that are not padding."""


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

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.input_ids, self.targets, self.position_ids


@dataclass
class LoadedSources:
    """All sources read once: training rows, held-out rows and quarantined rows."""

    configs: list[SourceConfig]
    train: list[list[dict[str, Any]]]
    heldout: list[list[dict[str, Any]]]
    quarantined: list[Quarantined]


def load_sources(data: DataConfig) -> LoadedSources:
    train, heldout, quarantined = [], [], []
    for source in data.sources:
        rows: SourceRows = read_source(source)
        heldout.append(rows.rows[: source.heldout_examples])
        train.append(rows.rows[source.heldout_examples :])
        quarantined.extend(rows.quarantined)
    return LoadedSources(list(data.sources), train, heldout, quarantined)


@dataclass
class PackedStream:
    """The global stream of rows for one stage; ``state_dict`` captures it between steps."""

    data: DataConfig
    sources: LoadedSources
    tokenizer: Any
    seed: int
    sampler: MixtureSampler = field(init=False)
    _pending: Document | None = field(default=None, init=False)
    stats: dict[str, int] = field(default_factory=dict, init=False)
    quarantined: list[Quarantined] = field(default_factory=list, init=False)
    """Rows the tokenizer or chat template rejected during the run (after load-time checks)."""

    def __post_init__(self) -> None:
        self.sampler = MixtureSampler(
            weights=target_weights(self.data),
            sizes=[len(rows) for rows in self.sources.train],
            seed=self.seed,
        )
        self.stats = {"real_tokens": 0, "total_tokens": 0, "rows": 0}
        self.pad_id = _pad_id(self.tokenizer)

    def _next_document(self) -> Document:
        for _ in range(MAX_REJECTS_IN_A_ROW):
            s = self.sampler.next_source()
            index = self.sampler.next_example(s)
            source = self.sources.configs[s]
            try:
                doc = encode(
                    self.sources.train[s][index], source, self.tokenizer, self.data.seq_len
                )
            except TemplateError as err:
                self.quarantined.append(Quarantined(source.name, "<tokenizer>", index, str(err)))
                self.sampler.charge(s, 1)  # keep the schedule moving past a bad source
                continue
            if doc.n_targets == 0:
                self.quarantined.append(
                    Quarantined(
                        source.name, "<tokenizer>", index, "no target tokens within seq_len"
                    )
                )
                self.sampler.charge(s, max(len(doc), 1))
                continue
            self.sampler.charge(s, len(doc))
            return doc
        raise RuntimeError(
            f"{MAX_REJECTS_IN_A_ROW} examples in a row were rejected; see quarantine"
        )

    def next_row(self) -> Row:
        seq_len = self.data.seq_len
        ids: list[int] = []
        targets: list[int] = []
        positions: list[int] = []
        while len(ids) < seq_len:
            doc = self._pending if self._pending is not None else self._next_document()
            self._pending = None
            space = seq_len - len(ids)
            if len(doc) <= space:
                piece, rest = doc, None
            elif doc.splittable or not ids:
                piece = Document(doc.input_ids[:space], doc.targets[:space], doc.splittable)
                rest = Document(doc.input_ids[space:], doc.targets[space:], doc.splittable)
            else:  # an instruction example that does not fit: start it in the next row
                self._pending = doc
                break
            ids += piece.input_ids
            targets += piece.targets
            positions += range(len(piece))
            if rest is not None and len(rest) > 0:
                self._pending = rest
            if not self.data.packing:
                break
        n_real = len(ids)
        pad = seq_len - n_real
        self.stats["real_tokens"] += n_real
        self.stats["total_tokens"] += seq_len
        self.stats["rows"] += 1
        return Row(
            ids + [self.pad_id] * pad,
            targets + [IGNORE_INDEX] * pad,
            positions + list(range(pad)),
            n_real,
        )

    def packing_efficiency(self) -> float:
        return self.stats["real_tokens"] / max(self.stats["total_tokens"], 1)

    def state_dict(self) -> dict[str, Any]:
        pending = self._pending
        return {
            "sampler": self.sampler.state_dict(),
            "pending": None
            if pending is None
            else {
                "input_ids": pending.input_ids,
                "targets": pending.targets,
                "splittable": pending.splittable,
            },
            "stats": dict(self.stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        p = state["pending"]
        self._pending = (
            None if p is None else Document(p["input_ids"], p["targets"], p["splittable"])
        )
        self.stats = dict(state["stats"])


def collate(rows: list[Row]) -> Batch:
    return Batch(
        torch.tensor([r.input_ids for r in rows], dtype=torch.long),
        torch.tensor([r.targets for r in rows], dtype=torch.long),
        torch.tensor([r.position_ids for r in rows], dtype=torch.long),
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
    sources: LoadedSources, tokenizer: Any, data: DataConfig, micro_batch_size: int
) -> dict[str, list[Batch]]:
    """Held-out examples per source, one document per row (unpacked), truncated to seq_len."""
    pad = _pad_id(tokenizer)
    out: dict[str, list[Batch]] = {}
    for source, rows in zip(sources.configs, sources.heldout, strict=True):
        docs = []
        for row in rows:
            try:
                doc = encode(row, source, tokenizer, data.seq_len)
            except TemplateError:
                continue
            n = min(len(doc), data.seq_len)
            fill = data.seq_len - n
            docs.append(
                Row(
                    doc.input_ids[:n] + [pad] * fill,
                    doc.targets[:n] + [IGNORE_INDEX] * fill,
                    list(range(n)) + list(range(fill)),
                    n,
                )
            )
        if docs:
            out[source.name] = [
                collate(docs[i : i + micro_batch_size])
                for i in range(0, len(docs), micro_batch_size)
            ]
    return out


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


MAX_REJECTS_IN_A_ROW = 1000
