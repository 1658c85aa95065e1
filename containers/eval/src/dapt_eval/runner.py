"""Local runner: evaluate every (item, prompt) of a benchmark with one provider.

Each unit of work has a content-addressed cache key; units whose record is already finished
(ok or unparseable) are skipped, so an identical rerun makes no provider calls and an
interrupted run resumes where it stopped. `errored` records are retried.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from dapt_eval import unicode_table
from dapt_eval.benchmark import Benchmark
from dapt_eval.config_errors import ConfigError
from dapt_eval.constants import QA_WRONG_ANSWER, SUMMARY_FALLBACK_CHARS
from dapt_eval.hashing import item_sha256
from dapt_eval.judge import Judge, VerdictLabel
from dapt_eval.mcq import (
    McqMode,
    cloze_continuations,
    cloze_normalized,
    loglik_continuations,
    parse_letter,
    shuffle_choices,
)
from dapt_eval.metrics import rouge_l
from dapt_eval.prompts import CHOICE_LETTERS, PromptSpec, format_choices, render
from dapt_eval.providers.base import DecodingParams, Oracle, Provider, ProviderError
from dapt_eval.providers.limiter import DEFAULT_FLOOR, ConcurrencyLimiter, LimitedProvider
from dapt_eval.providers.retry import RetryPolicy, call_with_retry
from dapt_eval.results import ItemResult, JudgeRecord, ModelRef, Store, cache_key
from dapt_eval.schemas import (
    ClassificationItem,
    Item,
    McqItem,
    QaItem,
    SummarizationItem,
    Task,
)

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
TASK_MODES: dict[Task, tuple[str, ...]] = {
    Task.QA: ("judge", "overlap"),
    Task.MCQ: (McqMode.LETTER.value, McqMode.LOGLIK.value, McqMode.CLOZE.value),
    Task.CLASSIFICATION: ("label",),
    Task.SUMMARIZATION: ("rouge_l",),
}
QA_OVERLAP = "overlap"
"""The qa mode without a judge: ROUGE-L F1 of the answer against the reference answer. A
lexical proxy, reported as such ("reference overlap"), never as a judge pass rate."""


class RunConfigError(ConfigError):
    """The run cannot start: incompatible task, mode, provider or judge, or a bad RunConfig."""

    what = "run"


RUN_SOURCE = "<run>"
"""The source of a run's config errors: a RunConfig (built from flags or by a caller, never read
from a file) together with the benchmark, provider and judge it is run with."""


@dataclass
class RunConfig:
    """Everything that, with the benchmark and provider, determines a run's results.

    A dataclass (it holds a RetryPolicy with an injectable sleep and random generator), so its
    fields are documented by attribute docstrings rather than pydantic descriptions."""

    run_id: str
    """Identifier recorded in every result and in `run.json` (not part of the cache key)."""
    decoding: DecodingParams = field(default_factory=DecodingParams)
    """Sampling settings sent to the provider with every prompt (part of the cache key)."""
    mode: str | None = None
    """Scoring mode, one of the task's `TASK_MODES`; None picks the task's first mode."""
    concurrency: int = DEFAULT_CONCURRENCY
    """Units (item, prompt) evaluated at the same time, in threads, and the ceiling of the
    provider calls in flight: the run starts there and, when the provider throttles, lowers
    it (AIMD, `providers.limiter`), raising it again while calls succeed."""
    min_concurrency: int = DEFAULT_FLOOR
    """The floor of the provider calls in flight, however often the provider throttles;
    equal to `concurrency`, the concurrency is fixed."""
    include_format_spread: bool = False
    """Also evaluate the manifest's prompt variants, not only its primary prompt."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retries of throttled and transient provider errors (judge calls have their own)."""
    sample: int | None = None
    """Evaluate only this many items (all when None or larger than the benchmark), chosen by
    `sample_items`: the same items for every model, so paired comparisons stay paired."""
    sample_seed: int = 0
    """Seed of `sample_items`' choice of items when `sample` is set."""

    def __post_init__(self) -> None:
        problems = []
        if self.concurrency < 1:
            problems.append(f"concurrency = {self.concurrency}: must be >= 1")
        if not 1 <= self.min_concurrency <= max(1, self.concurrency):
            problems.append(
                f"min_concurrency = {self.min_concurrency}: must be >= 1 and <= concurrency "
                f"({self.concurrency})"
            )
        if self.sample is not None and self.sample < 1:
            problems.append(f"sample = {self.sample}: must be >= 1 or None")
        if problems:
            raise RunConfigError(RUN_SOURCE, problems)


