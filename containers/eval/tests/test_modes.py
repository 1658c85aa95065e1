"""Scoring without a letter answer or a judge (mcq `cloze`, qa `overlap`), sampled runs, strict
paired comparisons, the retrieval baseline and the promotion gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeBenchmark, mcq_row, qa_row
from dapt_eval.benchmark import BenchmarkError, load_benchmark, read_manifest
from dapt_eval.commands import compare_dirs, run_and_report
from dapt_eval.gate import GatePolicy, TaskRule, decide
from dapt_eval.prompts import PromptSpec
from dapt_eval.providers.base import DecodingParams, Generation, Oracle, Provider, Usage
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.providers.retrieval import Passage, PassageIndex, RetrievalProvider, split_passages
from dapt_eval.results import ResultStore
from dapt_eval.runner import RunConfig, RunConfigError, run_benchmark, sample_items
from dapt_eval.schemas import Task

CLOZE = PromptSpec(id="mcq-cloze", version="1", template="Question: {question}\nAnswer:")


def _with_cloze(root: Path, cloze: PromptSpec = CLOZE) -> Path:
    manifest = json.loads((root / "benchmark.json").read_text())
    manifest["cloze_prompt"] = cloze.model_dump()
    (root / "benchmark.json").write_text(json.dumps(manifest))
    return root


class Scripted(Provider):
    """Log-likelihoods from a table keyed by continuation: what a real model would return."""

    name = "scripted"

    def __init__(self, scores: dict[str, float]) -> None:
        self.model_id, self.revision = "scripted", "r1"
        self.scores = scores
        self.prompts: list[str] = []

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        self.prompts.append(prompt)
        return Generation("Fact number 1", Usage(1, 3), 0.0, self.name, self.model_id, "r1")

    @property
    def supports_loglik(self) -> bool:
        return True

    def loglik(self, prompt: str, continuations: Any, oracle: Oracle | None = None) -> list[float]:
        self.prompts.append(prompt)
        return [self.scores[c] for c in continuations]


def test_cloze_mode_shows_no_choices_and_normalises_by_characters(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    # GIVEN an MCQ item whose answer has a lower summed log-likelihood than a shorter
    # distractor, but a higher one per character
    root = _with_cloze(make_benchmark(Task.MCQ, [mcq_row(1)]))
    provider = Scripted({" value 1": -3.4, " value 2": -5.6, " banana": -3.0, " the moon": -9.0})
    # WHEN it is scored in the cloze mode
    _, report = run_and_report(
        root, provider, RunConfig(run_id="r", mode="cloze"), tmp_path / "run"
    )
    # THEN the prompt holds the question alone, the answer wins per character (-3.4/7 > -3/6)
    assert provider.prompts == ["Question: Which value is correct for case 1?\nAnswer:"]
    [record] = ResultStore(tmp_path / "run")
    assert record.correct is True and record.prompt_id == "mcq-cloze" and record.mode == "cloze"
    assert record.details["norm"] == "per_char"
    assert report["primary_prompt"] == "mcq-cloze" and report["primary"]["accuracy"]["rate"] == 1


def test_cloze_mode_needs_a_cloze_prompt_and_log_likelihoods(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    plain = make_benchmark(Task.MCQ, [mcq_row(1)], name="plain")
    with pytest.raises(RunConfigError, match="mode = 'cloze': needs a 'cloze_prompt'"):
        run_and_report(plain, Scripted({}), RunConfig(run_id="r", mode="cloze"), tmp_path / "a")


def test_a_cloze_prompt_may_show_only_the_question(make_benchmark: MakeBenchmark) -> None:
    root = _with_cloze(
        make_benchmark(Task.MCQ, [mcq_row(1)]),
        PromptSpec(id="c", version="1", template="{question} {choices}"),
    )
    with pytest.raises(BenchmarkError, match=r"uses field '\{choices\}'; a cloze prompt shows"):
        read_manifest(root)


def test_the_example_mcq_benchmark_has_a_cloze_prompt() -> None:
    root = Path(__file__).parents[3] / "examples" / "website-builder" / "benchmarks" / "mcq"
    benchmark = load_benchmark(root)
    assert benchmark.manifest.cloze_prompt is not None
    assert benchmark.manifest.primary_prompt_id("cloze") == "mcq-cloze"


def test_qa_without_a_judge_is_scored_by_reference_overlap_and_says_so(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.QA, [qa_row(1), qa_row(2)])
    with pytest.raises(RunConfigError, match="or use mode 'overlap'"):
        run_and_report(root, Scripted({}), RunConfig(run_id="r"), tmp_path / "a")
    _, report = run_and_report(
        root, Scripted({}), RunConfig(run_id="r", mode="overlap"), tmp_path / "b"
    )
    assert report["primary_metric"] == "reference_overlap_rouge_l"
    scores = {r.item_id: r.score for r in ResultStore(tmp_path / "b")}
    assert scores["q1"] == pytest.approx(1.0) and scores["q2"] == pytest.approx(2 / 3)
    assert report["primary"]["primary_value"]["value"] == pytest.approx((1 + 2 / 3) / 2)


def test_a_sample_is_the_same_for_every_model_and_grows_by_inclusion(
    make_benchmark: MakeBenchmark,
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(50)])
    items = load_benchmark(root).items
    small = {i.id for i in sample_items(items, 10, seed=3)}
    large = {i.id for i in sample_items(items, 20, seed=3)}
    assert len(small) == 10 and small < large
    assert small == {i.id for i in sample_items(list(reversed(items)), 10, seed=3)}
    assert small != {i.id for i in sample_items(items, 10, seed=4)}
    assert sample_items(items, None) == items and sample_items(items, 99) == items


def test_a_sampled_run_reports_only_its_own_items(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    # GIVEN a run directory that already holds records of a larger sample
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(30)])
    provider = OfflineProvider(behaviour=OfflineBehaviour(correct_rate=1.0))
    run_and_report(root, provider, RunConfig(run_id="big", sample=20), tmp_path / "run")
    # WHEN a smaller sample is reported in the same directory
    _, report = run_and_report(
        root, provider, RunConfig(run_id="small", sample=5), tmp_path / "run"
    )
    # THEN only its 5 items count, and the report says it is a sample
    assert report["primary"]["n_results"] == 5 and report["primary"]["completion_rate"] == 1
    assert report["sample"] == {"n": 5, "of": 30, "seed": 0}


def test_strict_paired_difference_counts_unparseable_as_wrong(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    # GIVEN a base model that rarely answers in the format, and a candidate that always does
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(40)])
    base = OfflineProvider(
        "base", behaviour=OfflineBehaviour(correct_rate=1.0, unparseable_rate=0.8)
    )
    tuned = OfflineProvider("tuned", behaviour=OfflineBehaviour(correct_rate=1.0))
    for name, provider in (("base", base), ("tuned", tuned)):
        run_and_report(root, provider, RunConfig(run_id=name), tmp_path / name)
    comparison = compare_dirs([tmp_path / "base", tmp_path / "tuned"], tmp_path / "cmp")
    [pair] = comparison["paired"]
    # THEN on the few items the base formatted the two look equal; strictly the candidate wins
    assert pair["difference_b_minus_a"]["mean_difference"] == 0
    strict = pair["strict"]
    assert strict["n_shared_finished"] == 40
    assert strict["difference_b_minus_a"]["mean_difference"] > 0.5
    assert strict["mcnemar_exact"]["p_value"] < 1e-6


def test_split_passages_keeps_paragraphs_under_the_word_limit() -> None:
    text = "one two three\n\nfour five\n\n" + " ".join(f"w{i}" for i in range(12))
    passages = [p.text for p in split_passages("kb-1", text, words=5)]
    assert passages == ["one two three four five", "w0 w1 w2 w3 w4", "w5 w6 w7 w8 w9", "w10 w11"]


def test_retrieval_puts_the_best_passages_before_the_prompt_under_its_own_identity() -> None:
    index = PassageIndex(
        [
            Passage("kb-1", "The Pro plan costs 16 dollars a month billed annually."),
            Passage("kb-2", "Connect a domain with an A record and a CNAME record."),
            Passage("kb-3", "Refunds are possible within 14 days of purchase."),
        ]
    )
    inner = Scripted({" yes": -1.0})
    rag = RetrievalProvider(inner, index, k=1)
    assert rag.loglik("How much does the Pro plan cost?", [" yes"]) == [-1.0]
    [sent] = inner.prompts
    assert "[1] The Pro plan costs 16 dollars" in sent and "CNAME" not in sent
    assert sent.endswith("How much does the Pro plan cost?")
    assert rag.identity()["model_id"] == "scripted+bm25-k1"
    assert rag.identity()["revision"].startswith("r1+corpus-")


def _comparison(mean: float, low: float, mode: str = "cloze") -> dict[str, Any]:
    diff = {"mean_difference": mean, "ci": {"low": low, "high": mean + (mean - low)}}
    return {
        "baseline": "base",
        "mode": mode,
        "paired": [
            {"b": "tuned", "difference_b_minus_a": diff, "strict": {"difference_b_minus_a": diff}}
        ],
    }


POLICY = GatePolicy(
    tasks={"mcq": TaskRule(margin=0.0), "intent": TaskRule(), "summary": TaskRule(required=False)},
    default_tolerance=0.02,
    heldout_max_increase=0.05,
)


def test_gate_passes_when_required_tasks_improve_and_nothing_regresses() -> None:
    decision = decide(
        {
            "mcq": _comparison(0.10, 0.03),
            "intent": _comparison(0.40, 0.30),
            "summary": _comparison(-0.01, -0.05),
        },
        "tuned",
        POLICY,
        heldout_before={"public": 2.0},
        heldout_after={"public": 2.08},
        public_sources=["public"],
    )
    assert decision.passed, decision.reasons
    judge = next(c for c in decision.checks if c.name == "judge_calibrated")
    assert judge.passed is None  # no judge scored anything


@pytest.mark.parametrize(
    ("comparisons", "after", "reason"),
    [
        ({"mcq": _comparison(0.05, -0.01), "intent": _comparison(0.4, 0.3)}, 2.0, "mcq: paired"),
        ({"intent": _comparison(0.4, 0.3)}, 2.0, "mcq: required, but there is no comparison"),
        (
            {
                "mcq": _comparison(0.1, 0.02),
                "intent": _comparison(0.4, 0.3),
                "x": _comparison(-0.03, -0.1),
            },
            2.0,
            "x: paired accuracy difference -0.030 < -0.02",
        ),
        ({"mcq": _comparison(0.1, 0.02), "intent": _comparison(0.4, 0.3)}, 2.2, "+10.0%"),
        (
            {"mcq": _comparison(0.1, 0.02), "intent": _comparison(0.4, 0.3, mode="judge")},
            2.0,
            "not shown to be trusted",
        ),
    ],
)
def test_gate_fails_with_the_reason(comparisons: dict[str, Any], after: float, reason: str) -> None:
    for comparison in comparisons.values():
        comparison["paired"][0]["strict"]["statistic"] = "accuracy"
    decision = decide(
        comparisons,
        "tuned",
        POLICY,
        heldout_before={"public": 2.0},
        heldout_after={"public": after},
        public_sources=["public"],
    )
    assert not decision.passed
    assert any(reason in r for r in decision.reasons), decision.reasons


def test_gate_fails_without_a_general_held_out_loss() -> None:
    decision = decide(
        {"mcq": _comparison(0.1, 0.02), "intent": _comparison(0.4, 0.3)}, "tuned", POLICY
    )
    assert not decision.passed
    assert decision.reasons == ["no public held-out source to show general ability was kept"]


def test_run_benchmark_reports_progress_per_new_record(
    make_benchmark: MakeBenchmark, tmp_path: Path
) -> None:
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(6)])
    seen: list[str] = []
    store = ResultStore(tmp_path / "run")
    run_benchmark(
        load_benchmark(root),
        OfflineProvider(),
        RunConfig(run_id="r"),
        store,
        None,
        lambda r: seen.append(r.item_id),
    )
    assert sorted(seen) == [f"m{i}" for i in range(6)]
