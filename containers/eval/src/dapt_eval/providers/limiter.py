"""Adaptive concurrency: how many provider calls are in flight, found from the provider's
throttling (AIMD: additive increase, multiplicative decrease), within a floor and a ceiling.

`AimdLimit` is the rule set, pure and single-threaded, written once for both runtimes: its
constants are `adaptive_concurrency.json` (which `lambda/shared/limiter.ts` reads too) and its
decisions are pinned by `conformance/concurrency.json`, run by both test suites.
`ConcurrencyLimiter` is the thread-safe gate the runner calls through; `LimitedProvider` puts a
provider behind one. Waiting before a throttled call's retry (at least Retry-After) stays in
`retry.call_with_retry`; a call waiting there holds no slot.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dapt_eval.providers.base import (
    DecodingParams,
    Generation,
    Oracle,
    Provider,
    ThrottledError,
)

T = TypeVar("T")

_RULES: dict[str, Any] = json.loads(
    Path(__file__).resolve().parents[1].joinpath("adaptive_concurrency.json").read_text("utf-8")
)
INCREASE_PER_WINDOW: float = float(_RULES["increase_per_window"])
"""Slots added per window of `limit` successful calls."""
DECREASE_FACTOR: float = float(_RULES["decrease_factor"])
"""The limit is multiplied by this on a throttle (once per overload, see `AimdLimit`)."""
DEFAULT_FLOOR: int = int(_RULES["default_floor"])
"""The fewest calls kept in flight, however often the provider throttles."""
MAX_THROTTLED_ATTEMPTS: int = int(_RULES["max_throttled_attempts"])
"""Throttled attempts of one call before it is recorded as errored."""


class AimdLimit:
    """The controller's state and rules (see `adaptive_concurrency.json`'s "rules").

    Not thread-safe: `ConcurrencyLimiter` holds a lock around it. `floor == ceiling` is a fixed
    concurrency: the limit never moves."""

    def __init__(self, floor: int, ceiling: int) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(
                f"AimdLimit 'floor' = {floor}, 'ceiling' = {ceiling}: need 1 <= floor <= ceiling"
            )
        self.floor = floor
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.in_flight = 0
        self._next_ticket = 0
        self._decreased_before = 0

    @property
    def allowed(self) -> int:
        """Calls that may be in flight now."""
        return max(self.floor, min(self.ceiling, int(self.limit)))

    def can_start(self) -> bool:
        """Whether one more call may start."""
        return self.in_flight < self.allowed

    def start(self) -> int:
        """Count a call in flight and return its ticket (the caller checked `can_start`)."""
        ticket = self._next_ticket
        self._next_ticket += 1
        self.in_flight += 1
        return ticket

    def succeeded(self, ticket: int) -> None:
        """A call returned: one more slot per window of successes."""
        self.in_flight -= 1
        self.limit = min(float(self.ceiling), self.limit + INCREASE_PER_WINDOW / self.limit)

    def throttled(self, ticket: int) -> None:
        """The provider throttled a call: decrease, once for the calls already in flight."""
        self.in_flight -= 1
        if ticket >= self._decreased_before:
            self.limit = max(float(self.floor), self.limit * DECREASE_FACTOR)
            self._decreased_before = self._next_ticket

    def failed(self, ticket: int) -> None:
        """Any other failure: it says nothing about the provider's capacity."""
        self.in_flight -= 1


class ConcurrencyLimiter:
    """Runs calls through an `AimdLimit`, blocking while the limit is reached (thread-safe)."""

    def __init__(self, floor: int, ceiling: int) -> None:
        self._limit = AimdLimit(floor, ceiling)
        self._changed = threading.Condition()
        self.peak_in_flight = 0
        """Most calls seen in flight at once (benchmarks and tests read it)."""

    @property
    def allowed(self) -> int:
        """Calls that may be in flight now."""
        with self._changed:
            return self._limit.allowed

    def run(self, call: Callable[[], T]) -> T:
        """Wait for a slot, make the call, and feed its outcome to the controller."""
        with self._changed:
            self._changed.wait_for(self._limit.can_start)
            ticket = self._limit.start()
            self.peak_in_flight = max(self.peak_in_flight, self._limit.in_flight)
        try:
            value = call()
        except ThrottledError:
            self._finish(self._limit.throttled, ticket)
            raise
        except BaseException:
            self._finish(self._limit.failed, ticket)
            raise
        self._finish(self._limit.succeeded, ticket)
        return value

    def _finish(self, outcome: Callable[[int], None], ticket: int) -> None:
        with self._changed:
            outcome(ticket)
            self._changed.notify_all()


class LimitedProvider(Provider):
    """`provider` with every call made through `limiter`; identity and abilities unchanged."""

    def __init__(self, provider: Provider, limiter: ConcurrencyLimiter) -> None:
        self.inner = provider
        self.limiter = limiter
        self.name = provider.name
        self.model_id = provider.model_id
        self.revision = provider.revision

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        """The inner provider's `generate`, once a slot is free."""
        return self.limiter.run(lambda: self.inner.generate(prompt, params, oracle))

    @property
    def supports_loglik(self) -> bool:
        """The inner provider's."""
        return self.inner.supports_loglik

    def loglik(
        self, prompt: str, continuations: Sequence[str], oracle: Oracle | None = None
    ) -> list[float]:
        """The inner provider's `loglik`, once a slot is free."""
        return self.limiter.run(lambda: self.inner.loglik(prompt, continuations, oracle))

    def identity(self) -> dict[str, str]:
        """The inner provider's (cache keys do not change behind a limiter)."""
        return self.inner.identity()