def sample_items(items: Sequence[Item], n: int | None, seed: int = 0) -> list[Item]:
    """`n` items in file order, chosen by the order of sha256("{seed}:{id}"): a subset that
    depends only on the seed and the item ids (not on the model, nor on the file order), so
    a larger sample contains a smaller one and cached results are reused."""
    if n is None or n >= len(items):
        return list(items)
    ranked = sorted(items, key=lambda i: hashlib.sha256(f"{seed}:{i.id}".encode()).hexdigest())
    chosen = {item.id for item in ranked[:n]}
    return [item for item in items if item.id in chosen]


@dataclass
class RunSummary:
    """Counts a user reads after a run; completion = finished / total units."""

    total: int = 0
    skipped: int = 0
    ok: int = 0
    errored: int = 0
    unparseable: int = 0
    quarantined_rows: int = 0

    @property
    def completion_rate(self) -> float:
        """Share of units with a finished record (ok or unparseable), cached ones included."""
        return (self.ok + self.unparseable) / self.total if self.total else 0.0

    def to_json(self) -> dict[str, Any]:
        """Counts plus the completion rate, as written to `run.json`."""
        return {
            "total": self.total,
            "skipped_cached": self.skipped,
            "ok": self.ok,
            "errored": self.errored,
            "unparseable": self.unparseable,
            "quarantined_rows": self.quarantined_rows,
            "completion_rate": self.completion_rate,
        }


@dataclass(frozen=True)
class Outcome:
    """What evaluating one unit produced, before it is wrapped into an ItemResult."""

    status: Literal["ok", "errored", "unparseable"]
    prediction: str | None = None
    correct: bool | None = None
    score: float | None = None
    judge: JudgeRecord | None = None
    error: str | None = None
    latency_ms: float | None = None
    usage: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0


def resolve_mode(
    task: Task,
    requested: str | None,
    provider: Provider,
    judge: Judge | None,
    has_cloze_prompt: bool = True,
) -> str:
    """Pick and check the scoring mode; refuse rather than fall back silently (every problem
    of the combination at once, each naming the run's `mode`)."""
    allowed = TASK_MODES[task]
    mode = requested or allowed[0]
    problems = []
    if mode not in allowed:
        problems.append(
            f"mode = '{mode}': not valid for task '{task.value}'; use one of {list(allowed)}"
        )
    if mode in (McqMode.LOGLIK, McqMode.CLOZE) and not provider.supports_loglik:
        problems.append(
            f"mode = '{mode}': needs log-likelihoods but provider '{provider.name}' "
            f"(model '{provider.model_id}') does not support them; use mode 'letter'"
        )
    if mode == McqMode.CLOZE and not has_cloze_prompt:
        problems.append("mode = 'cloze': needs a 'cloze_prompt' in the benchmark manifest")
    if task is Task.QA and mode == "judge" and judge is None:
        problems.append(
            "mode = 'judge': task 'qa' is scored by a judge: configure a judge provider, or use "
            f"mode '{QA_OVERLAP}' (reference overlap, ROUGE-L) when there is none"
        )
    if problems:
        raise RunConfigError(RUN_SOURCE, problems)
    return mode


