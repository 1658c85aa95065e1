"""PII and secret detectors: offline patterns and validators, names, Amazon Comprehend.

Each detector returns `Span`s (character offsets into the text it was given); `redact.py`
resolves overlaps and replaces the spans with typed placeholders.
"""

from dapt_data.pii.types import PiiType, Span

__all__ = ["PiiType", "Span"]
