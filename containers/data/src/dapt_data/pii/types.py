"""The PII types we redact and the span every detector returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PiiType(StrEnum):
    """What a span is; the value is the placeholder's name (`[EMAIL]`)."""

    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CARD = "CARD"
    IBAN = "IBAN"
    ADDRESS = "ADDRESS"
    NAME = "NAME"
    SECRET = "SECRET"
    ID = "ID"
    """Other government or account identifiers (only Amazon Comprehend reports these)."""


@dataclass(frozen=True, order=True)
class Span:
    """A detected value: `text[start:end]` is of type `type`, found by `detector`."""

    start: int
    end: int
    type: PiiType
    detector: str

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(
                f"Span from detector '{self.detector}' has start={self.start}, end={self.end}; "
                "need 0 <= start < end"
            )


PRIORITY: dict[PiiType, int] = {
    PiiType.SECRET: 0,
    PiiType.IBAN: 1,
    PiiType.CARD: 2,
    PiiType.EMAIL: 3,
    PiiType.PHONE: 4,
    PiiType.ID: 5,
    PiiType.ADDRESS: 6,
    PiiType.NAME: 7,
}
"""When spans of different types overlap, the lower number wins (a card is not a phone). An IBAN
outranks a card: its BBAN may hold a Luhn-valid digit run, while a card number cannot hold an
IBAN (which starts with two letters)."""
