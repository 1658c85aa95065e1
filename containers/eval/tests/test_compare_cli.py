"""`dapt-eval` end to end: build, run (resume), aggregate, compare (JSON + HTML), calibrate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import MakeBenchmark, mcq_row, write_jsonl
from dapt_eval.aggregate import AggregationError
from dapt_eval.cli import main
from dapt_eval.commands import compare_dirs, run_and_report
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.providers.retry import RetryPolicy
from dapt_eval.runner import RunConfig
from dapt_eval.schemas import Task


def _run(root: Path, out: Path, model: str, rate: float, mode: str = "letter") -> None:
    provider = OfflineProvider(model, "1", OfflineBehaviour(correct_rate=rate, error_rate=0.05))
    config = RunConfig(
        run_id=model, mode=mode, retry=RetryPolicy(max_attempts=2, sleep=lambda _: None)
    )
    run_and_report(root, provider, config, out)


def test_compare_pairs_only_items_both_models_completed(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(40)])
    _run(root, tmp_path / "base", "base", 0.5)
    _run(root, tmp_path / "dapt", "dapt", 0.9)
    comparison = compare_dirs([tmp_path / "base", tmp_path / "dapt"], tmp_path / "cmp")
    pair = comparison["paired"][0]
    errored = {
        json.loads(line)["item_id"]
        for run in ("base", "dapt")
        for line in (tmp_path / run / "results.jsonl").read_text().splitlines()
        if json.loads(line)["status"] == "errored"
    }
    assert errored and pair["n_shared_completed"] == 40 - len(errored)
    assert pair["difference_b_minus_a"]["mean_difference"] > 0
    assert 0 <= pair["mcnemar_exact"]["p_value"] <= 1
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert (
        "<svg" in page
        and "offline:dapt@1" in page
        and "<script" not in page
        and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    )


def test_compare_refuses_runs_with_different_modes(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(5)])
    _run(root, tmp_path / "a", "a", 1.0, "letter")
    _run(root, tmp_path / "b", "b", 1.0, "loglik")
    with pytest.raises(
        AggregationError, match=r"'mode' differs across runs: \['letter', 'loglik'\]"
    ):
        compare_dirs([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp")


def test_cli_build_run_resume_and_compare(
    make_benchmark: MakeBenchmark, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(6)])
    write_jsonl(root / "items.jsonl", [mcq_row(i) for i in range(6)] + ["{broken"])
    assert main(["build", str(root)]) == 1  # a quarantined row fails the build ...
    assert "quarantined line 7: invalid JSON" in capsys.readouterr().out
    assert main(["build", str(root), "--allow-quarantined"]) == 0  # ... unless allowed
    base = ["run", "--benchmark", str(root), "--provider", "offline", "--model", "tiny"]
    assert main([*base, "--out", str(tmp_path / "a"), "--offline-correct-rate", "0.5"]) == 0
    assert "completion rate: 100.0% (6/6 units finished)" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "a"), "--offline-correct-rate", "0.5"]) == 0
    assert '"skipped_cached": 6' in capsys.readouterr().out
    assert main([*base, "--model", "other", "--out", str(tmp_path / "b")]) == 0
    assert (
        main(
            [
                "compare",
                "--run",
                str(tmp_path / "a"),
                "--run",
                str(tmp_path / "b"),
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert (
        json.loads((tmp_path / "c" / "compare.json").read_text())["baseline"]
        == "offline:tiny@unpinned"
    )


def test_cli_reports_user_errors_with_exit_code_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "--benchmark", str(tmp_path), "--provider", "offline", "--out", str(tmp_path / "o")]
    )
    assert code == 1
    assert "dapt-eval run: error: manifest" in capsys.readouterr().err


def test_cli_calibrate_judge_require_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {
            "id": f"j{i}",
            "question": f"q{i}",
            "reference_answer": "r",
            "candidate_answer": "c",
            "human_verdict": "correct" if i % 2 else "incorrect",
            "annotator": "a",
        }
        for i in range(20)
    ]
    write_jsonl(tmp_path / "cal.jsonl", rows)
    args = [
        "calibrate-judge",
        "--items",
        str(tmp_path / "cal.jsonl"),
        "--out",
        str(tmp_path / "r.json"),
        "--judge-provider",
        "offline",
        "--require-trusted",
    ]
    assert main(args) == 0
    assert main([*args, "--judge-offline-correct-rate", "0.5"]) == 1
    assert json.loads((tmp_path / "r.json").read_text())["trusted"] is False
