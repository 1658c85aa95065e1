"""Metrics against hand-computed values and against reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rouge_score import rouge_scorer
from scipy import stats
from sklearn.metrics import f1_score

from dapt_eval.metrics import (
    Outcome,
    UnicodeTokenizer,
    accuracy_report,
    classification_report,
    mcnemar_exact,
    mean_with_ci,
    paired_bootstrap,
    rouge_l,
    wilson,
)


def test_wilson_matches_the_hand_computed_formula() -> None:
    # 8/10, z = 1.959964: centre = (p + z²/2n) / (1 + z²/n),
    # half-width = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    z, p, n = 1.959963984540054, 0.8, 10
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    result = wilson(8, 10)
    assert result.rate == 0.8
    assert result.ci.low == pytest.approx(centre - half, abs=1e-12)
    assert result.ci.high == pytest.approx(centre + half, abs=1e-12)
    assert result.ci.low == pytest.approx(0.4902, abs=1e-4)
    assert result.ci.high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_is_defined_at_the_edges_and_undefined_at_zero_items() -> None:
    assert wilson(0, 5).ci.low == pytest.approx(0.0)
    assert wilson(5, 5).ci.high == pytest.approx(1.0)
    empty = wilson(0, 0)
    assert (empty.rate, empty.ci.low, empty.ci.high) == (None, None, None)


def test_accuracy_excludes_errors_and_unparseable_but_strict_accuracy_counts_them() -> None:
    outcomes = [
        Outcome("ok", True),
        Outcome("ok", True),
        Outcome("ok", False),
        Outcome("errored", None),
        Outcome("unparseable", None),
    ]
    report = accuracy_report(outcomes)
    assert report["accuracy"]["rate"] == pytest.approx(2 / 3)
    assert report["strict_accuracy"]["rate"] == pytest.approx(2 / 5)
    assert (report["n_errored"], report["n_unparseable"]) == (1, 1)
    assert report["error_rate"] == report["unparseable_rate"] == pytest.approx(0.2)


def test_classification_report_matches_hand_values_and_sklearn() -> None:
    y_true = ["a", "b", "a", "c", "b", "c"]
    y_pred = ["a", "a", "a", "c", "b", "b"]
    report = classification_report(y_true, y_pred, ["a", "b", "c"], n_resamples=200)
    # a: P 2/3 R 1 F 0.8; b: P 1/2 R 1/2 F 0.5; c: P 1 R 1/2 F 2/3 -> macro (0.8+0.5+0.6667)/3
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert report["per_class"]["a"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert report["confusion_matrix"]["matrix"] == [[2, 0, 0], [1, 1, 0], [0, 1, 1]]
    ci = report["macro_f1_ci"]
    assert ci["low"] <= report["macro_f1"] <= ci["high"]


def test_macro_f1_counts_a_never_predicted_class_as_zero() -> None:
    report = classification_report(["a", "b"], ["a", "a"], ["a", "b", "c"], n_resamples=50)
    assert report["per_class"]["c"]["f1"] == 0.0
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0 + 0) / 3)


def test_classification_report_with_nothing_scored_has_undefined_macro_f1() -> None:
    report = classification_report([], [], ["a", "b"])
    assert report["macro_f1"] is None
    assert report["confusion_matrix"]["matrix"] == [[0, 0], [0, 0]]


def test_bootstrap_is_seeded_and_reproducible() -> None:
    values = [0.1, 0.5, 0.9, 0.4, 0.3]
    assert mean_with_ci(values, 300, seed=7) == mean_with_ci(values, 300, seed=7)
    assert mean_with_ci(values, 300, seed=7)["ci"] != mean_with_ci(values, 300, seed=8)["ci"]


def test_paired_bootstrap_matches_scipy_reference() -> None:
    a = [1, 1, 0, 1, 1, 0, 1, 1]
    b = [0, 1, 0, 0, 1, 0, 1, 0]
    result = paired_bootstrap(a, b, n_resamples=500, seed=3)
    reference = stats.bootstrap(
        (np.array(a, float), np.array(b, float)),
        lambda x, y: float(np.mean(x) - np.mean(y)),
        n_resamples=500,
        paired=True,
        vectorized=False,
        method="percentile",
        rng=np.random.default_rng(3),
    )
    assert result["mean_difference"] == pytest.approx(3 / 8)
    assert result["ci"]["low"] == pytest.approx(reference.confidence_interval.low)
    assert result["ci"]["high"] == pytest.approx(reference.confidence_interval.high)


def test_mcnemar_exact_matches_hand_computed_binomial() -> None:
    # 1 item only A got right, 5 only B: p = 2 * P(X <= 1 | n=6, 0.5) = 2 * 7/64
    a = [True, False, False, False, False, False, True, False]
    b = [False, True, True, True, True, True, True, False]
    result = mcnemar_exact(a, b)
    assert (result["a_only"], result["b_only"]) == (1, 5)
    assert result["p_value"] == pytest.approx(14 / 64)


def test_mcnemar_with_no_discordant_pairs_has_p_one() -> None:
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0


def test_tokenizer_keeps_hebrew_words_with_niqqud_and_splits_cjk_per_character() -> None:
    tokens = UnicodeTokenizer().tokenize("שָׁלוֹם עולם! 東京は首都。Hello_World 42")
    assert tokens == ["שָׁלוֹם", "עולם", "東", "京", "は", "首", "都", "hello_world", "42"]


def test_default_rouge_tokenizer_loses_non_latin_text_which_is_why_ours_exists() -> None:
    default = rouge_scorer.RougeScorer(["rougeL"])
    assert default.score("東京は日本の首都です", "東京は首都です")["rougeL"].fmeasure == 0.0


def test_rouge_l_on_japanese_matches_hand_computed_lcs() -> None:
    # 10 reference chars, 7 predicted, LCS 7: P = 1, R = 0.7, F = 2*0.7/1.7
    assert rouge_l("東京は日本の首都です", "東京は首都です") == pytest.approx(1.4 / 1.7)


def test_rouge_l_on_chinese_and_hebrew() -> None:
    # Chinese: 北京是中国的首都 (8) vs 北京是首都 (5), LCS 5 -> F = 2*1*(5/8)/(1+5/8)
    assert rouge_l("北京是中国的首都", "北京是首都") == pytest.approx(2 * 0.625 / 1.625)
    # Hebrew words: ref 4 tokens, pred 3 tokens, LCS 3 -> F = 2*1*0.75/1.75
    assert rouge_l("ירושלים היא עיר הבירה", "ירושלים עיר הבירה") == pytest.approx(1.5 / 1.75)


def test_rouge_l_english_agrees_with_rouge_score_default() -> None:
    ref, pred = "The cat sat on the mat.", "A cat sat on a mat"
    default = rouge_scorer.RougeScorer(["rougeL"]).score(ref, pred)["rougeL"].fmeasure
    assert rouge_l(ref, pred) == pytest.approx(default)
