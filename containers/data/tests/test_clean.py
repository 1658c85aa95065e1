"""Clean: normalisation and each quality filter, with drops kept and counted by reason."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from dapt_data.clean import clean_records, normalise
from dapt_data.config import CleanConfig, ConfigError
from pipeline_fixtures import config, english_paragraph, record

GOOD = english_paragraph(random.Random(1))


def test_normalise_fixes_mojibake_width_and_whitespace() -> None:
    # GIVEN mojibake, full-width letters, tabs and blank-line runs
    text = "caf\u00c3\u00a9  \uff21\uff22\tC  \n\n\n\n  next line  "
    # WHEN normalising
    # THEN ftfy repairs, NFKC folds width, whitespace collapses; a second pass changes nothing
    assert normalise(text) == "café AB C\n\nnext line"
    assert normalise(normalise(text)) == normalise(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Too short to teach anything.", "too_short"),
        (GOOD * 40, "too_long"),
        ("#$%^&*()!@#$%^&*()_+{}|:<>?~" * 5 + " " + GOOD[:60], "symbol_ratio"),
        ("\n".join(["Click here to subscribe now."] * 6 + [GOOD]), "repeated_lines"),
        (" ".join(["buy cheap watches online today"] * 12), "repeated_ngrams"),
        (
            "Der Fluss fließt ruhig durch das alte Dorf, und die Kinder spielen am Ufer, "
            "während die Sonne langsam hinter den Bergen untergeht und es Abend wird.",
            "language",
        ),
    ],
    ids=["too_short", "too_long", "symbol_ratio", "repeated_lines", "repeated_ngrams", "language"],
)
def test_each_filter_drops_with_its_reason(text: str, reason: str) -> None:
    # GIVEN a text failing exactly one rule, next to a good one
    config = CleanConfig(max_chars=5000)
    # WHEN cleaning
    kept, dropped = clean_records([record(text, "a:1"), record(GOOD, "a:2")], config)
    # THEN the bad one is dropped with the reason and a detail naming the config key
    assert [r.source_id for r in kept] == ["s:a:2"]
    assert [d.reason for d in dropped] == [reason]
    assert dropped[0].record.source_id == "s:a:1"
    assert "clean." in dropped[0].detail


def test_language_allow_list_is_configurable() -> None:
    # GIVEN German text and an allow-list with German
    german = (
        "Der Fluss fließt ruhig durch das alte Dorf, und die Kinder spielen am Ufer, "
        "während die Sonne langsam hinter den Bergen untergeht und es Abend wird."
    )
    # WHEN cleaning with languages [en, de], or with the language filter off
    # THEN it is kept
    assert len(clean_records([record(german)], CleanConfig(languages=["en", "de"]))[0]) == 1
    assert len(clean_records([record(german)], CleanConfig(languages=[]))[0]) == 1


def test_a_source_can_loosen_the_filters_for_its_own_records(tmp_path: Path) -> None:
    # GIVEN short labelled utterances (an intent set) beside web text, one pipeline config
    cfg = config(
        tmp_path,
        [
            {"name": "web", "path": "web.jsonl", "format": "jsonl"},
            {
                "name": "tickets",
                "path": "t.csv",
                "format": "csv",
                "label_field": "intent",
                "clean": {"min_chars": 5, "languages": []},
            },
        ],
        clean={"min_chars": 50},
    )
    short = "Cancel my plan."
    records = [record(short, "a:1", source="tickets"), record(short, "a:2", source="web")]
    # WHEN cleaning with each source's bounds
    overrides = {name: cfg.clean_for(name) for name in cfg.clean_overrides()}
    kept, dropped = clean_records(records, cfg.clean, overrides)
    # THEN the utterance survives in its own source only; the rest of `clean` still applies to it
    assert [r.source for r in kept] == ["tickets"]
    assert dropped[0].record.source == "web"
    assert dropped[0].detail == "15 chars < clean.min_chars 50"
    assert cfg.clean_for("tickets").max_symbol_ratio == cfg.clean.max_symbol_ratio
    assert cfg.clean_overrides() == {"tickets": {"min_chars": 5, "languages": []}}
    kept, dropped = clean_records([record("Hi.", "a:3", source="tickets")], cfg.clean, overrides)
    assert dropped[0].detail == "3 chars < sources[tickets].clean.min_chars 5"


def test_a_source_override_is_checked_against_the_merged_bounds(tmp_path: Path) -> None:
    # GIVEN a source minimum above the top-level maximum, and an unknown language
    sources: list[dict[str, Any]] = [
        {"name": "a", "path": "a.jsonl", "format": "jsonl"},
        {"name": "b", "path": "b.jsonl", "format": "jsonl", "clean": {"min_chars": 900}},
        {"name": "c", "path": "c.jsonl", "format": "jsonl", "clean": {"languages": ["xx"]}},
    ]
    # WHEN parsing  THEN both problems name the source's key
    with pytest.raises(ConfigError) as err:
        config(tmp_path, sources, clean={"max_chars": 500})
    assert "sources.1.clean.min_chars = 900: must be <= max_chars (500)" in str(err.value)
    assert "sources.2.clean.languages = ['xx']: unknown ISO 639-1 codes ['xx']" in str(err.value)
