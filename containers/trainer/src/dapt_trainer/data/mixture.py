"""Deterministic, resumable mixing of sources by token share.

The schedule is a *token-deficit* weighted round-robin (smooth weighted round-robin with each
pick charged by the tokens it produced): the next example comes from the source that is
furthest behind its target, ``w_s * T - c_s`` (``T`` tokens emitted so far, ``c_s`` of them
from source ``s``). Why tokens, not examples: the domain target ("2% of tokens") and the compute
bill are in tokens, and documents differ in length by orders of magnitude between sources.
Why deterministic, not random draws: the share holds at every prefix of the run (deviation at
most one document per source), not only in expectation, and the state to resume is a handful
of integers.

Within a source, examples are visited in a fresh permutation every epoch, seeded by
``(seed, source index, epoch)``; the RNG state is therefore implied by (epoch, position).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dapt_trainer.config import DataConfig


def target_weights(data: DataConfig) -> list[float]:
    """Normalised token shares per source; ``domain_share`` splits the mass between groups."""
    weights = [s.share for s in data.sources]
    if data.domain_share is None:
        total = sum(weights)
        return [w / total for w in weights]
    mass = {"domain": data.domain_share, "public": 1.0 - data.domain_share}
    group_total = {g: sum(s.share for s in data.sources if s.counts_as == g) for g in mass}
    return [s.share / group_total[s.counts_as] * mass[s.counts_as] for s in data.sources]


@dataclass
class MixtureSampler:
    """Chooses (source, example index) pairs; ``charge`` records the tokens each pick produced."""

    weights: list[float]
    sizes: list[int]
    """Training examples per source (after held-out rows are removed)."""
    seed: int
    consumed: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    _orders: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.sizes or any(n <= 0 for n in self.sizes):
            raise ValueError(
                f"every source needs at least one training example; sizes {self.sizes}"
            )
        n = len(self.weights)
        self.consumed = self.consumed or [0] * n
        self.positions = self.positions or [0] * n
        self.epochs = self.epochs or [0] * n

    def next_source(self) -> int:
        total = sum(self.consumed)
        deficits = [w * total - c for w, c in zip(self.weights, self.consumed, strict=True)]
        # Ties (the very first pick, equal deficits) go to the larger weight, then lower index.
        return max(range(len(deficits)), key=lambda s: (deficits[s], self.weights[s], -s))

    def next_example(self, source: int) -> int:
        """The next example index of ``source`` (advancing its position and maybe its epoch)."""
        if self.positions[source] >= self.sizes[source]:
            self.positions[source] = 0
            self.epochs[source] += 1
            self._orders.pop(source, None)
        order = self._orders.get(source)
        if order is None:
            rng = np.random.default_rng([self.seed, source, self.epochs[source]])
            order = rng.permutation(self.sizes[source])
            self._orders[source] = order
        index = int(order[self.positions[source]])
        self.positions[source] += 1
        return index

    def charge(self, source: int, tokens: int) -> None:
        self.consumed[source] += tokens

    def shares(self) -> list[float]:
        total = sum(self.consumed) or 1
        return [c / total for c in self.consumed]

    def state_dict(self) -> dict[str, Any]:
        return {
            "consumed": list(self.consumed),
            "positions": list(self.positions),
            "epochs": list(self.epochs),
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.consumed = list(state["consumed"])
        self.positions = list(state["positions"])
        self.epochs = list(state["epochs"])
        self.seed = int(state["seed"])
        self._orders.clear()
