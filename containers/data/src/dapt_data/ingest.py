"""Ingest: read every source file into records, quarantining what cannot be read.

Bad input never stops a run and is never dropped silently. Rules (the `reason` counted):

- `file_too_large` (file): over `ingest.max_file_bytes`;
- `empty_file` (file): no bytes, or whitespace only;
- `invalid_utf8` (file): not UTF-8; the detail gives the byte offset;
- `line_too_long`: a line over `ingest.max_line_chars` (the line for jsonl/csv/chat, the file
  for documents; a CSV row with a longer cell, which Python's csv module would refuse);
- `broken_html` (file): no element holding text once nav/script/style/... are removed;
- `invalid_json` (line): a JSONL line that does not parse, or is nested too deeply to parse;
- `bad_row` (line/row): a JSON value that is not an object, a CSV row with the wrong cell count;
- `missing_field` (line/row, or the CSV file for a missing column): text/label field absent or
  not a string;
- `empty_text`: nothing left once extracted;
- `bad_chat` (line): `turns` missing or empty, or a turn without string `role` and `text`;
- `broken_symlink` (file): a symlink under a source folder whose target is missing;
- `no_files` (source): a source folder or prefix with no file matching its include globs
  (matched case-insensitively: `A.MD` is a Markdown file).

`file_too_large` is decided from the listed size, before the file is read.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from selectolax.lexbor import LexborHTMLParser

from dapt_data.config import Format, IngestConfig, SourceConfig
from dapt_data.records import PII_NAMES_META, RAW_EXCERPT_CHARS, Quarantined, Record
from dapt_data.storage import FileRef, Listing


@dataclass
class Ingested:
    """Records and quarantined input of one file (or one source)."""

    records: list[Record] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)

    def extend(self, other: Ingested) -> None:
        """Append another file's results, keeping order."""
        self.records += other.records
        self.quarantined += other.quarantined


@dataclass(frozen=True)
class _Ctx:
    source: SourceConfig
    uri: str
    limits: IngestConfig

    def record(
        self, location: str, text: str, label: str | None = None, meta: dict[str, str] | None = None
    ) -> Record:
        return Record.make(
            self.source.name, location, self.source.kind, self.source.origin, text, label, meta
        )

    def quarantine(self, location: str, reason: str, detail: str, raw: str) -> Quarantined:
        return Quarantined(
            source=self.source.name,
            source_id=f"{self.source.name}:{location}",
            reason=reason,
            detail=f"{location}: {detail}",
            raw=raw[:RAW_EXCERPT_CHARS],
        )


def ingest_file(source: SourceConfig, ref: FileRef, data: bytes, limits: IngestConfig) -> Ingested:
    """Turn one file's bytes into records; whole-file problems quarantine the file."""
    ctx = _Ctx(source, ref.uri, limits)
    text, problem = _decode(ctx, data)
    if problem is not None:
        return Ingested(quarantined=[problem])
    assert text is not None
    return READERS[source.format](ctx, text)


def _decode(ctx: _Ctx, data: bytes) -> tuple[str | None, Quarantined | None]:
    uri = ctx.uri
    if len(data) > ctx.limits.max_file_bytes:
        detail = f"{len(data)} bytes > ingest.max_file_bytes {ctx.limits.max_file_bytes}"
        return None, ctx.quarantine(uri, "file_too_large", detail, "")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        detail = f"invalid UTF-8 at byte {err.start}: {err.reason}"
        return None, ctx.quarantine(
            uri, "invalid_utf8", detail, data[: err.start + 16].decode("utf-8", errors="replace")
        )
    text = text.removeprefix("\ufeff")  # a BOM is not content
    if not text.strip():
        return None, ctx.quarantine(uri, "empty_file", "file is empty or whitespace only", text)
    return text, None


def _long_line(ctx: _Ctx, text: str) -> tuple[int, int] | None:
    """(line number, length) of the first line over the limit."""
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > ctx.limits.max_line_chars:
            return number, len(line)
    return None


