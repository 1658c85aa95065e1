"""Read JSONL / Parquet rows from local files or S3; malformed rows are quarantined, not fatal."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dapt_trainer.config import DataConfig, SourceConfig, check_groups
from dapt_trainer.storage import is_missing, is_s3, join, read_bytes, read_text


@dataclass(frozen=True)
class Quarantined:
    """A row that was skipped, with where it was and why."""

    source: str
    file: str
    line: int
    """1-based line of a JSONL file, 1-based row of a Parquet file."""
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "file": self.file, "line": self.line, "reason": self.reason}


@dataclass
class SourceRows:
    """The valid rows of one source (as parsed records) and the quarantined ones."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)


class ManifestError(ValueError):
    """A source's manifest is unusable or its files are not what it says (wrong name or kind,
    no files, a changed file, a record count that differs); the message names manifest,
    source, file and the two values."""


@dataclass(frozen=True)
class ManifestSource:
    """What a data-pipeline manifest (``dapt-data``, ``manifests/<name>/v<N>.json``) promises
    about one source. The trainer verifies ``sha256`` (of the listed files' bytes, in order) and
    ``records`` (rows in them) while it reads them, and takes the source's group from ``origin``
    and its token share from ``mix_probability`` unless the config sets them."""

    manifest: str
    files: list[str]
    sha256: str | None = None
    records: int | None = None
    origin: str | None = None
    mix_probability: float | None = None


def manifest_source(source: SourceConfig) -> ManifestSource | None:
    """The manifest's entry for ``source`` (None without a manifest).

    A dataset manifest of the data pipeline has a ``sources`` list: the entry with this
    source's name gives the files, and its ``kind`` must match. A plain ``{"files": [...]}``
    manifest is read as is (nothing to verify). Relative paths are relative to the manifest. A
    manifest that yields no file is an error, never an empty source.
    """
    if source.manifest is None:
        return None
    where = f"manifest {source.manifest}"
    try:
        manifest = json.loads(read_text(source.manifest))
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where} (source {source.name!r}) is not JSON: {err}") from None
    except UnicodeDecodeError as err:
        raise ManifestError(f"{where} (source {source.name!r}) is not JSON: {err}") from None
    except Exception as err:  # a local OSError, or S3's NoSuchKey, AccessDenied, no bucket
        if is_missing(err):
            raise ManifestError(f"{where} (source {source.name!r}) does not exist") from None
        raise ManifestError(f"{where} (source {source.name!r}) cannot be read: {err}") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where} must be a JSON object, got {type(manifest).__name__}")
    base = source.manifest.rsplit("/", 1)[0] if "/" in source.manifest else "."
    entry = _manifest_entry(manifest, source)
    entries = entry.get("files", [])
    if not entries:
        raise ManifestError(f"{where} lists no files for source {source.name!r}")
    files = []
    for item in entries:
        path = item if isinstance(item, str) else item["path"]
        absolute = is_s3(path) or path.startswith("/")
        files.append(path if absolute else join(base, path))
    probability = entry.get("mix_probability")
    return ManifestSource(
        manifest=source.manifest,
        files=files,
        sha256=entry.get("sha256"),
        records=entry.get("records"),
        origin=entry.get("origin"),
        mix_probability=float(probability) if probability is not None else None,
    )


def source_files(source: SourceConfig) -> list[str]:
    """``paths`` plus the files the optional manifest lists for this source."""
    listed = manifest_source(source)
    return list(source.paths) + (listed.files if listed else [])


def resolve_data(data: DataConfig) -> DataConfig:
    """The stage's data with every source's ``group`` and ``weight`` set: where the config leaves
    them out, a data-pipeline manifest's ``origin`` (domain data is never counted as public by
    default) and ``mix_probability`` (the share of training tokens the pipeline computed for
    the source), else ``public`` and 1. A ``group`` set in the config that contradicts the
    manifest's ``origin`` is an error; a ``weight`` set in the config wins (a deliberate
    override, recorded in the lineage)."""
    resolved = []
    problems = []
    for source in data.sources:
        listed = manifest_source(source)
        update: dict[str, Any] = {}
        if listed is not None and listed.origin is not None:
            if source.group is None:
                update["group"] = listed.origin
            elif source.group != listed.origin:
                problems.append(
                    f"source {source.name!r}: group {source.group!r} contradicts origin "
                    f"{listed.origin!r} in {listed.manifest}"
                )
        if listed is not None and listed.mix_probability is not None and source.weight is None:
            if listed.mix_probability <= 0:
                problems.append(
                    f"source {source.name!r}: mix_probability {listed.mix_probability} in "
                    f"{listed.manifest} leaves it nothing to train on"
                )
            else:
                update["weight"] = listed.mix_probability
        update.setdefault("group", source.counts_as)
        update.setdefault("weight", source.share)
        resolved.append(source.model_copy(update=update))
    out = data.model_copy(update={"sources": resolved})
    problems += check_groups(out, resolved=True)
    if problems:
        raise ManifestError("; ".join(problems))
    return out