def run_benchmark(
    benchmark: Benchmark,
    provider: Provider,
    config: RunConfig,
    store: Store,
    judge: Judge | None = None,
    progress: Callable[[ItemResult], None] | None = None,
) -> RunSummary:
    """Evaluate all units not yet finished in `store`, `config.concurrency` at a time, with
    the model's calls (and the judge's, each provider apart) kept under an adaptive limit;
    `progress` is called with each new record (from the calling thread)."""
    mode, summary, pending = plan_units(benchmark, provider, config, store, judge)
    unit_judge = judge if benchmark.manifest.task is Task.QA and mode == "judge" else None
    provider = limited(provider, config)
    if unit_judge is not None:
        unit_judge = replace(unit_judge, provider=limited(unit_judge.provider, config))

    def work(unit: tuple[Item, PromptSpec, str]) -> ItemResult:
        item, prompt, key = unit
        outcome = evaluate_unit(benchmark, item, prompt, provider, config, mode, unit_judge)
        result = _to_result(
            benchmark, item, prompt, provider, config, mode, unit_judge, key, outcome
        )
        store.put(result)
        return result

    with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
        for result in pool.map(work, pending):
            _count(summary, result.status)
            if progress is not None:
                progress(result)
    return summary


def limited(provider: Provider, config: RunConfig) -> LimitedProvider:
    """`provider` behind its own adaptive limit between the run's floor and ceiling."""
    return LimitedProvider(provider, ConcurrencyLimiter(config.min_concurrency, config.concurrency))


Unit = tuple[Item, PromptSpec, str]
"""One (item, prompt) to evaluate and its cache key."""


def plan_units(
    benchmark: Benchmark,
    provider: Provider,
    config: RunConfig,
    store: Store,
    judge: Judge | None = None,
) -> tuple[str, RunSummary, list[Unit]]:
    """The scoring mode, the summary of cached units, and the units still to run."""
    manifest = benchmark.manifest
    mode = resolve_mode(
        manifest.task, config.mode, provider, judge, manifest.cloze_prompt is not None
    )
    unit_judge = judge if manifest.task is Task.QA and mode == "judge" else None
    summary = RunSummary(quarantined_rows=len(benchmark.load.quarantined))
    pending: list[Unit] = []
    items = sample_items(benchmark.items, config.sample, config.sample_seed)
    for prompt in manifest.prompts_for(mode, config.include_format_spread):
        for item in items:
            key = unit_key(benchmark, item, prompt, provider, config.decoding, mode, unit_judge)
            summary.total += 1
            existing = store.get(key)
            if existing is not None and existing.status in ("ok", "unparseable"):
                summary.skipped += 1
                _count(summary, existing.status)
            else:
                pending.append((item, prompt, key))
    log.info("%d units, %d cached, %d to run", summary.total, summary.skipped, len(pending))
    return mode, summary, pending


def unit_prompt(benchmark: Benchmark, item: Item, prompt: PromptSpec, seed: int) -> str:
    """The exact text sent to the model for one unit (MCQ choices shuffled by `seed`)."""
    if isinstance(item, McqItem):
        shuffled = shuffle_choices(item, seed)
        return render(
            prompt, {"question": item.question, "choices": format_choices(shuffled.choices)}
        )
    if isinstance(item, ClassificationItem):
        labels = benchmark.manifest.labels or []
        return render(prompt, {"text": item.text, "labels": ", ".join(labels)})
    if isinstance(item, SummarizationItem):
        return render(prompt, {"document": item.document})
    return render(prompt, {"question": item.question})


def unit_key(
    benchmark: Benchmark,
    item: Item,
    prompt: PromptSpec,
    provider: Provider,
    decoding: DecodingParams,
    mode: str,
    judge: Judge | None,
) -> str:
    """The content-addressed cache key of one (item, prompt) evaluation."""
    return cache_key(
        benchmark=benchmark.manifest.name,
        benchmark_version=benchmark.manifest.version,
        item_id=item.id,
        item_sha256=item_sha256(item.model_dump(mode="json", exclude_unset=True)),
        prompt_id=prompt.id,
        prompt_version=prompt.version,
        model=ModelRef(**provider.identity()),
        decoding=decoding.cache_dict(),
        mode=mode,
        judge=judge.describe() if judge else None,
    )


