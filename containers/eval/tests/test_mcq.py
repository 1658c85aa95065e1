"""MCQ shuffling, strict letter parsing, distractor validation and generation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import MakeBenchmark, mcq_row, qa_row
from dapt_eval.benchmark import load_benchmark
from dapt_eval.commands import generate_mcq
from dapt_eval.mcq import (
    GenerationRejection,
    distractor_problems,
    generate_distractors,
    jaccard,
    length_balance,
    parse_letter,
    shuffle_choices,
)
from dapt_eval.providers.base import Oracle
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.providers.retry import RetryPolicy
from dapt_eval.schemas import Distractors, McqItem, QaItem, Task

ITEM = McqItem.model_validate(mcq_row(1))
QA = QaItem.model_validate(qa_row(1))
NO_WAIT = RetryPolicy(max_attempts=2, sleep=lambda _: None)


def test_shuffle_is_the_documented_hash_sort() -> None:
    shuffled = shuffle_choices(ITEM, seed=42)
    keys = [hashlib.sha256(f"42:m1:{i}".encode()).hexdigest() for i in range(4)]
    assert shuffled.permutation == sorted(range(4), key=keys.__getitem__)
    assert shuffled.choices == [ITEM.canonical_choices()[i] for i in shuffled.permutation]
    assert shuffled.choices[ord(shuffled.answer_letter) - ord("A")] == ITEM.answer


def test_shuffle_depends_on_seed_and_item() -> None:
    perms = {tuple(shuffle_choices(ITEM, seed).permutation) for seed in range(20)}
    assert len(perms) > 5
    assert shuffle_choices(ITEM, 3) == shuffle_choices(ITEM, 3)


@pytest.mark.parametrize(
    ("reply", "letter"), [("B", "B"), (" (c) ", "C"), ("D.", "D"), ("Answer: A", "A"), ("a)", "A")]
)
def test_letter_replies_that_parse(reply: str, letter: str) -> None:
    assert parse_letter(reply) == letter


@pytest.mark.parametrize(
    "reply", ["E", "B because it is right", "A or B", "The answer is B", "", "AB"]
)
def test_letter_replies_that_do_not_parse(reply: str) -> None:
    assert parse_letter(reply) is None


def test_distractor_validation_rules() -> None:
    answer = "The 2019 revision of the standard"
    ok = Distractors(
        near_miss="The 2021 revision of the standard", wrong=["A cooking recipe", "The moon"]
    )
    assert distractor_problems(answer, ok) == []
    same = Distractors(near_miss="the 2019 revision of the standard!", wrong=["x", "y"])
    assert "equals the answer after normalisation" in distractor_problems(answer, same)[0]
    dup = Distractors(near_miss="Moon", wrong=["the moon", "The Moon"])
    assert "not 3 distinct" in distractor_problems(answer, dup)[0]
    para = Distractors(near_miss="The 2019 revision of the standard document", wrong=["a", "b"])
    problems = distractor_problems(answer, para)
    assert any("near-paraphrase" in p and ">= 0.8" in p for p in problems)


def test_jaccard_by_hand() -> None:
    assert jaccard("the 2019 revision", "the 2021 revision") == pytest.approx(2 / 4)


def test_generation_accepts_valid_strict_json() -> None:
    good = json.dumps({"near_miss": "Fact number 2", "wrong": ["A cat", "Blue sky"]})
    result = generate_distractors(QA, OfflineProvider(), retry=NO_WAIT, oracle=Oracle(good))
    assert isinstance(result, McqItem)
    assert result.answer == QA.reference_answer and result.distractors.wrong == [
        "A cat",
        "Blue sky",
    ]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('Here you go: {"near_miss": "a", "wrong": ["b", "c"]}', "unparseable distractors"),
        ('{"near_miss": "a", "wrong": ["b"]}', "unparseable distractors"),
        ('{"near_miss": "Fact number 1", "wrong": ["b", "c"]}', "equals the answer"),
    ],
)
def test_generation_rejections_are_quarantined_with_reason(reply: str, reason: str) -> None:
    result = generate_distractors(QA, OfflineProvider(), retry=NO_WAIT, oracle=Oracle(reply))
    assert isinstance(result, GenerationRejection)
    assert reason in result.reason and result.raw == reply


def test_generation_teacher_failure_is_a_rejection_not_a_crash() -> None:
    teacher = OfflineProvider(behaviour=OfflineBehaviour(error_rate=1.0))
    result = generate_distractors(QA, teacher, retry=NO_WAIT)
    assert isinstance(result, GenerationRejection)
    assert result.reason.startswith("teacher call failed: TransientError after 2 attempt(s)")


def test_length_balance_by_hand() -> None:
    item = McqItem(
        id="x",
        question="q",
        answer="abcd",
        distractors=Distractors(near_miss="ab", wrong=["abcdefgh", "abcd"]),
    )
    balance = length_balance([item])
    assert balance["mean_ratio_near_miss"] == pytest.approx(0.5)
    assert balance["mean_ratio_wrong"] == pytest.approx(1.5)
    assert balance["mean_ratio"] == pytest.approx((0.5 + 2 + 1) / 3)


def test_generate_mcq_writes_a_runnable_benchmark(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    qa_dir = make_benchmark(Task.QA, [qa_row(i) for i in range(6)])
    teacher = OfflineProvider(behaviour=OfflineBehaviour(unparseable_rate=0.3))
    report = generate_mcq(qa_dir, teacher, tmp_path / "mcq", version="1", retry=NO_WAIT)
    assert report["n_accepted"] + report["n_rejected"] == 6
    assert report["n_rejected"] > 0
    rejected = (tmp_path / "mcq" / "generation_quarantine.jsonl").read_text().splitlines()
    assert len(rejected) == report["n_rejected"]
    benchmark = load_benchmark(tmp_path / "mcq")
    assert benchmark.manifest.task is Task.MCQ and len(benchmark.items) == report["n_accepted"]
