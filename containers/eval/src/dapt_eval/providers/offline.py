"""A deterministic provider for tests and dry runs; it never touches the network.

Every decision is a pure function of (decision name, decoding seed, prompt), so the same run
reproduces byte for byte, a different seed gives a different but equally reproducible run,
and rates such as `correct_rate` are met on average over items.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from dapt_eval.providers.base import (
    DecodingParams,
    Generation,
    Oracle,
    Provider,
    ThrottledError,
    TransientError,
    Usage,
)


@dataclass(frozen=True)
class OfflineBehaviour:
    """Rates in [0, 1] of each simulated behaviour, decided per prompt.

    A dataclass (the CLI and tests build it directly), so its fields are documented by
    attribute docstrings rather than pydantic descriptions."""

    correct_rate: float = 1.0
    """Share of the prompts neither failed nor unparseable that get the oracle's correct answer."""
    unparseable_rate: float = 0.0
    """Share of prompts answered with text no parser accepts."""
    error_rate: float = 0.0
    """Share of prompts that always fail with a server error (recorded as `errored`)."""
    throttle_rate: float = 0.0
    """Share of prompts throttled on their first call only (a retry succeeds)."""

    def __post_init__(self) -> None:
        for name in ("correct_rate", "unparseable_rate", "error_rate", "throttle_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"OfflineBehaviour '{name}' = {value} must lie in [0, 1]")


class OfflineProvider(Provider):
    """Answers from the item's oracle with a configured accuracy, or with a hash-derived text.

    - error_rate: share of prompts that always fail with a server error (become `errored`).
    - throttle_rate: share of prompts throttled on their first call only (a retry succeeds).
    - unparseable_rate: share of prompts answered with text no parser accepts.
    - correct_rate: share of the remaining prompts answered with `oracle.correct`.
    """

    name = "offline"

    def __init__(
        self,
        model_id: str = "offline",
        revision: str = "1",
        behaviour: OfflineBehaviour | None = None,
    ) -> None:
        self.model_id = model_id
        self.revision = revision
        self.behaviour = behaviour or OfflineBehaviour()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def total_calls(self) -> int:
        """Calls made so far, including throttled and failed ones (tests assert on it)."""
        with self._lock:
            return sum(self.calls.values())

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        """Deterministic completion; see the class docstring for the decision order."""
        self._enter(prompt, params.seed)
        text = self._answer(prompt, params.seed, oracle)
        return Generation(
            text=text,
            usage=Usage(input_tokens=len(prompt.split()), output_tokens=len(text.split())),
            latency_ms=0.0,
            provider=self.name,
            model=self.model_id,
            revision=self.revision,
        )

    @property
    def supports_loglik(self) -> bool:
        """The offline provider simulates log-likelihood scoring too."""
        return True

    def loglik(
        self, prompt: str, continuations: Sequence[str], oracle: Oracle | None = None
    ) -> list[float]:
        """The continuation the model 'would answer' gets the highest log-likelihood."""
        seed = LOGLIK_SEED  # log-likelihoods do not sample, so no decoding seed applies
        self._enter(prompt, seed)
        preferred = self._answer(prompt, seed, oracle)
        return [
            PREFERRED_LOGLIK
            if text == preferred
            else OTHER_LOGLIK - _unit("ll", seed, prompt + text)
            for text in continuations
        ]

    def _enter(self, prompt: str, seed: int) -> None:
        """Count the call and raise the injected failures decided for this prompt."""
        with self._lock:
            previous = self.calls[prompt]
            self.calls[prompt] += 1
        if _unit("error", seed, prompt) < self.behaviour.error_rate:
            raise TransientError("offline: injected server error (HTTP 500)")
        if previous == 0 and _unit("throttle", seed, prompt) < self.behaviour.throttle_rate:
            raise ThrottledError("offline: injected throttle (HTTP 429)", retry_after_s=0.0)

    def _answer(self, prompt: str, seed: int, oracle: Oracle | None) -> str:
        if _unit("unparseable", seed, prompt) < self.behaviour.unparseable_rate:
            return f"{UNPARSEABLE_PREFIX} {_digest('garbage', seed, prompt)[:8]}"
        if oracle is None:
            return f"offline answer {_digest('answer', seed, prompt)[:8]}"
        if _unit("correct", seed, prompt) < self.behaviour.correct_rate or not oracle.wrong:
            return oracle.correct
        pick = int(_digest("wrong", seed, prompt), 16) % len(oracle.wrong)
        return oracle.wrong[pick]


def _digest(salt: str, seed: int, prompt: str) -> str:
    return hashlib.sha256(f"{salt}\x00{seed}\x00{prompt}".encode()).hexdigest()


def _unit(salt: str, seed: int, prompt: str) -> float:
    """A uniform number in [0, 1) derived from the prompt: the provider's only randomness."""
    return int(_digest(salt, seed, prompt)[:16], 16) / 16**16


PREFERRED_LOGLIK = -0.5
OTHER_LOGLIK = -2.0
LOGLIK_SEED = 0
UNPARSEABLE_PREFIX = "¯\\_(ツ)_/¯ I cannot decide"