def evaluate_unit(
    benchmark: Benchmark,
    item: Item,
    prompt: PromptSpec,
    provider: Provider,
    config: RunConfig,
    mode: str,
    judge: Judge | None,
) -> Outcome:
    """Dispatch to the task's evaluator; provider failures become `errored` outcomes."""
    try:
        text = unit_prompt(benchmark, item, prompt, config.decoding.seed)
        if isinstance(item, McqItem):
            return _evaluate_mcq(item, text, provider, config, mode)
        if isinstance(item, ClassificationItem):
            return _evaluate_classification(
                item, text, provider, config, benchmark.manifest.labels or []
            )
        if isinstance(item, SummarizationItem):
            return _evaluate_summarization(item, text, provider, config)
        if mode == QA_OVERLAP:
            return _evaluate_qa_overlap(item, text, provider, config)
        assert judge is not None, "resolve_mode guarantees a judge for qa"
        return _evaluate_qa(item, text, provider, config, judge)
    except ProviderError as err:
        return Outcome(status="errored", error=str(err), attempts=getattr(err, "attempts", 0))


def _generate(
    provider: Provider, prompt: str, config: RunConfig, oracle: Oracle
) -> tuple[str, Outcome]:
    attempted = call_with_retry(
        lambda: provider.generate(prompt, config.decoding, oracle), config.retry
    )
    generation = attempted.value
    base = Outcome(
        status="ok",
        prediction=generation.text,
        latency_ms=generation.latency_ms,
        usage={
            "input_tokens": generation.usage.input_tokens,
            "output_tokens": generation.usage.output_tokens,
        },
        attempts=attempted.attempts,
    )
    return generation.text, base


def _evaluate_mcq(
    item: McqItem, text: str, provider: Provider, config: RunConfig, mode: str
) -> Outcome:
    shuffled = shuffle_choices(item, config.decoding.seed)
    answer = shuffled.answer_letter
    details = {
        "permutation": shuffled.permutation,
        "answer_letter": answer,
        "shuffle_seed": config.decoding.seed,
    }
    if mode == McqMode.CLOZE:
        return _evaluate_cloze(shuffled.choices, text, provider, config, answer, details)
    if mode == McqMode.LOGLIK:
        continuations = loglik_continuations(len(shuffled.choices))
        oracle = Oracle(f" {answer}", tuple(c for c in continuations if c != f" {answer}"))
        attempted = call_with_retry(
            lambda: provider.loglik(text, continuations, oracle), config.retry
        )
        scores = attempted.value
        best = CHOICE_LETTERS[max(range(len(scores)), key=scores.__getitem__)]
        details["logliks"] = scores
        return Outcome(
            status="ok",
            prediction=best,
            correct=best == answer,
            details=details,
            attempts=attempted.attempts,
        )
    wrong = tuple(c for c in CHOICE_LETTERS[: len(shuffled.choices)] if c != answer)
    raw, base = _generate(provider, text, config, Oracle(answer, wrong))
    letter = parse_letter(raw)
    if letter is None:
        return _replace(
            base,
            status="unparseable",
            error=f"reply is not a single letter A-D: {raw[:80]!r}",
            details=details,
        )
    return _replace(base, correct=letter == answer, details={**details, "parsed_letter": letter})


def _evaluate_cloze(
    choices: list[str],
    text: str,
    provider: Provider,
    config: RunConfig,
    answer: str,
    details: dict[str, Any],
) -> Outcome:
    """Score each choice's text after the cloze prompt; the best per-character score wins."""
    continuations = cloze_continuations(choices)
    correct = continuations[CHOICE_LETTERS.index(answer)]
    oracle = Oracle(correct, tuple(c for c in continuations if c != correct))
    attempted = call_with_retry(lambda: provider.loglik(text, continuations, oracle), config.retry)
    sums = attempted.value
    normalized = cloze_normalized(sums, choices)
    best = CHOICE_LETTERS[max(range(len(normalized)), key=normalized.__getitem__)]
    return Outcome(
        status="ok",
        prediction=best,
        correct=best == answer,
        details={**details, "logliks": sums, "normalized": normalized, "norm": "per_char"},
        attempts=attempted.attempts,
    )