def _document(ctx: _Ctx, text: str, extract: Callable[[str], str], fmt: str) -> Ingested:
    long = _long_line(ctx, text)
    if long:
        limit = ctx.limits.max_line_chars
        detail = f"line {long[0]} has {long[1]} chars > ingest.max_line_chars {limit}"
        return Ingested(quarantined=[ctx.quarantine(ctx.uri, "line_too_long", detail, "")])
    body, meta = _front_matter(text) if fmt == "markdown" else (text, {})
    extracted = extract(body).strip()
    if not extracted:
        reason = "broken_html" if fmt == "html" else "empty_text"
        detail = f"no text left after {fmt} extraction"
        return Ingested(quarantined=[ctx.quarantine(ctx.uri, reason, detail, text)])
    return Ingested(records=[ctx.record(ctx.uri, extracted, meta=meta)])


_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def _front_matter(text: str) -> tuple[str, dict[str, str]]:
    """Split `---` front matter off; simple `key: value` lines go to meta."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return text, {}
    meta = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            meta[key.strip()] = value.strip()
    return text[match.end() :], meta


def markdown_to_text(text: str) -> str:
    """Markdown to plain text from markdown-it-py's token stream; table rows as `a | b` lines."""
    blocks: list[str] = []
    rows: list[str] = []
    cells: list[str] = []
    in_cell = False
    for token in _MARKDOWN.parse(text):
        kind = token.type
        if kind in {"th_open", "td_open", "th_close", "td_close"}:
            in_cell = kind.endswith("_open")
        elif kind == "inline":
            content = "".join(_inline_text(child) for child in token.children or [])
            (cells if in_cell else blocks).append(content)
        elif kind in {"fence", "code_block"}:
            blocks.append(token.content.rstrip("\n"))
        elif kind == "tr_close":
            rows.append(" | ".join(cells))
            cells = []
        elif kind == "table_close":
            blocks.append("\n".join(rows))
            rows = []
    return "\n\n".join(b for b in blocks if b.strip())


def _inline_text(child: Any) -> str:
    if child.type in {"text", "code_inline"}:
        return str(child.content)
    if child.type in {"softbreak", "hardbreak"}:
        return "\n" if child.type == "hardbreak" else " "
    if child.type == "image":
        return str(child.content)
    return ""


def html_to_text(text: str) -> str:
    """Article text with selectolax (lexbor): boilerplate removed, one line per block element.

    Returns '' when no element in the body holds text (not HTML, or markup too broken to parse).
    """
    tree = LexborHTMLParser(text)
    for node in tree.css(", ".join(HTML_BOILERPLATE)):
        node.decompose()
    body = tree.body
    if body is None or not any(node.text(strip=True) for node in tree.css("body *")):
        return ""
    for node in tree.css(", ".join(HTML_BLOCKS)):
        # lexbor's text() joins text nodes with one separator; a newline after each block
        # keeps paragraphs apart without splitting inline elements (<b>, <a>) mid-sentence.
        node.insert_after("\n")
    lines = (" ".join(line.split()) for line in body.text(separator="").splitlines())
    return "\n".join(line for line in lines if line)


def _read_markdown(ctx: _Ctx, text: str) -> Ingested:
    return _document(ctx, text, markdown_to_text, "markdown")


def _read_html(ctx: _Ctx, text: str) -> Ingested:
    return _document(ctx, text, html_to_text, "html")


def _read_text(ctx: _Ctx, text: str) -> Ingested:
    return _document(ctx, text, lambda t: t, "text")


def _json_lines(ctx: _Ctx, text: str) -> Iterator[tuple[str, object | Quarantined]]:
    """(location, parsed object or quarantine row) per non-blank line; a `.json` list works too."""
    stripped = text.lstrip()
    if ctx.uri.endswith(".json") and stripped.startswith("["):
        yield from _json_array(ctx, text)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        location = f"{ctx.uri}:{number}"
        if not line.strip():
            continue
        if len(line) > ctx.limits.max_line_chars:
            detail = f"{len(line)} chars > ingest.max_line_chars {ctx.limits.max_line_chars}"
            yield location, ctx.quarantine(location, "line_too_long", detail, line)
            continue
        try:
            yield location, json.loads(line)
        except json.JSONDecodeError as err:
            detail = f"invalid JSON: {err.msg} at column {err.colno}"
            yield location, ctx.quarantine(location, "invalid_json", detail, line)
        except RecursionError:
            yield location, ctx.quarantine(location, "invalid_json", TOO_DEEP, line)


