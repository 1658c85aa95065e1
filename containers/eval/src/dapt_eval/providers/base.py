"""The one interface every model provider implements, and its error taxonomy.

Errors are split by what the caller should do: `ThrottledError` (wait, honouring Retry-After,
then retry), `TransientError` (retry with backoff), `PermanentError` (do not retry). After the
retry budget an item is recorded as `errored` with the message; it is never dropped and never
scored as wrong.
"""

from __future__ import annotations

import json
import socket
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DecodingParams(BaseModel):
    """Sampling settings sent to the provider; all of them are part of the cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(
        default=0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 decodes greedily."
    )
    max_tokens: int = Field(default=256, ge=1, description="Most new tokens generated per call.")
    top_p: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Nucleus sampling: the probability mass of the tokens sampled from (1: all).",
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="Sampling seed sent to providers that take one (not Bedrock); also the MCQ "
        "choice-shuffle seed.",
    )
    stop: tuple[str, ...] = Field(
        default=(), description="Strings that end a generation (the providers' stop sequences)."
    )

    def cache_dict(self) -> dict[str, Any]:
        """The decoding object exactly as it enters the cache key and the result record."""
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": list(self.stop),
        }


@dataclass(frozen=True)
class Usage:
    """Token counts as reported by the provider (0 where it reports none)."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Generation:
    """One completion and where it came from."""

    text: str
    usage: Usage
    latency_ms: float
    provider: str
    model: str
    revision: str


@dataclass(frozen=True)
class Oracle:
    """Expected output of an item, given only to the offline provider to simulate a model.

    Real providers ignore it; it exists so tests can drive a model of known accuracy.
    """

    correct: str
    wrong: tuple[str, ...] = field(default_factory=tuple)


class ProviderError(Exception):
    """Base of all provider failures; the message is what lands in the result's `error`."""


class ThrottledError(ProviderError):
    """The provider asked us to slow down (HTTP 429, ThrottlingException)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TransientError(ProviderError):
    """A failure worth retrying: 5xx, timeouts, connection resets, model not ready."""


class PermanentError(ProviderError):
    """A failure retrying cannot fix: bad request, access denied, unsupported operation."""


def token_count(value: object, where: str) -> int:
    """A usage count from a provider's reply: absent or null is 0 (the server reports none);
    anything but a non-negative integer is a malformed reply (`PermanentError` naming `where`),
    never an exception that escapes the retry layer. `lambda/shared/providers/types.ts`
    (`tokenCount`) follows the same vectors (`conformance/providers.json`)."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        shown = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        raise PermanentError(f"{where} is not a token count: {shown}")
    return value


def transport_kind(err: BaseException) -> str:
    """What kind of failure to get an answer `err` is, from the OS error it wraps: "connection
    refused", "connection reset", "name not resolved", else "connection failed". Error strings
    name the kind only, never the client library's text (httpx, botocore, fetch and the AWS SDK
    word the same failure differently; both runtimes must record one string per cache key)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, ConnectionResetError | BrokenPipeError):
            return "connection reset"
        if isinstance(seen, socket.gaierror):
            return "name not resolved"
        seen = seen.__cause__ or seen.__context__
    return "connection failed"


class Provider(ABC):
    """A model endpoint. Implementations are thread-safe: the runner calls them concurrently."""

    name: str
    model_id: str
    revision: str

    @abstractmethod
    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        """Return one completion for `prompt`; raise a ProviderError subclass on failure."""

    @property
    def supports_loglik(self) -> bool:
        """Whether `loglik` is implemented; MCQ `loglik` mode refuses providers without it."""
        return False

    def loglik(
        self, prompt: str, continuations: Sequence[str], oracle: Oracle | None = None
    ) -> list[float]:
        """Summed log-probability of each continuation given `prompt`."""
        raise PermanentError(f"provider '{self.name}' does not support log-likelihood scoring")

    def identity(self) -> dict[str, str]:
        """`{provider, model_id, revision}` as recorded in results and cache keys."""
        return {"provider": self.name, "model_id": self.model_id, "revision": self.revision}


DEFAULT_REVISION = "unpinned"