def _evaluate_classification(
    item: ClassificationItem,
    text: str,
    provider: Provider,
    config: RunConfig,
    labels: list[str],
) -> Outcome:
    oracle = Oracle(item.label, tuple(label for label in labels if label != item.label))
    raw, base = _generate(provider, text, config, oracle)
    label = parse_label(raw, labels)
    if label is None:
        return _replace(
            base,
            status="unparseable",
            error=f"reply is not one of the labels {labels}: {raw[:80]!r}",
        )
    return _replace(
        base, correct=label == item.label, details={"parsed_label": label, "gold_label": item.label}
    )


def parse_label(text: str, labels: list[str]) -> str | None:
    """The label the reply names: exact match after trimming, case-folding and a final '.'.

    Deliberately strict: "probably billing" is unparseable, not "billing"; guessing a label out
    of prose would inflate accuracy for models that ignore the instruction.
    """
    candidate = unicode_table.casefold(text.strip().rstrip(".").strip())
    matches = [label for label in labels if unicode_table.casefold(label) == candidate]
    return matches[0] if matches else None


def _evaluate_summarization(
    item: SummarizationItem, text: str, provider: Provider, config: RunConfig
) -> Outcome:
    oracle = Oracle(item.reference_summary, (item.document[:SUMMARY_FALLBACK_CHARS],))
    raw, base = _generate(provider, text, config, oracle)
    return _replace(base, score=rouge_l(item.reference_summary, raw))


def _evaluate_qa(
    item: QaItem, text: str, provider: Provider, config: RunConfig, judge: Judge
) -> Outcome:
    raw, base = _generate(provider, text, config, Oracle(item.reference_answer, (QA_WRONG_ANSWER,)))
    simulated: VerdictLabel = "correct" if _same_text(raw, item.reference_answer) else "incorrect"
    verdict = judge.judge(item.question, item.reference_answer, raw, simulated=simulated)
    described = judge.describe()
    record = JudgeRecord(
        model=described["model"],
        prompt_version=described["prompt_version"],
        verdict=verdict.verdict,
        reason=verdict.reason,
        raw_reply=verdict.raw,
        candidate_chars=verdict.candidate_chars,
        candidate_truncated=verdict.candidate_truncated,
    )
    if verdict.status != "ok":
        return _replace(base, status=verdict.status, judge=record, error=verdict.error)
    return _replace(base, correct=verdict.verdict == "correct", judge=record)


def _evaluate_qa_overlap(item: QaItem, text: str, provider: Provider, config: RunConfig) -> Outcome:
    raw, base = _generate(provider, text, config, Oracle(item.reference_answer, (QA_WRONG_ANSWER,)))
    return _replace(base, score=rouge_l(item.reference_answer, raw))


def _same_text(a: str, b: str) -> bool:
    fold = unicode_table.casefold
    return " ".join(fold(a).split()) == " ".join(fold(b).split())


def _replace(base: Outcome, **changes: Any) -> Outcome:
    values = {**base.__dict__, **changes}
    return Outcome(**values)


def _count(summary: RunSummary, status: str) -> None:
    if status == "ok":
        summary.ok += 1
    elif status == "unparseable":
        summary.unparseable += 1
    else:
        summary.errored += 1


def _to_result(
    benchmark: Benchmark,
    item: Item,
    prompt: PromptSpec,
    provider: Provider,
    config: RunConfig,
    mode: str,
    judge: Judge | None,
    key: str,
    outcome: Outcome,
) -> ItemResult:
    manifest = benchmark.manifest
    return ItemResult(
        run_id=config.run_id,
        benchmark=manifest.name,
        benchmark_version=manifest.version,
        item_id=item.id,
        task=manifest.task.value,
        model=ModelRef(**provider.identity()),
        decoding=config.decoding.cache_dict(),
        prompt_id=prompt.id,
        prompt_version=prompt.version,
        mode=mode,
        status=outcome.status,
        prediction=outcome.prediction,
        correct=outcome.correct,
        score=outcome.score,
        judge=outcome.judge,
        error=outcome.error,
        cache_key=key,
        latency_ms=outcome.latency_ms,
        usage=outcome.usage,
        details=outcome.details,
        attempts=outcome.attempts,
    )