def _manifest_entry(manifest: dict[str, Any], source: SourceConfig) -> dict[str, Any]:
    where = f"manifest {source.manifest}"
    if "sources" not in manifest:
        return {"files": manifest.get("files", [])}
    named = [s for s in manifest["sources"] if s.get("name") == source.name]
    if not named:
        names = [s.get("name") for s in manifest["sources"]]
        raise ManifestError(f"{where} has no source named {source.name!r} (it has {names})")
    if named[0].get("kind") != source.kind:
        raise ManifestError(
            f"{where}: source {source.name!r} has kind {named[0].get('kind')!r}, "
            f"the config says {source.kind!r}"
        )
    entry: dict[str, Any] = named[0]
    return entry


def read_source(source: SourceConfig) -> SourceRows:
    """Every valid row of a source, in file order; bad rows land in ``quarantined``."""
    out = SourceRows(name=source.name)
    out.rows.extend(row for _, _, row in iter_source(source, out.quarantined))
    return out


def iter_source(
    source: SourceConfig, quarantined: list[Quarantined]
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(file, line, row)`` for each valid row of a source, in file order, one file in memory
    at a time; bad rows are appended to ``quarantined`` as they are met. The files a
    data-pipeline manifest lists are checked against it (their bytes and record count) while
    they are read; a difference raises ManifestError once the last of them is read."""
    listed = manifest_source(source)
    verify = listed is not None and (listed.sha256 is not None or listed.records is not None)
    reading = _Reading()
    for file in source_files(source):
        tally = reading if verify and listed is not None and file in listed.files else None
        for line, raw in _raw_rows(file, quarantined, source.name, tally):
            reason = _check(raw, source)
            if reason is None:
                yield file, line, raw
            else:
                quarantined.append(Quarantined(source.name, file, line, reason))
    if verify and listed is not None:
        _verify(listed, source.name, reading)


@dataclass
class _Reading:
    """Running sha256 and record count of the files read so far."""

    digest: Any = field(default_factory=hashlib.sha256)
    records: int = 0


def _verify(listed: ManifestSource, name: str, reading: _Reading) -> None:
    where = f"manifest {listed.manifest}, source {name!r}"
    problems = []
    sha256 = reading.digest.hexdigest()
    if listed.sha256 is not None and listed.sha256 != sha256:
        problems.append(
            f"the files {listed.files} hash to sha256 {sha256}, the manifest says "
            f"{listed.sha256} (changed after the manifest was published?)"
        )
    if listed.records is not None and listed.records != reading.records:
        problems.append(
            f"the files hold {reading.records} records, the manifest says {listed.records}"
        )
    if problems:
        raise ManifestError(f"{where}: " + "; ".join(problems))


def _raw_rows(
    file: str, quarantined: list[Quarantined], name: str, tally: _Reading | None = None
) -> Iterator[tuple[int, Any]]:
    """Parsed rows with their 1-based line (JSONL) or row (Parquet) number. JSONL is split on
    ``\\n`` only: U+2028 and friends are legal inside JSON strings."""
    try:
        data = read_bytes(file)
    except Exception as err:
        quarantined.append(Quarantined(name, file, 0, f"file unreadable: {err}"))
        return
    if tally is not None:
        tally.digest.update(data)
    if file.endswith(".parquet"):
        import pyarrow.parquet as pq  # noqa: PLC0415 - only needed for Parquet sources

        try:
            batches = pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=4096)
            line = 0
            for batch in batches:
                for row in batch.to_pylist():
                    line += 1
                    if tally is not None:
                        tally.records += 1
                    yield line, row
        except Exception as err:
            what = f"unreadable after row {line}" if line else "not a Parquet file"
            quarantined.append(Quarantined(name, file, line, f"{what}: {err}"))
        return
    for line, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if tally is not None:
            tally.records += 1
        try:
            # Strict: a replacement character would silently train on corrupted text.
            parsed = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            reason = f"invalid UTF-8 at byte {err.start} of the line: {err.reason}"
            quarantined.append(Quarantined(name, file, line, reason))
            continue
        except json.JSONDecodeError as err:
            quarantined.append(Quarantined(name, file, line, f"invalid JSON: {err.msg}"))
            continue
        yield line, parsed


def _check(raw: Any, source: SourceConfig) -> str | None:
    """Why a parsed row cannot be used, or None when it can."""
    if not isinstance(raw, dict):
        return f"row is {type(raw).__name__}, expected an object"
    if source.kind == "completion":
        text = raw.get(source.text_field)
        if not isinstance(text, str):
            return f"field '{source.text_field}' missing or not a string"
        return None if text.strip() else f"field '{source.text_field}' is empty"
    if "messages" in raw:
        return _check_messages(raw["messages"])
    for key in ("prompt", "response"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            return f"field '{key}' missing, empty or not a string (or give 'messages')"
    return None


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            return f"messages[{i}] must be an object with a string 'content'"
        if m.get("role") not in ROLES:
            return f"messages[{i}].role = {m.get('role')!r}: must be one of {sorted(ROLES)}"
    if not any(m["role"] == "assistant" for m in messages):
        return "'messages' has no assistant turn to learn from"
    return None


ROLES = frozenset({"system", "user", "assistant"})
