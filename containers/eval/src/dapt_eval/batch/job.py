"""The GPU batch job: evaluate a model that is not behind an endpoint, writing the same records.

setup (inputs, model) -> plan the units still to run (resume by cache key) -> compute every
pending prompt in batches on the GPU -> score them with the local runner's own code, through a
provider that answers from the batch results -> write records (local run dir or S3) -> report.

Scoring, cache keys and records are the runner's: the batch job only changes *how* model
outputs are computed (batched on one device instead of one request per unit).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dapt_eval.batch.config import BatchConfig
from dapt_eval.batch.files import content_revision, local_dir
from dapt_eval.benchmark import load_benchmark
from dapt_eval.commands import run_and_report
from dapt_eval.judge import Judge
from dapt_eval.mcq import McqMode, cloze_continuations, loglik_continuations, shuffle_choices
from dapt_eval.prompts import CHOICE_LETTERS
from dapt_eval.providers.base import (
    DecodingParams,
    Generation,
    Oracle,
    Provider,
    TransientError,
    Usage,
)
from dapt_eval.results import ResultStore, Store
from dapt_eval.runner import (
    RunConfig,
    RunSummary,
    Unit,
    plan_units,
    run_benchmark,
    unit_prompt,
)
from dapt_eval.s3store import S3ResultStore
from dapt_eval.schemas import McqItem

log = logging.getLogger(__name__)

PROVIDER_NAME = "local-hf"


class LocalHFProvider(Provider):
    """A provider over an `HFEngine`, answering from results computed ahead in batches.

    `prime_*` computes many prompts at once; `generate`/`loglik` then return those results
    (or compute one prompt alone if it was not primed). Failures become TransientError, so
    the unit is recorded `errored` and retried by the next run.
    """

    name = PROVIDER_NAME

    def __init__(self, engine: Any, model_id: str, revision: str) -> None:
        self.engine = engine
        self.model_id = model_id
        self.revision = revision
        self._generations: dict[tuple[str, int, tuple[str, ...]], Generation] = {}
        self._logliks: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        self._lock = threading.Lock()  # one forward pass at a time on the device

    @property
    def supports_loglik(self) -> bool:
        """The model's own log-probabilities are available."""
        return True

    def prime_generations(self, prompts: Sequence[str], params: DecodingParams) -> None:
        """Generate every prompt in batches, keeping the completions for `generate`."""
        unique = list(dict.fromkeys(prompts))
        started = time.perf_counter()
        with self._lock:
            completions = self.engine.generate(unique, params.max_tokens, params.stop)
        per_prompt_ms = (time.perf_counter() - started) * 1000 / max(1, len(unique))
        for prompt, completion in zip(unique, completions, strict=True):
            self._generations[(prompt, params.max_tokens, params.stop)] = self._generation(
                completion, per_prompt_ms
            )

    def prime_logliks(self, prompts: Sequence[str], continuations: Sequence[str]) -> None:
        """Score every (prompt, continuation) pair in batches, keeping the sums for `loglik`."""
        self.prime_loglik_requests([(p, continuations) for p in prompts])

    def prime_loglik_requests(self, requests: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Score each prompt's own continuations (e.g. an MCQ item's choices in the cloze
        mode) in batches, keeping the sums for `loglik`."""
        unique = list(dict.fromkeys((prompt, tuple(conts)) for prompt, conts in requests))
        flat = [(prompt, cont) for prompt, conts in unique for cont in conts]
        with self._lock:
            scores = self.engine.loglik(flat)
        cursor = 0
        for prompt, conts in unique:
            self._logliks[(prompt, conts)] = scores[cursor : cursor + len(conts)]
            cursor += len(conts)

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        """The primed completion, or one computed alone (greedy; `oracle` is ignored)."""
        key = (prompt, params.max_tokens, params.stop)
        if key not in self._generations:
            try:
                self.prime_generations([prompt], params)
            except (RuntimeError, ValueError) as err:  # e.g. CUDA out of memory
                raise TransientError(f"{type(err).__name__}: {err}") from err
        return self._generations[key]

    def loglik(
        self, prompt: str, continuations: Sequence[str], oracle: Oracle | None = None
    ) -> list[float]:
        """The primed log-likelihoods, or ones computed alone."""
        key = (prompt, tuple(continuations))
        if key not in self._logliks:
            try:
                self.prime_logliks([prompt], continuations)
            except (RuntimeError, ValueError) as err:
                raise TransientError(f"{type(err).__name__}: {err}") from err
        return list(self._logliks[key])

    def _generation(self, completion: Any, latency_ms: float) -> Generation:
        return Generation(
            text=completion.text,
            usage=Usage(completion.input_tokens, completion.output_tokens),
            latency_ms=latency_ms,
            provider=self.name,
            model=self.model_id,
            revision=self.revision,
        )


@dataclass(frozen=True)
class BatchOutcome:
    """What the job did: the runner's summary, where records went, and the report if local."""

    summary: RunSummary
    identity: dict[str, str]
    report: dict[str, Any] | None


