"""Ingest: every format, and every kind of bad input quarantined with a reason and counted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from dapt_data.config import ConfigError
from dapt_data.pipeline import RECORDS, run_ingest
from dapt_data.records import Quarantined, Record
from dapt_data.redact import redact_records
from pipeline_fixtures import EXAMPLE, config


def _read(path: Path, model: type[Record] | type[Quarantined]) -> list[object]:
    return [model.model_validate_json(line) for line in path.read_text().splitlines() if line]


GOOD_HTML = (
    "<html><head><style>p{color:red}</style><script>track()</script></head><body>"
    "<nav>Home | Pricing</nav><h1>Domains</h1><p>Connect a <b>custom</b> domain.</p>"
    "<footer>(c) Quillsite</footer></body></html>"
)


def test_formats_become_records_with_lineage(tmp_path: Path) -> None:
    # GIVEN one file of each format
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("---\ntitle: A\n---\n# Title\n\nSome *emphasis* here.\n")
    (docs / "b.html").write_text(GOOD_HTML)
    (docs / "c.txt").write_text("Plain text document.\n")
    (tmp_path / "l.csv").write_text('body,intent\n"Refund me, please",refund\n')
    # WHEN ingesting
    cfg = config(
        tmp_path / "out",
        [
            {"name": "md", "path": str(docs), "format": "markdown"},
            {"name": "web", "path": str(docs), "format": "html"},
            {"name": "txt", "path": str(docs), "format": "text"},
            {
                "name": "lab",
                "path": str(tmp_path / "l.csv"),
                "format": "csv",
                "text_field": "body",
                "label_field": "intent",
            },
            {
                "name": "chats",
                "path": str(EXAMPLE / "chats"),
                "format": "chat",
                "id_field": "chat_id",
            },
        ],
    )
    result = run_ingest(cfg)
    # THEN texts are extracted, boilerplate removed and lineage kept
    records: dict[str, Record] = {}
    for row in _read(tmp_path / "out" / "raw" / RECORDS, Record):
        assert isinstance(row, Record)
        records.setdefault(row.source, row)  # the first record of each source
    assert records["md"].text == "Title\n\nSome emphasis here."
    assert records["md"].meta == {"title": "A"}
    assert records["web"].text == "Domains\nConnect a custom domain."
    assert records["txt"].source_id == f"txt:{docs / 'c.txt'}"
    assert (records["lab"].text, records["lab"].label) == ("Refund me, please", "refund")
    assert records["lab"].source_id == f"lab:{tmp_path / 'l.csv'}:2"
    assert records["chats"].text.startswith("Customer: hi. i bought the annual starter plan")
    assert records["chats"].meta == {"chat_id": "chat-0001"}
    assert result.counts["sources"]["chats"]["records"] == 124
    assert result.counts["quarantined"] == {}


BAD_CASES: list[tuple[str, str, bytes, dict[str, object], str]] = [
    ("empty file", "text", b"  \n", {}, "empty_file"),
    ("invalid UTF-8", "text", b"caf\xe9 latte", {}, "invalid_utf8"),
    ("huge line", "text", b"x" * 200 + b"\n", {}, "line_too_long"),
    ("broken HTML", "html", b"<<<>>> </div></p>", {}, "broken_html"),
    ("bad JSON", "jsonl", b'{"text": "ok"}\n{"text": \n', {}, "invalid_json"),
    ("JSON not an object", "jsonl", b'["a"]\n', {}, "bad_row"),
    ("missing JSON field", "jsonl", b'{"body": "x"}\n', {}, "missing_field"),
    ("wrong CSV columns", "csv", b"body,label\nhello,x\n", {}, "missing_field"),
    ("ragged CSV row", "csv", b'text\nfine\n"a",b\n', {}, "bad_row"),
    ("chat without turns", "chat", b'{"chat_id": "c1"}\n', {}, "bad_chat"),
    ("chat turn without text", "chat", b'{"turns": [{"role": "agent"}]}\n', {}, "bad_chat"),
]


@pytest.mark.parametrize(
    ("case", "fmt", "data", "extra", "reason"), BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_bad_input_is_quarantined_with_reason(
    tmp_path: Path, case: str, fmt: str, data: bytes, extra: dict[str, object], reason: str
) -> None:
    # GIVEN a file with one kind of bad input
    suffix = {"text": "txt", "html": "html", "jsonl": "jsonl", "csv": "csv", "chat": "jsonl"}
    path = tmp_path / f"bad.{suffix[fmt]}"
    path.write_bytes(data)
    cfg = config(
        tmp_path / "out",
        [{"name": "s", "path": str(path), "format": fmt, **extra}],
        ingest={"max_line_chars": 100},
    )
    # WHEN ingesting: the run finishes
    result = run_ingest(cfg)
    # THEN the input is quarantined with the reason, counted, and named by file (and line)
    rows = _read(tmp_path / "out" / "raw" / "quarantine.jsonl", Quarantined)
    assert [r.reason for r in rows if isinstance(r, Quarantined)] == [reason], case
    assert result.counts["quarantined"] == {reason: 1}
    quarantined = rows[0]
    assert isinstance(quarantined, Quarantined)
    assert str(path) in quarantined.detail


def test_good_rows_survive_next_to_bad_ones(tmp_path: Path) -> None:
    # GIVEN a JSONL with a good, a bad and another good line
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "first"}\nnot json\n{"text": "third"}\n')
    cfg = config(tmp_path / "out", [{"name": "s", "path": str(path), "format": "jsonl"}])
    # WHEN ingesting
    result = run_ingest(cfg)
    # THEN both good lines are records and the bad line's number is in its lineage
    assert result.counts["out"] == 2
    rows = _read(tmp_path / "out" / "raw" / "quarantine.jsonl", Quarantined)
    assert [r.source_id for r in rows if isinstance(r, Quarantined)] == [f"s:{path}:2"]


@pytest.fixture
def s3() -> Iterator[object]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="lake")
        yield client


@pytest.mark.usefixtures("s3")
def test_s3_ingest_writes_the_raw_zone_on_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN articles and a broken file under an S3 prefix
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", region_name="us-east-1")
    client.put_object(Bucket="lake", Key="in/kb/a.md", Body=b"# Domains\n\nConnect a domain.\n")
    client.put_object(Bucket="lake", Key="in/kb/b.md", Body=b"")
    client.put_object(Bucket="lake", Key="in/kb/skip.png", Body=b"\x89PNG")
    cfg = config(Path("unused"), [{"name": "kb", "path": "s3://lake/in/kb/", "format": "markdown"}])
    cfg = cfg.model_copy(update={"output": "s3://lake/raw-run"})
    # WHEN ingesting from S3 into S3
    result = run_ingest(cfg)
    # THEN the record keeps its S3 key and the empty object is quarantined
    body = client.get_object(Bucket="lake", Key="raw-run/raw/records.jsonl")["Body"].read()
    record = Record.model_validate_json(body.splitlines()[0])
    assert record.source_id == "kb:s3://lake/in/kb/a.md"
    assert record.text == "Domains\n\nConnect a domain."
    assert result.counts["quarantined"] == {"empty_file": 1}
    marker = json.loads(
        client.get_object(Bucket="lake", Key="raw-run/raw/_step.json")["Body"].read()
    )
    assert marker["counts"]["out"] == 1
    # AND a second run is skipped
    assert run_ingest(cfg).skipped


def test_declared_name_fields_reach_the_redactor_and_leave_no_trace(tmp_path: Path) -> None:
    # GIVEN chats whose participants are named in fields the source declares, one per turn
    path = tmp_path / "chats.jsonl"
    chat = {
        "chat_id": "c1",
        "customer_name": "Zofia Wiśniewska",
        "turns": [
            {"role": "customer", "text": "hi, zofia here, Wiśniewska on the invoice"},
            {"role": "agent", "name": "Tendai", "text": "Hello Zofia, Tendai speaking"},
        ],
    }
    path.write_text(json.dumps(chat, ensure_ascii=False) + "\n", encoding="utf-8")
    source = {
        "name": "chats",
        "path": str(path),
        "format": "chat",
        "id_field": "chat_id",
        "pii_name_fields": ["customer_name", "name"],
    }
    cfg = config(tmp_path / "out", [source])
    # WHEN ingested and redacted
    run_ingest(cfg)
    records = _read(tmp_path / "out" / "raw" / RECORDS, Record)
    redacted, _ = redact_records(records)
    # THEN the names are gone from the text, in any case, and from the metadata
    (record,) = redacted
    assert isinstance(record, Record)
    assert record.text == (
        "Customer: hi, [NAME] here, [NAME] on the invoice\nAgent: Hello [NAME], [NAME] speaking"
    )
    assert record.meta == {"chat_id": "c1", "pii_names": "[NAME]; [NAME]"}


def test_name_fields_are_refused_for_document_formats(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources.0.pii_name_fields = \['author'\]: only for"):
        config(
            tmp_path,
            [{"name": "kb", "path": ".", "format": "markdown", "pii_name_fields": ["author"]}],
        )