def _json_array(ctx: _Ctx, text: str) -> Iterator[tuple[str, object | Quarantined]]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        detail = f"invalid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        yield ctx.uri, ctx.quarantine(ctx.uri, "invalid_json", detail, text)
        return
    except RecursionError:
        yield ctx.uri, ctx.quarantine(ctx.uri, "invalid_json", TOO_DEEP, text)
        return
    for index, value in enumerate(values):
        yield f"{ctx.uri}#{index}", value


def _read_chat(ctx: _Ctx, text: str) -> Ingested:
    out = Ingested()
    for location, value in _json_lines(ctx, text):
        if isinstance(value, Quarantined):
            out.quarantined.append(value)
            continue
        rendered, problem = _render_chat(value)
        if problem:
            raw = json.dumps(value, ensure_ascii=False)
            out.quarantined.append(ctx.quarantine(location, "bad_chat", problem, raw))
            continue
        meta = _meta(ctx, value)
        out.records.append(ctx.record(location, rendered, meta=meta))
    return out


def _render_chat(value: object) -> tuple[str, str]:
    """`Role: text` lines, one per turn; or ('', problem)."""
    if not isinstance(value, dict):
        return "", f"a chat must be a JSON object, got {type(value).__name__}"
    turns = value.get("turns")
    if not isinstance(turns, list) or not turns:
        return "", f"field 'turns' must be a non-empty list, got {turns!r:.60}"
    lines = []
    for index, turn in enumerate(turns):
        role = turn.get("role") if isinstance(turn, dict) else None
        said = turn.get("text") if isinstance(turn, dict) else None
        if not isinstance(role, str) or not isinstance(said, str):
            return "", f"turns.{index}: needs string 'role' and 'text', got {turn!r:.80}"
        lines.append(f"{role.strip().capitalize()}: {said.strip()}")
    return "\n".join(lines), ""


def _meta(ctx: _Ctx, value: object) -> dict[str, str]:
    """The id field and, under `PII_NAMES_META`, the names of `pii_name_fields` (from the
    object and each of its turns), for the redactor."""
    meta: dict[str, str] = {}
    field_name = ctx.source.id_field
    if field_name and isinstance(value, dict) and field_name in value:
        meta[field_name] = str(value[field_name])
    names = _names(value, ctx.source.pii_name_fields)
    if names:
        meta[PII_NAMES_META] = "; ".join(names)
    return meta


def _names(value: object, fields: list[str]) -> list[str]:
    """Distinct non-blank strings (or lists of strings) under `fields`, in order of appearance."""
    if not fields or not isinstance(value, dict):
        return []
    holders = [value]
    turns = value.get("turns")
    if isinstance(turns, list):
        holders += [t for t in turns if isinstance(t, dict)]
    found: list[str] = []
    for holder in holders:
        for name in fields:
            got = holder.get(name)
            values = got if isinstance(got, list) else [got]
            for item in values:
                if isinstance(item, str) and item.strip() and item.strip() not in found:
                    found.append(item.strip())
    return found


def _read_jsonl(ctx: _Ctx, text: str) -> Ingested:
    out = Ingested()
    for location, value in _json_lines(ctx, text):
        if isinstance(value, Quarantined):
            out.quarantined.append(value)
            continue
        raw = json.dumps(value, ensure_ascii=False)
        if not isinstance(value, dict):
            detail = f"row must be a JSON object, got {type(value).__name__}"
            out.quarantined.append(ctx.quarantine(location, "bad_row", detail, raw))
            continue
        _add_row(ctx, out, location, value, raw)
    return out


def _add_row(ctx: _Ctx, out: Ingested, location: str, row: dict[str, Any], raw: str) -> None:
    """Validate the text/label fields of one JSONL object or CSV row and add a record."""
    source = ctx.source
    for name in (source.text_field, source.label_field):
        if name is not None and not isinstance(row.get(name), str):
            detail = f"field '{name}' missing or not a string (got {row.get(name)!r:.60})"
            out.quarantined.append(ctx.quarantine(location, "missing_field", detail, raw))
            return
    text = str(row[source.text_field])
    if not text.strip():
        detail = f"field '{source.text_field}' is empty"
        out.quarantined.append(ctx.quarantine(location, "empty_text", detail, raw))
        return
    label = str(row[source.label_field]) if source.label_field else None
    out.records.append(ctx.record(location, text, label=label, meta=_meta(ctx, row)))


