"""The labeled PII set: recall and precision per type against the goals.

Matching rule (see `dapt_data.pii.evaluate`): a gold span is found when all its alphanumeric
characters are covered by predicted spans of the same type; a prediction is correct when at
least half its alphanumeric characters lie in gold spans of its type. Run with `-s` to see
the table, or `python -m dapt_data.pii.evaluate tests/data/pii/labeled.jsonl`.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from dapt_data.pii.evaluate import (
    LabeledExample,
    TypeScore,
    format_table,
    load_labeled,
    load_marked,
    lookalikes_rewritten,
    redactor,
    score,
)
from dapt_data.pii.types import PiiType, Span

DATA = Path(__file__).parent / "data" / "pii"
LABELED = DATA / "labeled.jsonl"


def test_labeled_set_is_built_from_its_source() -> None:
    # GIVEN the generator script next to the data
    spec = importlib.util.spec_from_file_location("build_labeled", DATA / "build_labeled.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # THEN the committed file is exactly what it renders
    assert LABELED.read_text(encoding="utf-8") == module.render()


def test_labeled_set_has_enough_spans_of_every_type() -> None:
    examples = load_labeled(LABELED)
    counts = {kind: sum(s.type == kind for e in examples for s in e.gold) for kind in PiiType}
    assert sum(counts.values()) >= 250
    for kind in (PiiType.EMAIL, PiiType.PHONE, PiiType.CARD, PiiType.IBAN, PiiType.SECRET):
        assert counts[kind] >= 35, kind
    assert sum(not e.gold for e in examples) >= 35  # hard negatives


@pytest.fixture(scope="module")
def table() -> dict[PiiType, TypeScore]:
    """The redactor's scores on the labeled set, computed once for the goal tests."""
    return score(load_labeled(LABELED))


@pytest.mark.parametrize(
    "kind", [PiiType.EMAIL, PiiType.PHONE, PiiType.CARD, PiiType.IBAN, PiiType.SECRET]
)
def test_recall_goal_for_structured_types(kind: PiiType, table: dict[PiiType, TypeScore]) -> None:
    entry = table[kind]
    assert (entry.recall or 0) >= 0.99, (kind, entry.missed_ids)
    assert (entry.precision or 0) >= 0.99, (kind, entry.false_alarm_ids)


def test_names_and_addresses_meet_their_softer_goals(table: dict[PiiType, TypeScore]) -> None:
    print("\n" + format_table(table))
    # names: no NER model; two gold names are outside every heuristic on purpose
    assert (table[PiiType.NAME].recall or 0) >= 0.90
    assert (table[PiiType.NAME].precision or 0) >= 0.95
    assert (table[PiiType.ADDRESS].recall or 0) >= 0.95
    assert (table[PiiType.ADDRESS].precision or 0) >= 0.95


def test_hard_negatives_are_left_alone() -> None:
    table = score([e for e in load_labeled(LABELED) if not e.gold])
    assert {kind.value: entry.predicted for kind, entry in table.items() if entry.predicted} == {}
    assert lookalikes_rewritten(load_labeled(LABELED), redactor()) == 0


def test_any_detector_is_scored_by_the_same_rule() -> None:
    # GIVEN a detector that marks every capitalised word as a name (the bench's Presidio runs
    # are scored the same way)
    def capitals(example: LabeledExample) -> list[Span]:
        return [
            Span(i, i + len(w), PiiType.NAME, "test")
            for i, w in ((m.start(), m.group()) for m in re.finditer(r"[A-Z]\w+", example.text))
        ]

    examples = load_labeled(LABELED)
    # WHEN it is scored
    table = score(examples, predict=capitals)
    # THEN its false alarms count against its precision and in the hard negatives
    assert (table[PiiType.NAME].precision or 1) < 0.5
    assert table[PiiType.EMAIL].predicted == 0
    assert lookalikes_rewritten(examples, capitals) > 10


BLIND = Path(__file__).parents[1] / "bench" / "data"


@pytest.mark.parametrize("half", ["pii_heldout_dev.txt", "pii_heldout_dev2.txt"])
def test_names_and_addresses_hold_on_the_blind_development_halves(half: str) -> None:
    # GIVEN a half of the blind set (written by a session that never saw the detector; the
    # test half is left to bench/bench_redact.py so that no test is tuned on it)
    examples = load_marked(BLIND / half)
    predict = redactor()
    # WHEN every type is predicted
    scores = score(examples, predict=predict)
    names, addresses = scores[PiiType.NAME], scores[PiiType.ADDRESS]
    # THEN names and addresses reach the floors measured when the rules were written (the
    # previous rules: names 28% / 20%, addresses 24% / 23% on the dev / test halves), and no
    # look-alike line is touched
    assert names.recall is not None
    assert names.recall >= 0.84, format_table(scores)
    assert names.precision is not None
    assert names.precision >= 0.98, format_table(scores)
    assert addresses.recall is not None
    assert addresses.recall >= 0.95, format_table(scores)
    assert addresses.precision == 1.0, format_table(scores)
    assert lookalikes_rewritten(examples, predict) == 0
