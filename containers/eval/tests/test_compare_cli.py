"""`dapt-eval` end to end: build, run (resume), aggregate, compare (JSON + HTML), calibrate."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    MakeBenchmark,
    cls_row,
    mcq_row,
    qa_row,
    sum_row,
    write_benchmark,
    write_jsonl,
)
from dapt_eval.aggregate import AggregationError
from dapt_eval.benchmark import build_benchmark
from dapt_eval.cli import main
from dapt_eval.commands import aggregate_dir, calibrate_file, compare_dirs, run_and_report
from dapt_eval.compare import calibration_from_gate, render_html
from dapt_eval.judge import Judge
from dapt_eval.providers.base import DecodingParams
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


def _pair(
    root: Path,
    tmp_path: Path,
    rates: tuple[float, float],
    judge: Judge | None = None,
    judge_calibration: Path | None = None,
) -> dict[str, Any]:
    for name, rate in zip(("base", "dapt"), rates, strict=True):
        provider = OfflineProvider(name, "1", OfflineBehaviour(correct_rate=rate))
        config = RunConfig(run_id=name, decoding=DecodingParams(seed=7, max_tokens=64))
        run_and_report(root, provider, config, tmp_path / name, judge)
    runs = [tmp_path / "base", tmp_path / "dapt"]
    return compare_dirs(runs, tmp_path / "cmp", judge_calibration)


LABELS = ["billing", "refund", "shipping"]


@pytest.fixture(scope="module")
def classification_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Two classification runs compared, made once: each report's macro-F1 bootstrap costs
    seconds (1000 scikit-learn f1_score calls)."""
    tmp = tmp_path_factory.mktemp("classification")
    rows = [cls_row(i, LABELS[i % 3]) for i in range(12)]
    root = write_benchmark(tmp, Task.CLASSIFICATION, rows, labels=LABELS)
    return tmp, _pair(root, tmp, (0.0, 1.0))


def _calibration_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"j{i}",
            "question": f"q{i}",
            "reference_answer": "r",
            "candidate_answer": "c",
            "human_verdict": "correct" if i % 2 else "incorrect",
            "annotator": "a",
        }
        for i in range(n)
    ]


def test_summarization_compare_headlines_rouge_l_not_strict_accuracy(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.SUMMARIZATION, [sum_row(i) for i in range(6)])
    comparison = _pair(root, tmp_path, (0.5, 1.0))
    model = comparison["models"][1]
    assert model["strict"]["metric"] == "rouge_l_strict"
    assert model["strict"]["value"] == pytest.approx(1.0)
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "strict accuracy" not in page and "rouge_l_strict" in page


def test_classification_paired_difference_names_its_metric() -> None:
    model = {
        "label": "m",
        "primary": {"value": 0.5, "low": 0.4, "high": 0.6},
        "n_items": 8,
        "n_errored": 0,
        "n_unparseable": 0,
        "strict": {"metric": "strict_accuracy", "value": 0.5},
        "format_spread": {"min": None, "max": None, "n_prompts": 1},
    }
    diff = {"mean_difference": 0.25, "ci": {"low": 0.0, "high": 0.5}}
    pair = {"b": "m", "n_shared_completed": 8, "statistic": "accuracy"}
    comparison = {
        "benchmark": "b",
        "benchmark_version": "1",
        "task": "classification",
        "mode": "label",
        "primary_metric": "macro_f1",
        "baseline": "m",
        "models": [model, model],
        "paired": [{**pair, "difference_b_minus_a": diff, "mcnemar_exact": {"p_value": 0.5}}],
    }
    page = render_html(comparison)
    assert "difference in accuracy (b&minus;a)" in page  # before: "difference (b&minus;a)"
    assert "not in the headline metric macro_f1" in page


def test_compare_page_shows_small_p_values_settings_and_quarantine(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(100)])
    write_jsonl(root / "items.jsonl", [mcq_row(i) for i in range(100)] + ["{broken"])
    build_benchmark(root)
    comparison = _pair(root, tmp_path, (0.0, 1.0))
    p_value = comparison["paired"][0]["mcnemar_exact"]["p_value"]
    assert 0 < p_value < 1e-20  # 100 discordant pairs
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert f"<td>{p_value:.1e}</td></tr>" in page  # before: <td>0.000</td>
    model = comparison["models"][0]
    assert model["quarantined_rows"] == 1
    assert model["decoding"]["seed"] == 7 and model["judge"] is None
    assert "seed 7" in page and "max_tokens 64" in page and "quarantined rows" in page


def test_records_from_both_runtimes_mix_whatever_their_number_spelling(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(4)])
    run_and_report(root, OfflineProvider("m", "1"), RunConfig(run_id="r"), tmp_path / "o")
    items = sorted((tmp_path / "o" / "items").glob("*.json"))
    record = json.loads(items[0].read_text())
    assert record["decoding"]["temperature"] == 0 and '"temperature":0,' in items[0].read_text()
    # a record as an older Python wrote it ("temperature": 0.0) next to the others
    record["decoding"] = {**record["decoding"], "temperature": 0.0, "top_p": 1.0}
    items[0].write_text(json.dumps(record) + "\n")
    report = aggregate_dir(tmp_path / "o")
    assert report["decoding"]["temperature"] == 0 and report["primary"]["n_results"] == 4


