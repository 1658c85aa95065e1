"""Read JSONL / Parquet rows from local files or S3; malformed rows are quarantined, not fatal."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dapt_trainer.config import SourceConfig
from dapt_trainer.storage import is_s3, join, read_bytes, read_text


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
    """A source's manifest does not list files for it; the message names manifest and source."""


def source_files(source: SourceConfig) -> list[str]:
    """``paths`` plus the files the optional manifest lists for this source.

    A dataset manifest of the data pipeline (``dapt-data``, ``manifests/<name>/v<N>.json``) has
    a ``sources`` list: the entry with this source's name gives the files, and its ``kind`` must
    match. A plain ``{"files": [...]}`` manifest is read as is. Relative paths are relative to
    the manifest. A manifest that yields no file is an error, never an empty source.
    """
    files = list(source.paths)
    if source.manifest is not None:
        manifest = json.loads(read_text(source.manifest))
        base = source.manifest.rsplit("/", 1)[0] if "/" in source.manifest else "."
        for entry in _manifest_entries(manifest, source):
            path = entry if isinstance(entry, str) else entry["path"]
            absolute = is_s3(path) or path.startswith("/")
            files.append(path if absolute else join(base, path))
    return files


def _manifest_entries(manifest: dict[str, Any], source: SourceConfig) -> list[Any]:
    where = f"manifest {source.manifest}"
    if "sources" in manifest:
        named = [s for s in manifest["sources"] if s.get("name") == source.name]
        if not named:
            names = [s.get("name") for s in manifest["sources"]]
            raise ManifestError(f"{where} has no source named {source.name!r} (it has {names})")
        if named[0].get("kind") != source.kind:
            raise ManifestError(
                f"{where}: source {source.name!r} has kind {named[0].get('kind')!r}, "
                f"the config says {source.kind!r}"
            )
        entries: list[Any] = named[0].get("files", [])
    else:
        entries = manifest.get("files", [])
    if not entries:
        raise ManifestError(f"{where} lists no files for source {source.name!r}")
    return entries


def read_source(source: SourceConfig) -> SourceRows:
    """Every valid row of a source, in file order; bad rows land in ``quarantined``."""
    out = SourceRows(name=source.name)
    out.rows.extend(row for _, _, row in iter_source(source, out.quarantined))
    return out


def iter_source(
    source: SourceConfig, quarantined: list[Quarantined]
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(file, line, row)`` for each valid row of a source, in file order, one file in memory
    at a time; bad rows are appended to ``quarantined`` as they are met."""
    for file in source_files(source):
        for line, raw in _raw_rows(file, quarantined, source.name):
            reason = _check(raw, source)
            if reason is None:
                yield file, line, raw
            else:
                quarantined.append(Quarantined(source.name, file, line, reason))


def _raw_rows(file: str, quarantined: list[Quarantined], name: str) -> Iterator[tuple[int, Any]]:
    try:
        data = read_bytes(file)
    except Exception as err:
        quarantined.append(Quarantined(name, file, 0, f"file unreadable: {err}"))
        return
    if file.endswith(".parquet"):
        import pyarrow.parquet as pq  # noqa: PLC0415 - only needed for Parquet sources

        try:
            batches = pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=4096)
            line = 0
            for batch in batches:
                for row in batch.to_pylist():
                    line += 1
                    yield line, row
        except Exception as err:
            what = f"unreadable after row {line}" if line else "not a Parquet file"
            quarantined.append(Quarantined(name, file, line, f"{what}: {err}"))
        return
    for line, text in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            parsed = json.loads(text)
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
