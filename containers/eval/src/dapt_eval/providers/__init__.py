"""Model providers behind one interface (`Provider.generate`, optional `Provider.loglik`)."""

from dapt_eval.providers.base import (
    DecodingParams,
    Generation,
    Oracle,
    PermanentError,
    Provider,
    ProviderError,
    ThrottledError,
    TransientError,
    Usage,
)

__all__ = [
    "DecodingParams",
    "Generation",
    "Oracle",
    "PermanentError",
    "Provider",
    "ProviderError",
    "ThrottledError",
    "TransientError",
    "Usage",
]
