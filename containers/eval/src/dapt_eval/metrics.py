"""Metrics and statistics as pure functions over plain lists.

Library choices: scipy for the Wilson interval (`binomtest(...).proportion_ci`), the exact
McNemar test (a two-sided binomial test on the discordant pairs) and bootstrap resampling;
scikit-learn for precision/recall/F1, confusion matrices and Cohen's kappa; rouge-score for
ROUGE-L. Written by hand only: the Unicode tokenizer (rouge-score's default drops non-ASCII),
which reads its Unicode data from `unicode_table` so that Python and Node tokenize alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from rouge_score import rouge_scorer
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from dapt_eval import unicode_table

# Python evaluates default arguments at import, so the defaults live above their users.
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
MIN_BOOTSTRAP_N = 2


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval; `None` bounds mean 'not defined for this sample'."""

    low: float | None
    high: float | None
    confidence: float
    method: str


@dataclass(frozen=True)
class Proportion:
    """k successes out of n with a Wilson interval; rate is None when n == 0."""

    successes: int
    n: int
    rate: float | None
    ci: Interval

    def to_json(self) -> dict[str, Any]:
        """Plain dict for reports."""
        return asdict(self)


def wilson(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Proportion:
    """Proportion with a Wilson score interval (no continuity correction).

    Why Wilson: unlike the normal approximation it stays inside [0, 1] and behaves at 0/n and
    n/n, which are common on small domain benchmarks.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must lie in [0, n={n}]")
    if n == 0:
        return Proportion(0, 0, None, Interval(None, None, confidence, "wilson"))
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Proportion(
        successes, n, successes / n, Interval(float(ci.low), float(ci.high), confidence, "wilson")
    )


@dataclass(frozen=True)
class Outcome:
    """What the aggregator needs from one item result."""

    status: str  # "ok" | "errored" | "unparseable"
    correct: bool | None


def accuracy_report(
    outcomes: Sequence[Outcome], confidence: float = DEFAULT_CONFIDENCE, n_missing: int = 0
) -> dict[str, Any]:
    """Accuracy over scored items, plus strict accuracy and error/unparseable rates.

    `accuracy` excludes errored and unparseable items from the denominator (they say nothing
    about the model's knowledge); `strict_accuracy` counts them as failures, and so the
    `n_missing` expected items with no record: 10 right of 100 expected is 0.1, never 1.0.
    Both are reported so a model that fails to follow the format cannot look better than it is.
    """
    total = len(outcomes)
    expected = total + n_missing
    scored = [o for o in outcomes if o.status == "ok" and o.correct is not None]
    correct = sum(1 for o in scored if o.correct)
    errored = sum(1 for o in outcomes if o.status == "errored")
    unparseable = sum(1 for o in outcomes if o.status == "unparseable")
    return {
        "n_items": total,
        "n_scored": len(scored),
        "n_errored": errored,
        "n_unparseable": unparseable,
        "accuracy": wilson(correct, len(scored), confidence).to_json(),
        "strict_accuracy": wilson(correct, expected, confidence).to_json(),
        "error_rate": _rate(errored, total),
        "unparseable_rate": _rate(unparseable, total),
    }


def classification_report(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Macro-F1 with a bootstrap CI, per-class precision/recall/F1/support and the confusion matrix.

    Only scored items belong here (predictions are labels from the label set); unparseable
    outputs are counted by `accuracy_report`. Classes absent from both truth and prediction
    score 0 (zero_division=0) and still count in the macro average: a missing class is a gap.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    label_list = list(labels)
    if not y_true:
        return _empty_classification_report(label_list, confidence)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=label_list, zero_division=0
    )
    macro = float(np.mean(f1))
    matrix = confusion_matrix(y_true, y_pred, labels=label_list).tolist()
    return {
        "labels": label_list,
        "macro_f1": macro,
        "macro_f1_ci": asdict(
            macro_f1_bootstrap(y_true, y_pred, label_list, n_resamples, seed, confidence)
        ),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(label_list)
        },
        "confusion_matrix": {"rows": "true", "columns": "predicted", "matrix": matrix},
    }


def _empty_classification_report(labels: list[str], confidence: float) -> dict[str, Any]:
    """Same shape as a real report, with undefined values, when nothing could be scored."""
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    return {
        "labels": labels,
        "macro_f1": None,
        "macro_f1_ci": asdict(Interval(None, None, confidence, "bootstrap-percentile")),
        "per_class": {label: dict(zero) for label in labels},
        "confusion_matrix": {
            "rows": "true",
            "columns": "predicted",
            "matrix": [[0] * len(labels) for _ in labels],
        },
    }


def macro_f1_bootstrap(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """Percentile bootstrap CI of macro-F1, resampling items (truth and prediction together)."""
    index = {label: i for i, label in enumerate(labels)}
    true_codes = np.array([index[v] for v in y_true])
    pred_codes = np.array([index[v] for v in y_pred])
    codes = list(range(len(labels)))

    def statistic(t: np.ndarray[Any, Any], p: np.ndarray[Any, Any]) -> float:
        return float(f1_score(t, p, labels=codes, average="macro", zero_division=0))

    return _bootstrap((true_codes, pred_codes), statistic, n_resamples, seed, confidence)


def mean_with_ci(
    values: Sequence[float],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Mean of per-item scores (e.g. ROUGE-L F) with a percentile bootstrap CI."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean()) if array.size else None
    ci = _bootstrap((array,), lambda x: float(np.mean(x)), n_resamples, seed, confidence)
    return {"n": int(array.size), "mean": mean, "ci": asdict(ci)}


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Mean difference a - b over paired items with a seeded percentile bootstrap CI.

    Pairing matters: both models saw the same items, so resampling items (not models) removes
    item difficulty from the variance and gives a much tighter, honest interval.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    diff = float(np.mean(x - y)) if x.size else None
    ci = _bootstrap(
        (x, y), lambda u, v: float(np.mean(u) - np.mean(v)), n_resamples, seed, confidence
    )
    return {"n_pairs": int(x.size), "mean_difference": diff, "ci": asdict(ci), "seed": seed}


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test: two-sided binomial test of the discordant pairs against p = 0.5.

    `a_only` counts items A got right and B wrong; `b_only` the reverse. With no discordant
    pairs the models are indistinguishable on this sample and p = 1.
    """
    if len(a_correct) != len(b_correct):
        raise ValueError(f"paired samples differ in length: {len(a_correct)} vs {len(b_correct)}")
    a_only = sum(1 for x, y in zip(a_correct, b_correct, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(a_correct, b_correct, strict=True) if y and not x)
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(a_only, discordant, 0.5).pvalue)
    return {"n_pairs": len(a_correct), "a_only": a_only, "b_only": b_only, "p_value": p_value}


class UnicodeTokenizer:
    """ROUGE tokenizer that keeps every script: words for spaced scripts, characters for CJK.

    Hand-written because rouge-score's default tokenizer replaces non [a-z0-9] characters with
    spaces, which turns Hebrew, Japanese or Chinese text into zero tokens (ROUGE = 0). Text is
    NFKC-normalised and case-folded; a word is a run of letters, digits, '_' or combining marks
    (so Hebrew niqqud or Devanagari vowel signs do not split words); each Han, Hiragana,
    Katakana character is its own token because those scripts do not separate words by spaces.
    NFKC, case-folding and "letter, digit or mark" are Unicode 14.0.0's, from `unicode_table`,
    whatever this Python's or Node's own Unicode version: characters assigned later are no word
    characters (except in the ideograph planes, which are CJK by range).
    """

    def tokenize(self, text: str) -> list[str]:
        """Split `text` into tokens (the interface rouge-score expects)."""
        tokens: list[str] = []
        word: list[str] = []
        for char in unicode_table.casefold(unicode_table.nfkc(text)):
            if is_cjk(char):
                _flush(word, tokens)
                tokens.append(char)
            elif unicode_table.is_word_char(char):
                word.append(char)
            else:
                _flush(word, tokens)
        _flush(word, tokens)
        return tokens


def is_cjk(char: str) -> bool:
    """True for characters of scripts written without spaces between words."""
    code = ord(char)
    return any(low <= code <= high for low, high in CJK_RANGES)


def rouge_l(reference: str, prediction: str) -> float:
    """ROUGE-L F-measure with the Unicode tokenizer (no stemming: stemmers are English-only)."""
    return float(_ROUGE.score(reference, prediction)["rougeL"].fmeasure)


def _flush(word: list[str], tokens: list[str]) -> None:
    if word:
        tokens.append("".join(word))
        word.clear()


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def _bootstrap(
    data: tuple[np.ndarray[Any, Any], ...],
    statistic: Callable[..., float],
    n_resamples: int,
    seed: int,
    confidence: float,
) -> Interval:
    """Seeded percentile bootstrap; undefined (None bounds) below two observations."""
    if len(data[0]) < MIN_BOOTSTRAP_N:
        return Interval(None, None, confidence, "bootstrap-percentile")
    result = stats.bootstrap(
        data,
        statistic,
        n_resamples=n_resamples,
        paired=True,
        vectorized=False,
        method="percentile",
        confidence_level=confidence,
        rng=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Interval(
        None if math.isnan(low) else low,
        None if math.isnan(high) else high,
        confidence,
        "bootstrap-percentile",
    )


# Hiragana + Katakana, CJK Ext-A, CJK Unified, CJK Compatibility, half-width Katakana, and the
# whole of planes 2 and 3 (noncharacters left out): the Roadmap reserves them for ideographs, so
# extensions assigned after the table's Unicode version (Ext H, I, J...) are CJK all the same.
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x3040, 0x30FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFF9F),
    (0x20000, 0x2FFFD),
    (0x30000, 0x3FFFD),
)
_ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=UnicodeTokenizer())
