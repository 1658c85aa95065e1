"""Amazon Comprehend `DetectPiiEntities` as a detector (`detector: comprehend`).

The text is cut into chunks of at most `max_bytes` UTF-8 bytes, at whitespace where there is
some, and each chunk's entity offsets are shifted back into the whole text. Comprehend
reports offsets in Unicode code points, which are Python `str` indices. Entity types map to
our placeholders by `COMPREHEND_TYPES`; types not in that map (DATE_TIME, AGE, URL, ...)
are left in the text on purpose: dates and ages are useful and rarely identifying alone.
Comprehend covers AWS keys and passwords but not other vendors' tokens, so `redact.py`
always runs the secret patterns too.

@see https://docs.aws.amazon.com/comprehend/latest/APIReference/API_DetectPiiEntities.html
"""

from __future__ import annotations

from typing import Any, Protocol

from dapt_data.pii.types import PiiType, Span


class ComprehendClient(Protocol):
    """The one boto3 Comprehend method we call (a `boto3.client("comprehend")` fits)."""

    def detect_pii_entities(self, *, Text: str, LanguageCode: str) -> dict[str, Any]:  # noqa: N803
        """boto3's signature: keyword arguments in the API's own casing."""
        ...


def comprehend_spans(
    text: str,
    client: ComprehendClient,
    language: str = "en",
    min_score: float = 0.5,
    max_bytes: int | None = None,
) -> list[Span]:
    """PII spans Comprehend finds in `text` with at least `min_score` confidence."""
    limit = DEFAULT_COMPREHEND_MAX_BYTES if max_bytes is None else max_bytes
    spans = []
    for offset, chunk in chunk_text(text, limit):
        if not chunk.strip():
            continue
        response = client.detect_pii_entities(Text=chunk, LanguageCode=language)
        for entity in response.get("Entities", []):
            kind = COMPREHEND_TYPES.get(str(entity.get("Type")))
            if kind is None or float(entity.get("Score", 0.0)) < min_score:
                continue
            start, end = int(entity["BeginOffset"]), int(entity["EndOffset"])
            if not 0 <= start < end <= len(chunk):
                raise ValueError(
                    f"Comprehend entity {entity.get('Type')} has offsets {start}..{end} "
                    f"outside its chunk of {len(chunk)} characters"
                )
            spans.append(Span(offset + start, offset + end, kind, "comprehend"))
    return spans


def chunk_text(text: str, max_bytes: int) -> list[tuple[int, str]]:
    """Split `text` into `(offset, chunk)` pieces of at most `max_bytes` UTF-8 bytes.

    Cuts at the last whitespace before the limit so that a value is not split between two
    requests; a piece without whitespace is cut at the limit.
    """
    if max_bytes < MIN_CHUNK_BYTES:
        raise ValueError(f"'max_bytes' = {max_bytes} must be at least {MIN_CHUNK_BYTES}")
    chunks = []
    start = 0
    while start < len(text):
        end = _fit(text, start, max_bytes)
        if end < len(text):
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            if cut > start:
                end = cut + 1
        chunks.append((start, text[start:end]))
        start = end
    return chunks


def _fit(text: str, start: int, max_bytes: int) -> int:
    """The largest end such that `text[start:end]` encodes to at most `max_bytes` bytes."""
    end = min(len(text), start + max_bytes)  # a character is at least one byte
    while len(text[start:end].encode("utf-8")) > max_bytes:
        overshoot = len(text[start:end].encode("utf-8")) - max_bytes
        end -= max(1, overshoot // 4)
    return end


COMPREHEND_TYPES: dict[str, PiiType] = {
    "EMAIL": PiiType.EMAIL,
    "PHONE": PiiType.PHONE,
    "CREDIT_DEBIT_NUMBER": PiiType.CARD,
    "CREDIT_DEBIT_CVV": PiiType.CARD,
    "CREDIT_DEBIT_EXPIRY": PiiType.CARD,
    "INTERNATIONAL_BANK_ACCOUNT_NUMBER": PiiType.IBAN,
    "BANK_ACCOUNT_NUMBER": PiiType.IBAN,
    "BANK_ROUTING": PiiType.IBAN,
    "SWIFT_CODE": PiiType.IBAN,
    "ADDRESS": PiiType.ADDRESS,
    "NAME": PiiType.NAME,
    "AWS_ACCESS_KEY": PiiType.SECRET,
    "AWS_SECRET_KEY": PiiType.SECRET,
    "PASSWORD": PiiType.SECRET,
    "PIN": PiiType.SECRET,
    "SSN": PiiType.ID,
    "PASSPORT_NUMBER": PiiType.ID,
    "DRIVER_ID": PiiType.ID,
    "USERNAME": PiiType.ID,
    "IP_ADDRESS": PiiType.ID,
    "MAC_ADDRESS": PiiType.ID,
    "LICENSE_PLATE": PiiType.ID,
    "VEHICLE_IDENTIFICATION_NUMBER": PiiType.ID,
    "UK_NATIONAL_INSURANCE_NUMBER": PiiType.ID,
    "UK_NATIONAL_HEALTH_SERVICE_NUMBER": PiiType.ID,
    "UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER": PiiType.ID,
    "CA_SOCIAL_INSURANCE_NUMBER": PiiType.ID,
    "CA_HEALTH_NUMBER": PiiType.ID,
    "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER": PiiType.ID,
    "IN_PERMANENT_ACCOUNT_NUMBER": PiiType.ID,
    "IN_AADHAAR": PiiType.ID,
    "IN_NREGA": PiiType.ID,
    "IN_VOTER_NUMBER": PiiType.ID,
}
"""Comprehend entity type -> placeholder; unlisted types (DATE_TIME, AGE, URL) are kept."""

DEFAULT_COMPREHEND_MAX_BYTES = 100_000
"""DetectPiiEntities accepts at most 100 KB of UTF-8 text per request."""
MIN_CHUNK_BYTES = 16
