"""PII and secret redaction: detect spans, resolve overlaps, replace with typed placeholders.

`redact_text(text, config)` returns the redacted text and counts by type (never the values);
`redact_records(records, config)` does it for each record and returns copies plus a report.
A record is anything with a `text` (pydantic model, dataclass, plain object or mapping);
chat records may also carry `turns` (each with `text`), and participant names are read from
`config.name_fields` on the record, on its `meta` mapping, and on each turn.

Detectors (`config.detector`):
- `patterns` (default): offline regexes and validators in `dapt_data.pii` (libphonenumber,
  Luhn, IBAN mod-97, vendor key formats, entropy) plus the name heuristics, and a spaCy
  model's PERSON entities when `name_model` names one (`pii.ner`, opt-in).
- `comprehend`: Amazon Comprehend DetectPiiEntities for people, addresses, phones, emails,
  cards and IDs, merged with the offline secret, card and IBAN validators (Comprehend has no
  vendor token formats; validators are cheap and exact).

Overlapping spans merge: the union of their characters is replaced once, with the type of
highest priority (`pii.types.PRIORITY`: a card number is never also reported as a phone).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import boto3
from pydantic import BaseModel, ConfigDict, Field

from dapt_data.pii.comprehend import ComprehendClient, comprehend_spans
from dapt_data.pii.names import name_spans
from dapt_data.pii.ner import load_pipeline, model_name_spans
from dapt_data.pii.patterns import (
    address_spans,
    card_spans,
    email_spans,
    iban_spans,
    phone_spans,
    secret_spans,
)
from dapt_data.pii.public_values import PUBLIC_TEST_VALUES, public_key
from dapt_data.pii.types import PRIORITY, PiiType, Span
from dapt_data.records import PII_NAMES_META

R = TypeVar("R")


class RedactionConfig(BaseModel):
    """What to detect and how to write placeholders (the pipeline's `redact.options`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector: Literal["patterns", "comprehend"] = Field(
        default="patterns",
        description="`patterns`: offline regexes, validators and name heuristics; `comprehend`: "
        "Amazon Comprehend DetectPiiEntities plus the offline secret, card and IBAN validators.",
    )
    types: frozenset[PiiType] = Field(
        default_factory=lambda: frozenset(DEFAULT_TYPES),
        description="PII types to redact; values of other types are left in the text.",
    )
    phone_regions: tuple[str, ...] = Field(
        default=("US", "GB", "DE", "FR", "IN", "AU", "CA", "ES", "IT", "NL", "BR", "MX", "JP"),
        min_length=1,
        description="Regions (ISO 3166 alpha-2) tried for phone numbers written without "
        "'+<country code>'.",
    )
    secret_min_entropy: float = Field(
        default=3.0,
        ge=0,
        le=8,
        description="Shannon entropy, in bits per character, from which the value of a "
        "`key=value` assignment counts as a secret (a bare token needs more).",
    )
    numbered: bool = Field(
        default=False,
        description="Number placeholders ('[NAME_1]', '[NAME_2]'), the same value getting the "
        "same number within a record.",
    )
    name_fields: tuple[str, ...] = Field(
        default=("customer_name", "agent_name", "name", "speaker", "author", "participants"),
        description="Record, meta and turn fields holding participant names, which are redacted "
        "wherever they occur in the text.",
    )
    name_model: str | None = Field(
        default=None,
        description="`patterns` detector: a spaCy pipeline (installed package name or folder) "
        "whose PERSON entities are redacted too, less those the name rules refuse "
        "(`dapt_data.pii.ner`); needs `spacy` and a model, neither installed by default. null: "
        "name heuristics only.",
    )
    allow_values: frozenset[str] = Field(
        default_factory=frozenset,
        description="Exact values never redacted (a product's public test card, a brand name).",
    )
    allow_public_test_values: bool = Field(
        default=True,
        description="Keep the well-known public test values of `dapt_data.pii.public_values` "
        "(payment networks' documented test cards, AWS's documented example keys), which a "
        "domain's documentation may teach; false: redact them like any other value.",
    )
    allow_email_domains: frozenset[str] = Field(
        default_factory=frozenset,
        description="Email domains kept (your own support@/no-reply@ addresses carry knowledge).",
    )
    comprehend_language: str = Field(
        default="en", description="Language code sent to Comprehend with every text."
    )
    comprehend_min_score: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Lowest Comprehend confidence score of an entity that is redacted.",
    )
    comprehend_region: str | None = Field(
        default=None,
        description="AWS region of the Comprehend client; null: the default region of the AWS "
        "configuration.",
    )