def _read_csv(ctx: _Ctx, text: str) -> Ingested:
    # csv refuses a cell over its process-wide field_size_limit (131072 by default) with an
    # exception; raise the limit to ours for this file so that such a row is quarantined here.
    previous = csv.field_size_limit(max(csv.field_size_limit(), ctx.limits.max_line_chars + 1))
    try:
        return _read_csv_rows(ctx, text)
    finally:
        csv.field_size_limit(previous)


def _read_csv_rows(ctx: _Ctx, text: str) -> Ingested:
    out = Ingested()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as err:
        detail = f"header: {err}"
        return Ingested(quarantined=[ctx.quarantine(ctx.uri, "line_too_long", detail, "")])
    wanted = [c for c in (ctx.source.text_field, ctx.source.label_field) if c is not None]
    missing = [c for c in wanted if c not in header]
    if missing:
        detail = f"columns {missing} not in header {header}"
        return Ingested(quarantined=[ctx.quarantine(ctx.uri, "missing_field", detail, text)])
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # a cell over the limit: this row only, the reader goes on
            location = f"{ctx.uri}:{reader.line_num}"
            detail = f"{err}: a cell is over ingest.max_line_chars {ctx.limits.max_line_chars}"
            out.quarantined.append(ctx.quarantine(location, "line_too_long", detail, ""))
            continue
        location = f"{ctx.uri}:{reader.line_num}"
        raw = ",".join(row)
        if not row:
            continue
        if len(row) != len(header):
            detail = f"{len(row)} cells, header has {len(header)}"
            out.quarantined.append(ctx.quarantine(location, "bad_row", detail, raw))
        elif max(len(cell) for cell in row) > ctx.limits.max_line_chars:
            detail = f"a cell is over ingest.max_line_chars {ctx.limits.max_line_chars}"
            out.quarantined.append(ctx.quarantine(location, "line_too_long", detail, raw))
        else:
            _add_row(ctx, out, location, dict(zip(header, row, strict=True)), raw)
    return out


def oversized(source: SourceConfig, ref: FileRef, limits: IngestConfig) -> Ingested | None:
    """The quarantine row of a file over `ingest.max_file_bytes`, decided from its listed size
    before a byte is read; None when it is within the limit."""
    if ref.size <= limits.max_file_bytes:
        return None
    detail = f"{ref.size} bytes > ingest.max_file_bytes {limits.max_file_bytes}"
    return Ingested(
        quarantined=[
            _Ctx(source, ref.uri, limits).quarantine(ref.uri, "file_too_large", detail, "")
        ]
    )


def listing_problems(source: SourceConfig, listing: Listing) -> Ingested:
    """Quarantine rows for what a source's listing could not read: broken symlinks
    (`broken_symlink`) and a folder with no file matching the include globs (`no_files`)."""
    ctx = _Ctx(source, source.path, IngestConfig())
    rows = [
        ctx.quarantine(link, "broken_symlink", "symlink to a missing file", "")
        for link in listing.broken_links
    ]
    if not listing.files:
        detail = (
            f"no file matches {source.patterns()} ({listing.other_files} other files); "
            "set sources[].include"
        )
        rows.append(ctx.quarantine(source.path, "no_files", detail, ""))
    return Ingested(quarantined=rows)


READERS: dict[Format, Callable[[_Ctx, str], Ingested]] = {
    Format.MARKDOWN: _read_markdown,
    Format.HTML: _read_html,
    Format.TEXT: _read_text,
    Format.CHAT: _read_chat,
    Format.JSONL: _read_jsonl,
    Format.CSV: _read_csv,
}
_MARKDOWN = MarkdownIt("commonmark").enable("table")
TOO_DEEP = "invalid JSON: nested deeper than the parser's recursion limit"
HTML_BOILERPLATE = ("nav", "script", "style", "header", "footer", "aside", "noscript", "form")
HTML_BLOCKS = (
    "p",
    "div",
    "section",
    "article",
    "main",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "tr",
    "td",
    "th",
    "pre",
    "blockquote",
    "br",
    "dt",
    "dd",
    "table",
    "ul",
    "ol",
)
