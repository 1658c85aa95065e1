"""Retries with exponential backoff and full jitter that honour throttling hints.

Hand-written (about 30 lines) rather than pulling in tenacity: the one behaviour we need that a
generic library does not give for free is waiting the server's Retry-After, and the
SDKs' own retries are switched off so that this is the single retry layer for every provider.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from dapt_eval.providers.base import (
    PermanentError,
    ProviderError,
    ThrottledError,
    TransientError,
)
from dapt_eval.providers.limiter import MAX_THROTTLED_ATTEMPTS

T = TypeVar("T")

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BASE_DELAY_S = 0.5
DEFAULT_MAX_DELAY_S = 30.0


@dataclass
class RetryPolicy:
    """How often and how long to retry; `sleep` and `rng` are injectable for fast tests.

    A dataclass (it holds a function and a random generator), so its fields are documented by
    attribute docstrings rather than pydantic descriptions."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Failed calls made at most, the first one included (1: never retry); throttled calls are
    counted apart, by `max_throttled_attempts`."""
    max_throttled_attempts: int = MAX_THROTTLED_ATTEMPTS
    """Throttled calls made at most before the call is given up (`adaptive_concurrency.json`):
    a throttle says "later", not "failed", so it does not use `max_attempts`."""
    base_delay_s: float = DEFAULT_BASE_DELAY_S
    """Backoff ceiling of the first retry, in seconds; it doubles with every further attempt."""
    max_delay_s: float = DEFAULT_MAX_DELAY_S
    """Largest backoff ceiling, in seconds (a server's Retry-After may still ask for longer)."""
    sleep: Callable[[float], None] = time.sleep
    """Waits the given seconds between attempts (tests pass a no-op)."""
    rng: random.Random = field(default_factory=random.Random)
    """Draws the jittered delay, uniform between 0 and the ceiling."""

    def __post_init__(self) -> None:
        problems = [
            f"'{name}' = {value} must be >= 1"
            for name, value in (
                ("max_attempts", self.max_attempts),
                ("max_throttled_attempts", self.max_throttled_attempts),
            )
            if value < 1
        ]
        if problems:
            raise ValueError(f"RetryPolicy: {'; '.join(problems)}")

    def delay(self, attempt: int, error: ProviderError) -> float:
        """Full-jitter backoff for the `attempt`-th failure of its kind (1-based: throttles and
        other failures are numbered apart); a throttle with Retry-After waits exactly that: the
        server said when, and the adaptive limit (`providers.limiter`) already slows the run, so
        a growing backoff on top would only keep the call out of slots it could use."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        jittered = self.rng.uniform(0.0, ceiling)
        if isinstance(error, ThrottledError) and error.retry_after_s is not None:
            return error.retry_after_s
        return jittered


@dataclass(frozen=True)
class Attempted(Generic[T]):
    """A call's value and how many attempts it took."""

    value: T
    attempts: int


class RetriesExhaustedError(ProviderError):
    """The last error after all attempts, with the attempt count in the message."""

    def __init__(self, last: ProviderError, attempts: int) -> None:
        super().__init__(f"{type(last).__name__} after {attempts} attempt(s): {last}")
        self.last = last
        self.attempts = attempts


def unexpected_error(err: Exception) -> TransientError:
    """A non-provider exception from a provider call, as the retry layer sees it."""
    return TransientError(f"unexpected {type(err).__name__}: {err}")


def call_with_retry(call: Callable[[], T], policy: RetryPolicy) -> Attempted[T]:
    """Run `call`, retrying throttles and transient errors; permanent errors fail at once.

    Throttles are counted apart from other failures (`max_throttled_attempts`, not
    `max_attempts`), so a provider that is only busy does not turn items into errors.
    Any other exception from the call (a client library's bug, a reply shape nobody foresaw)
    is a `TransientError` "unexpected <Type>: <message>", retried and then recorded as an
    errored item, exactly as the TypeScript `callWithRetry` does; it never aborts a run.
    Vectors: `conformance/concurrency.json` ("retries")."""
    attempts = failures = throttles = 0
    while True:
        attempts += 1
        try:
            return Attempted(call(), attempts)
        except PermanentError as err:
            raise RetriesExhaustedError(err, attempts) from err
        except Exception as raw:
            failure = raw if isinstance(raw, ProviderError) else unexpected_error(raw)
            if isinstance(failure, ThrottledError):
                throttles += 1
                count, budget = throttles, policy.max_throttled_attempts
            else:
                failures += 1
                count, budget = failures, policy.max_attempts
            if count >= budget:
                raise RetriesExhaustedError(failure, attempts) from raw
            policy.sleep(policy.delay(count, failure))