class RedactionResult(BaseModel):
    """Redacted text and what was replaced, by type (counts only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    spans_by_type: dict[str, int]


class RedactionReport(BaseModel):
    """Totals over records: spans by type, and how many records had anything redacted."""

    model_config = ConfigDict(extra="forbid")

    records: int = 0
    records_redacted: int = 0
    spans_by_type: dict[str, int] = Field(default_factory=dict)
    spans_by_detector: dict[str, int] = Field(default_factory=dict)


class _Placeholders:
    """Placeholder text per type, numbered per record when configured."""

    def __init__(self, numbered: bool) -> None:
        self.numbered = numbered
        self.numbers: dict[tuple[PiiType, str], int] = {}
        self.per_type: Counter[PiiType] = Counter()

    def __call__(self, kind: PiiType, value: str) -> str:
        if not self.numbered:
            return f"[{kind.value}]"
        key = (kind, " ".join(value.lower().split()))
        if key not in self.numbers:
            self.per_type[kind] += 1
            self.numbers[key] = self.per_type[kind]
        return f"[{kind.value}_{self.numbers[key]}]"


def detect(
    text: str,
    config: RedactionConfig,
    known_names: Iterable[str] = (),
    comprehend: ComprehendClient | None = None,
) -> list[Span]:
    """Every span the configured detectors find, before overlap resolution."""
    wanted = config.types
    spans: list[Span] = []
    if PiiType.SECRET in wanted:
        spans += secret_spans(text, config.secret_min_entropy)
    if PiiType.CARD in wanted:
        spans += card_spans(text)
    if PiiType.IBAN in wanted:
        spans += iban_spans(text)
    if config.detector == "comprehend":
        client = comprehend or _comprehend_client(config.comprehend_region)
        found = comprehend_spans(
            text, client, config.comprehend_language, config.comprehend_min_score
        )
        spans += [s for s in found if s.type in wanted]
        if PiiType.NAME in wanted:  # participants we know by name, whatever Comprehend says
            spans += [s for s in name_spans(text, known_names) if s.detector == "known-name"]
        return spans
    if PiiType.EMAIL in wanted:
        spans += email_spans(text)
    phones = phone_spans(text, config.phone_regions) if PiiType.PHONE in wanted else []
    if PiiType.ADDRESS in wanted:
        addresses = address_spans(text)
        spans += addresses
        # A digit group inside an address is its postal code or house number, not a phone
        # ("São Paulo - SP, 01304-001"); a phone written after an address is outside it.
        phones = [
            p for p in phones if not any(a.start <= p.start and p.end <= a.end for a in addresses)
        ]
    spans += phones
    if PiiType.NAME in wanted:
        spans += name_spans(text, known_names)
        if config.name_model:
            spans += model_name_spans(text, load_pipeline(config.name_model))
    return spans


def resolve(spans: Sequence[Span]) -> list[Span]:
    """Merge overlapping spans into one each, typed by the highest-priority member."""
    merged: list[Span] = []
    for span in sorted(spans):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            winner = last if PRIORITY[last.type] <= PRIORITY[span.type] else span
            merged[-1] = Span(last.start, max(last.end, span.end), winner.type, winner.detector)
        else:
            merged.append(span)
    return merged


def redact_text(
    text: str,
    config: RedactionConfig | None = None,
    known_names: Iterable[str] = (),
    comprehend: ComprehendClient | None = None,
) -> RedactionResult:
    """Replace every detected span of `text` with its placeholder."""
    config = config or RedactionConfig()
    redacted, counts, _ = _redact(
        text, config, known_names, comprehend, _Placeholders(config.numbered)
    )
    return RedactionResult(text=redacted, spans_by_type=_sorted(counts))


def redact_records(
    records: Iterable[R],
    config: RedactionConfig | None = None,
    comprehend: ComprehendClient | None = None,
) -> tuple[list[R], RedactionReport]:
    """Redacted copies of `records` (the inputs are not modified) and the totals.

    Redacts `text` and, when present, each turn's `text`; placeholders are numbered
    consistently across a record's text and turns when `config.numbered` is on.
    """
    config = config or RedactionConfig()
    report = RedactionReport()
    by_type: Counter[str] = Counter()
    by_detector: Counter[str] = Counter()
    out: list[R] = []
    for record in records:
        names = known_names_of(record, config.name_fields)
        placeholders = _Placeholders(config.numbered)
        changes: dict[str, Any] = {}
        before = sum(by_type.values())
        text = _get(record, "text")
        if not isinstance(text, str):
            raise TypeError(
                f"redact_records: record {_get(record, 'source_id')!r} has field 'text' of type "
                f"{type(text).__name__}; need str"
            )
        changes["text"], counts, detectors = _redact(text, config, names, comprehend, placeholders)
        by_type.update(counts)
        by_detector.update(detectors)
        turns = _get(record, "turns")
        if isinstance(turns, list):
            new_turns = []
            for turn in turns:
                said = _get(turn, "text")
                if isinstance(said, str):
                    said, counts, detectors = _redact(said, config, names, comprehend, placeholders)
                    by_type.update(counts)
                    by_detector.update(detectors)
                    new_turns.append(_replace(turn, {"text": said}))
                else:
                    new_turns.append(turn)
            changes["turns"] = new_turns
        meta = _get(record, "meta")
        if isinstance(meta, Mapping) and names:
            # the names themselves must not reach the training files through the metadata
            changes["meta"] = {
                key: _redact(value, config, names, comprehend, placeholders)[0]
                if isinstance(value, str) and (key in config.name_fields or key == PII_NAMES_META)
                else value
                for key, value in meta.items()
            }
        out.append(_replace(record, changes))
        report.records += 1
        report.records_redacted += sum(by_type.values()) > before
    report.spans_by_type = _sorted(by_type)
    report.spans_by_detector = _sorted(by_detector)
    return out, report


def known_names_of(record: object, fields: Sequence[str]) -> list[str]:
    """Participant names from `fields` on the record, its `meta` (with the names ingest read
    from a source's `pii_name_fields`, `PII_NAMES_META`), and its turns; a string holding
    several names separates them with ';'."""
    names: list[str] = []
    fields = (*fields, PII_NAMES_META)
    holders: list[object] = [record, _get(record, "meta")]
    turns = _get(record, "turns")
    if isinstance(turns, list):
        holders += turns
    for holder in holders:
        if holder is None:
            continue
        for field in fields:
            value = _get(holder, field)
            if isinstance(value, str):
                names += [part.strip() for part in value.split(";") if part.strip()]
            elif isinstance(value, list | tuple):
                names += [v for v in value if isinstance(v, str)]
            elif isinstance(value, Mapping):
                names += [v for v in value.values() if isinstance(v, str)]
    return names


def _redact(
    text: str,
    config: RedactionConfig,
    known_names: Iterable[str],
    comprehend: ComprehendClient | None,
    placeholders: _Placeholders,
) -> tuple[str, Counter[str], Counter[str]]:
    spans = [
        s
        for s in resolve(detect(text, config, known_names, comprehend))
        if not _allowed(text[s.start : s.end], s.type, config)
    ]
    parts = []
    cursor = 0
    for span in spans:
        parts.append(text[cursor : span.start])
        parts.append(placeholders(span.type, text[span.start : span.end]))
        cursor = span.end
    parts.append(text[cursor:])
    return (
        "".join(parts),
        Counter(span.type.value for span in spans),
        Counter(span.detector for span in spans),
    )


def _allowed(value: str, kind: PiiType, config: RedactionConfig) -> bool:
    if value in config.allow_values:
        return True
    if (
        config.allow_public_test_values
        and kind in PUBLIC_VALUE_TYPES
        and public_key(value) in PUBLIC_TEST_VALUES
    ):
        return True
    domain = value.rpartition("@")[2].lower()
    return kind == PiiType.EMAIL and domain in {d.lower() for d in config.allow_email_domains}


def _get(holder: object, field: str) -> Any:
    if isinstance(holder, Mapping):
        return holder.get(field)
    return getattr(holder, field, None)


def _replace(holder: R, changes: dict[str, Any]) -> R:
    """A copy of `holder` with `changes`, whatever kind of record it is."""
    if isinstance(holder, BaseModel):
        return holder.model_copy(update=changes)
    if isinstance(holder, Mapping):
        return {**holder, **changes}  # type: ignore[return-value]  # a dict copy of a mapping R
    if dataclasses.is_dataclass(holder) and not isinstance(holder, type):
        return dataclasses.replace(holder, **changes)
    raise TypeError(
        f"redact_records: cannot copy a record of type {type(holder).__name__}; "
        "need a pydantic model, a dataclass or a mapping"
    )


def _comprehend_client(region: str | None) -> ComprehendClient:
    client: ComprehendClient = boto3.client("comprehend", region_name=region)
    return client


def _sorted(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items()))


PUBLIC_VALUE_TYPES = frozenset({PiiType.CARD, PiiType.SECRET})
"""Types whose values `allow_public_test_values` may keep (the list holds cards and keys)."""
DEFAULT_TYPES: tuple[PiiType, ...] = (
    PiiType.EMAIL,
    PiiType.PHONE,
    PiiType.CARD,
    PiiType.IBAN,
    PiiType.ADDRESS,
    PiiType.NAME,
    PiiType.SECRET,
    PiiType.ID,
)