def test_classification_compare_shows_each_models_confusion_matrix(
    classification_pair: tuple[Path, dict[str, Any]],
) -> None:
    tmp_path, comparison = classification_pair
    report = json.loads((tmp_path / "dapt" / "report.json").read_text())
    expected = report["primary"]["classification"]["confusion_matrix"]["matrix"]
    matrix = comparison["models"][1]["confusion_matrix"]
    assert (matrix["labels"], matrix["matrix"], matrix["rows"]) == (LABELS, expected, "true")
    assert sum(map(sum, comparison["models"][0]["confusion_matrix"]["matrix"])) == 12
    page = (tmp_path / "cmp" / "compare.html").read_text()
    # before: no confusion matrix on the page
    assert page.count('<table class="confusion">') == 2
    billing = "".join(f"<td>{n}</td>" for n in expected[0])
    assert f"<tr><th>billing</th>{billing}</tr>" in page


def test_judged_compare_shows_the_judge_and_its_calibration_status(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.QA, [qa_row(i) for i in range(6)])
    judge = Judge(OfflineProvider("judge", "1"), retry=RetryPolicy(sleep=lambda _: None))
    write_jsonl(tmp_path / "cal.jsonl", _calibration_rows(8))
    report = calibrate_file(tmp_path / "cal.jsonl", judge, tmp_path / "cal.json")
    comparison = _pair(root, tmp_path, (0.5, 1.0), judge, tmp_path / "cal.json")
    model = comparison["models"][0]
    assert model["judge"] == judge.describe()
    assert model["judge_calibration"] == {
        "status": "calibrated",
        "cohen_kappa": report["cohen_kappa"],
        "kappa_threshold": report["kappa_threshold"],
        "injection_resistance": None,  # this calibration set has no adversarial row
        "problems": [],
    }
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert f"calibrated: kappa {report['cohen_kappa']:.3f}" in page  # before: no status
    # a report of another judge, or none at all, is said so
    other = {**report, "judge": {**report["judge"], "model": "offline:other@1"}}
    (tmp_path / "other.json").write_text(json.dumps(other))
    runs = [tmp_path / "base", tmp_path / "dapt"]
    failed = compare_dirs(runs, tmp_path / "c2", tmp_path / "other.json")["models"][0]
    assert failed["judge_calibration"]["status"] == "failed"
    assert (
        "the report is for judge model 'offline:other@1'"
        in (failed["judge_calibration"]["problems"][0])
    )
    missing = compare_dirs(runs, tmp_path / "c3")["models"][0]["judge_calibration"]
    assert missing["status"] == "not calibrated"


def test_the_plan_gates_record_gives_the_same_calibration_status() -> None:
    gate = {
        "calibrated": False,
        "report_key": "cal.json",
        "cohen_kappa": 0.4,
        "kappa_threshold": 0.6,
        "injection_resistance": 0.75,
        "problems": ["calibration report s3://b/cal.json says trusted: false"],
    }
    assert calibration_from_gate(gate) == {
        "status": "failed",
        "cohen_kappa": 0.4,
        "kappa_threshold": 0.6,
        "injection_resistance": 0.75,
        "problems": gate["problems"],
    }
    unread = {**gate, "cohen_kappa": None, "kappa_threshold": None, "injection_resistance": None}
    passed = {**gate, "calibrated": True, "problems": []}
    statuses = [(calibration_from_gate(g) or {}).get("status") for g in (unread, passed)]
    assert statuses == ["not calibrated", "calibrated"]
    assert calibration_from_gate(None) is None  # no judge in the run


BROWSER = pytest.mark.skipif(shutil.which("chromium") is None, reason="make test installs chromium")


def _browse(page: Path, shot: Path) -> str:
    """The page's laid-out DOM, with a 900x900 screenshot written to `shot`.

    One browser start per page (each costs seconds): the screenshot and the DOM together.
    """
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--dump-dom"]
    dom = subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", "--window-size=900,900", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    header = shot.read_bytes()[:24]
    width, height = struct.unpack(">II", header[16:24])
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and (width, height) == (900, 900)
    assert shot.stat().st_size > 10_000  # text, table borders and a bar: not a blank page
    return dom


@BROWSER
def test_compare_page_renders_in_a_headless_browser(
    classification_pair: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    run_dir, comparison = classification_pair
    dom = _browse(run_dir / "cmp" / "compare.html", tmp_path / "compare.png")
    # The browser laid out the chart, both models, the settings, the scientific p-value and
    # both models' confusion matrices.
    p_value = comparison["paired"][0]["mcnemar_exact"]["p_value"]
    assert dom.count("<svg") == 1 and dom.count("<rect") == 2  # one bar each (the first 0 wide)
    assert "offline:dapt@1" in dom and "Run settings" in dom and f"{p_value:.1e}" in dom
    assert "Confusion matrices" in dom and dom.count('<table class="confusion">') == 2
    assert "judge calibration" in dom and "no judge" in dom