def run_batch_job(
    config: BatchConfig, judge: Judge | None = None, s3_client: Any | None = None
) -> BatchOutcome:
    """setup -> plan -> compute in batches -> score and write -> report (local runs)."""
    from dapt_eval.batch.engine import HFEngine  # noqa: PLC0415 - torch loads only here

    benchmark_dir = local_dir(config.benchmark_uri, config.scratch_dir / "benchmark", s3_client)
    model_dir = local_dir(config.model_uri, config.scratch_dir / "model", s3_client)
    engine = HFEngine.load(model_dir, config.device, config.batch_size)
    provider = LocalHFProvider(
        engine,
        model_id=config.model_id or _model_name(config.model_uri),
        revision=config.revision or content_revision(model_dir),
    )
    log.info("model %s on %s", provider.identity(), engine.device)
    return evaluate(provider, config, benchmark_dir, judge, s3_client)


def evaluate(
    provider: LocalHFProvider,
    config: BatchConfig,
    benchmark_dir: Path,
    judge: Judge | None = None,
    s3_client: Any | None = None,
) -> BatchOutcome:
    """Prime the provider with every pending unit, then run the runner through it."""
    run_config = RunConfig(
        run_id=config.run_id or str(uuid.uuid4()),
        decoding=config.decoding,
        mode=config.mode,
        concurrency=1,  # results are precomputed; the device is used by one batch at a time
        include_format_spread=config.include_format_spread,
    )
    benchmark = load_benchmark(benchmark_dir)
    store: Store = (
        S3ResultStore(config.eval_bucket, client=s3_client)
        if config.eval_bucket
        else ResultStore(config.out_dir or Path("."))
    )
    mode, summary, pending = plan_units(benchmark, provider, run_config, store, judge)
    prompts = [
        unit_prompt(benchmark, item, prompt, run_config.decoding.seed)
        for item, prompt, _ in pending
    ]
    log.info("%d units to run, %d cached", len(pending), summary.skipped)
    try:
        if prompts and mode == McqMode.LOGLIK:
            provider.prime_logliks(prompts, loglik_continuations(len(CHOICE_LETTERS)))
        elif prompts and mode == McqMode.CLOZE:
            provider.prime_loglik_requests(cloze_requests(pending, prompts, run_config.decoding))
        elif prompts:
            provider.prime_generations(prompts, run_config.decoding)
    except (RuntimeError, ValueError):  # e.g. CUDA out of memory on one long batch
        log.exception("batched pass failed; units are computed one at a time instead")
    if config.out_dir is not None:
        summary, report = run_and_report(benchmark_dir, provider, run_config, config.out_dir, judge)
        return BatchOutcome(summary, provider.identity(), report)
    summary = run_benchmark(benchmark, provider, run_config, store, judge)
    return BatchOutcome(summary, provider.identity(), None)


def cloze_requests(
    pending: Sequence[Unit], prompts: Sequence[str], decoding: DecodingParams
) -> list[tuple[str, list[str]]]:
    """(prompt, continuations) of each pending cloze unit: its choices in the shown order,
    exactly as the runner will ask for them."""
    requests = []
    for (item, _, _), prompt in zip(pending, prompts, strict=True):
        assert isinstance(item, McqItem), "the cloze mode is an mcq mode"
        choices = shuffle_choices(item, decoding.seed).choices
        requests.append((prompt, cloze_continuations(choices)))
    return requests


def _model_name(uri: str) -> str:
    return Path(uri.rstrip("/")).name or uri
