"""Ingest: every format, and every kind of bad input quarantined with a reason and counted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from dapt_data import pipeline
from dapt_data.cli import main
from dapt_data.config import ConfigError, load_config
from dapt_data.pipeline import RECORDS, run_ingest
from dapt_data.records import Quarantined, Record
from dapt_data.redact import redact_records
from dapt_data.storage import read_bytes
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


def test_a_csv_cell_over_pythons_field_limit_quarantines_its_row_only(tmp_path: Path) -> None:
    # GIVEN a CSV whose second row has a cell over csv's default limit (131072 characters)
    path = tmp_path / "big.csv"
    path.write_text(f'text\nfirst\n"{"x" * 131_073}"\nthird\n')
    cfg = config(tmp_path / "out", [{"name": "s", "path": str(path), "format": "csv"}])
    # WHEN ingesting, THEN the run finishes, the row is quarantined naming file and line
    result = run_ingest(cfg)
    assert result.counts["out"] == 2
    assert result.counts["quarantined"] == {"line_too_long": 1}
    (row,) = _read(tmp_path / "out" / "raw" / "quarantine.jsonl", Quarantined)
    assert isinstance(row, Quarantined)
    assert row.source_id == f"s:{path}:3"


@pytest.mark.parametrize("fmt", ["jsonl", "chat"])
def test_deeply_nested_json_is_quarantined(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(
        '{"text": "fine", "turns": [{"role": "a", "text": "b"}]}\n' + "[" * 100_000 + "\n"
    )
    cfg = config(tmp_path / "out", [{"name": "s", "path": str(path), "format": fmt}])
    result = run_ingest(cfg)
    assert result.counts["out"] == 1
    assert result.counts["quarantined"] == {"invalid_json": 1}


def test_an_oversized_file_is_quarantined_without_being_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a file over ingest.max_file_bytes, and reads that are counted
    path = tmp_path / "big.txt"
    path.write_text("x" * 500)
    cfg = config(tmp_path / "out", [{"name": "s", "path": str(path), "format": "text"}])
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"max_file_bytes": 100})})
    reads: list[str] = []

    def counted(uri: str) -> bytes:
        reads.append(uri)
        return read_bytes(uri)

    monkeypatch.setattr(pipeline, "read_bytes", counted)
    # WHEN ingesting, THEN it is quarantined from its listed size and never read
    result = run_ingest(cfg)
    assert result.counts["quarantined"] == {"file_too_large": 1}
    assert str(path) not in reads


def test_upper_case_extensions_broken_symlinks_and_empty_folders_are_counted(
    tmp_path: Path,
) -> None:
    # GIVEN a folder with an upper-case .MD file and a broken symlink, and an empty folder
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "GUIDE.MD").write_text("# Guide\n\nSome words here.\n")
    (docs / "gone.md").symlink_to(tmp_path / "missing.md")
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = config(
        tmp_path / "out",
        [
            {"name": "kb", "path": str(docs), "format": "markdown"},
            {"name": "none", "path": str(empty), "format": "markdown"},
        ],
    )
    # WHEN ingesting
    result = run_ingest(cfg)
    # THEN the upper-case file is read, and the link and the empty folder are quarantined
    assert result.counts["sources"]["kb"]["records"] == 1
    assert result.counts["quarantined"] == {"broken_symlink": 1, "no_files": 1}
    rows = _read(tmp_path / "out" / "raw" / "quarantine.jsonl", Quarantined)
    details = " ".join(r.detail for r in rows if isinstance(r, Quarantined))
    assert str(docs / "gone.md") in details
    assert str(empty) in details


def test_a_missing_input_path_is_a_config_error_exiting_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a config whose public source is not there
    path = tmp_path / "pipeline.yaml"
    sources = [
        {"name": "kb", "path": str(EXAMPLE / "kb"), "format": "markdown"},
        {"name": "web", "path": "public.jsonl", "format": "jsonl", "origin": "public"},
    ]
    path.write_text(json.dumps({"output": "out", "sources": sources}))
    # WHEN loading it or running the pipeline
    with pytest.raises(ConfigError, match=r"sources.1.path = '.*public.jsonl': does not exist"):
        load_config(path)
    # THEN the command exits 2 before any step runs
    assert main(["run", "--config", str(path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
