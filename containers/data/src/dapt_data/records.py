"""The record every step reads and writes, and the audit rows for what a step set aside.

A record keeps `source_id` (source name, file or S3 key, line or offset) unchanged through every
step, so any training line can be traced back to the byte range it came from. Steps never
delete silently: input that cannot be read is *quarantined* (`Quarantined`), and records a
filter, deduplication or decontamination removes are *dropped* (`Dropped`) with the reason and,
for duplicates and overlaps, what they matched.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Kind(StrEnum):
    """How the trainer uses a source: raw text (continued pretraining) or instruction pairs."""

    COMPLETION = "completion"
    INSTRUCTION = "instruction"


class Origin(StrEnum):
    """Whether a source is domain data or public data mixed in to keep general skills."""

    DOMAIN = "domain"
    PUBLIC = "public"


class Record(BaseModel):
    """One training text with its lineage.

    `id` is derived from `source_id`, so the same input line always gets the same id (reruns
    and retries produce identical files).
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="source name from the pipeline config")
    source_id: str = Field(min_length=1, description="source name : file or S3 key : line/offset")
    kind: Kind
    origin: Origin
    text: str
    label: str | None = None
    meta: dict[str, str] = Field(default_factory=dict)

    @staticmethod
    def make(
        source: str,
        location: str,
        kind: Kind,
        origin: Origin,
        text: str,
        label: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> Record:
        """Build a record whose `source_id` is `<source>:<location>` and id its short hash."""
        source_id = f"{source}:{location}"
        return Record(
            id=record_id(source_id),
            source=source,
            source_id=source_id,
            kind=kind,
            origin=origin,
            text=text,
            label=label,
            meta=meta or {},
        )


class Quarantined(BaseModel):
    """Input that could not become a record: where it was, the rule it broke, a raw excerpt."""

    model_config = ConfigDict(extra="forbid")

    source: str
    source_id: str
    reason: str = Field(description="short stable rule name, used for counting")
    detail: str = Field(description="message naming file, line, field and value")
    raw: str = Field(description="the offending input, cut to RAW_EXCERPT_CHARS characters")


class Dropped(BaseModel):
    """A record a step removed, kept for audit with the reason and what it matched."""

    model_config = ConfigDict(extra="forbid")

    step: str
    reason: str = Field(description="short stable rule name, used for counting")
    detail: str
    matched: str | None = Field(
        default=None, description="source_id (or benchmark/item) of the record it duplicates"
    )
    score: float | None = None
    record: Record


def record_id(source_id: str) -> str:
    """Stable 16-hex id of a source location."""
    return hashlib.sha256(source_id.encode("utf-8")).hexdigest()[:16]


def to_jsonl(rows: Iterable[BaseModel]) -> bytes:
    """Serialise rows as JSON Lines with a stable key order (reruns write identical bytes)."""
    lines = [json.dumps(row.model_dump(mode="json"), ensure_ascii=False) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def records_from_jsonl(data: bytes, where: str) -> Iterator[Record]:
    """Parse a records file a previous step wrote; a bad line is a bug, reported with its line."""
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield Record.model_validate_json(line)
        except ValueError as err:
            raise ValueError(f"{where}: line {number} is not a valid record: {err}") from err


def count_reasons(rows: Iterable[Quarantined | Dropped]) -> dict[str, int]:
    """Counts by reason, sorted by reason so summaries are stable."""
    counts = Counter(row.reason for row in rows)
    return dict(sorted(counts.items()))


RAW_EXCERPT_CHARS = 2000
PII_NAMES_META = "pii_names"
"""Meta key of the participant names ingest read from a source's `pii_name_fields` ("; "-joined):
the redactor redacts them wherever they occur in the text, then in the meta itself."""
