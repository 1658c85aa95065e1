"""Judge parsing is strict; calibration reports kappa, leniency, severity and flip rate."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from conftest import write_jsonl
from dapt_eval.commands import calibrate_file
from dapt_eval.judge import (
    Judge,
    JudgeOutcome,
    VerdictParseError,
    agreement_breakdown,
    calibrate,
    flip_rate,
    parse_verdict,
)
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.providers.retry import RetryPolicy
from dapt_eval.schemas import JudgeCalibrationItem


def test_plain_json_verdict_parses() -> None:
    parsed = parse_verdict('  {"verdict": "correct", "reason": "same date"}\n')
    assert (parsed.verdict, parsed.reason) == ("correct", "same date")


def test_verdict_inside_a_json_fence_parses() -> None:
    parsed = parse_verdict('```json\n{"verdict": "incorrect", "reason": "wrong year"}\n```')
    assert parsed.verdict == "incorrect"


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ('Sure! {"verdict": "correct", "reason": "x"}', "not valid JSON"),
        ('```\n{"verdict": "correct", "reason": "x"}\n```', "not valid JSON"),
        ('{"verdict": "Correct", "reason": "x"}', "verdict"),
        ('{"verdict": "correct"}', "reason"),
        ('{"verdict": "correct", "reason": "x", "score": 1}', "score"),
        ('["correct"]', "expected a JSON object"),
        ("correct", "not valid JSON"),
        ("", "not valid JSON"),
    ],
)
def test_anything_looser_is_unparseable(reply: str, why: str) -> None:
    with pytest.raises(VerdictParseError, match=why):
        parse_verdict(reply)


def _items(n: int) -> list[JudgeCalibrationItem]:
    return [
        JudgeCalibrationItem(
            id=f"j{i}",
            question=f"question {i}",
            reference_answer=f"answer {i}",
            candidate_answer=f"candidate {i}",
            human_verdict="correct" if i % 2 == 0 else "incorrect",
            annotator="ann-1",
        )
        for i in range(n)
    ]


def _judge(behaviour: OfflineBehaviour) -> Judge:
    return Judge(
        OfflineProvider("judge", "1", behaviour),
        retry=RetryPolicy(max_attempts=2, sleep=lambda _: None),
    )


def test_a_perfect_judge_is_trusted_with_kappa_one_and_no_flips() -> None:
    report = calibrate(_items(20), _judge(OfflineBehaviour(correct_rate=1.0)), kappa_threshold=0.8)
    assert report["cohen_kappa"] == pytest.approx(1.0)
    assert report["trusted"] is True
    assert (report["leniency"], report["severity"]) == (0.0, 0.0)
    assert report["test_retest"] == {"n_pairs": 20, "flips": 0, "flip_rate": 0.0}


def test_a_noisy_judge_gets_sklearn_kappa_flips_and_is_not_trusted() -> None:
    items = _items(60)
    judge = _judge(OfflineBehaviour(correct_rate=0.6))
    report = calibrate(items, judge, kappa_threshold=0.6)
    # recompute kappa from the first-pass verdicts with sklearn as the reference
    first = [
        judge.judge(i.question, i.reference_answer, i.candidate_answer, 0, i.human_verdict)
        for i in items
    ]
    expected = cohen_kappa_score([i.human_verdict for i in items], [o.verdict for o in first])
    assert report["cohen_kappa"] == pytest.approx(expected)
    assert report["trusted"] is False
    assert report["test_retest"]["flips"] > 0
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == 60


def test_unparseable_and_errored_verdicts_are_counted_not_scored() -> None:
    report = calibrate(_items(40), _judge(OfflineBehaviour(unparseable_rate=0.25, error_rate=0.1)))
    assert report["n_unparseable"] > 0 and report["n_errored"] > 0
    assert report["n_scored"] == 40 - report["n_unparseable"] - report["n_errored"]
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == report["n_scored"]


def test_leniency_and_severity_by_hand() -> None:
    human = ["correct", "correct", "correct", "incorrect", "incorrect"]
    judged = ["correct", "incorrect", "correct", "correct", "incorrect"]
    result = agreement_breakdown(human, judged)
    assert result["confusion_matrix"]["matrix"] == [[2, 1], [1, 1]]
    assert result["leniency"] == pytest.approx(1 / 2)
    assert result["severity"] == pytest.approx(1 / 3)


def test_flip_rate_ignores_pairs_with_a_missing_verdict() -> None:
    first = [
        JudgeOutcome("ok", "correct"),
        JudgeOutcome("ok", "correct"),
        JudgeOutcome("unparseable"),
    ]
    second = [
        JudgeOutcome("ok", "correct"),
        JudgeOutcome("ok", "incorrect"),
        JudgeOutcome("ok", "correct"),
    ]
    assert flip_rate(first, second) == {"n_pairs": 2, "flips": 1, "flip_rate": 0.5}


def test_calibrate_file_reports_quarantined_rows(tmp_path: Path) -> None:
    path = tmp_path / "cal.jsonl"
    good = [i.model_dump() for i in _items(4)]
    bad = good[0] | {"id": "bad", "human_verdict": "maybe"}
    write_jsonl(path, [*good, bad])
    report = calibrate_file(path, _judge(OfflineBehaviour()), tmp_path / "report.json")
    assert report["calibration_set"]["n_quarantined"] == 1
    assert "human_verdict" in report["calibration_set"]["quarantined"][0]["reason"]
    assert report["n_items"] == 4
