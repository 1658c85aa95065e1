"""Evaluate the variants (base, adapted, base + retrieval) on every benchmark.

Generation tasks go through the served model: `transformers serve` on the model's folder,
reached by `dapt_eval`'s OpenAI-compatible provider (chat completions, the model's own chat
template), so the artifact that would be deployed is the one measured. Scoring modes that need
prompt log-likelihoods (mcq `cloze`) read the same folder's files in this process
(`dapt_eval.batch`'s engine, batched, contexts shared between an item's choices), because the
server does not return them; the record's provider says which path produced it
(`openai` or `local-hf`), and both carry the folder's content hash as the revision.

Every unit is content-addressed (`dapt_eval.results.cache_key`): a rerun computes only what
is missing, and no server is started for a model whose units are all done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dapt_eval.benchmark import Benchmark, load_benchmark
from dapt_eval.commands import run_and_report
from dapt_eval.judge import Judge
from dapt_eval.mcq import McqMode, cloze_continuations, shuffle_choices
from dapt_eval.providers.base import DecodingParams, Generation, Oracle, Provider
from dapt_eval.providers.factory import ProviderSpec, build_provider
from dapt_eval.providers.openai_compat import OpenAICompatibleProvider
from dapt_eval.providers.retrieval import PassageIndex, RetrievalProvider
from dapt_eval.results import ResultStore
from dapt_eval.runner import RunConfig, Unit, plan_units, unit_prompt
from dapt_eval.schemas import McqItem

from dapt_local.config import AdaptConfig, BenchmarkRun
from dapt_local.serve import free_port, serving

LOGLIK_MODES = {McqMode.CLOZE.value, McqMode.LOGLIK.value}


@dataclass(frozen=True)
class Variant:
    """One thing evaluated: a model folder, its identity, and retrieval or not."""

    key: str
    """`base`, `adapted` or `base+retrieval`: names the run folders and the report rows."""
    model_dir: Path
    model_id: str
    revision: str
    retrieval: PassageIndex | None = None
    k: int = 0


@dataclass
class EvalRun:
    """Where one variant's run of one benchmark is, and its report."""

    variant: str
    benchmark: str
    out_dir: Path
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The run's label in compare reports: `provider:model_id@revision`."""
        model = self.report["model"]
        return f"{model['provider']}:{model['model_id']}@{model['revision']}"


class LazyLocalModel(Provider):
    """Log-likelihoods from a model folder, loaded only when a unit needs computing (a rerun
    whose units are all cached loads no weights)."""

    name = "local-hf"

    def __init__(self, model_dir: Path, model_id: str, revision: str, batch_size: int) -> None:
        self.model_dir, self.model_id, self.revision = model_dir, model_id, revision
        self.batch_size = batch_size
        self._inner: Any = None
        self._lock = threading.Lock()

    def _model(self) -> Any:
        with self._lock:
            if self._inner is None:
                from dapt_eval.batch.engine import HFEngine  # noqa: PLC0415 - loads torch
                from dapt_eval.batch.job import LocalHFProvider  # noqa: PLC0415

                engine = HFEngine.load(self.model_dir, "cpu", self.batch_size)
                engine.model.to(dtype=_bf16())  # like the server: bf16 on this CPU
                self._inner = LocalHFProvider(engine, self.model_id, self.revision)
            return self._inner

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        result: Generation = self._model().generate(prompt, params, oracle)
        return result

    @property
    def supports_loglik(self) -> bool:
        return True

    def loglik(
        self, prompt: str, continuations: Sequence[str], oracle: Oracle | None = None
    ) -> list[float]:
        scores: list[float] = self._model().loglik(prompt, continuations, oracle)
        return scores

    def prime(self, requests: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Compute many units' log-likelihoods in batches ahead of the runner."""
        self._model().prime_loglik_requests(requests)


def _bf16() -> Any:
    import torch  # noqa: PLC0415

    return torch.bfloat16


def evaluate_variants(
    config: AdaptConfig,
    variants: Sequence[Variant],
    out_root: Path,
    progress: Callable[[int], None],
    total: Callable[[int], None],
) -> list[EvalRun]:
    """Every benchmark for every variant, one served model at a time. `total(n)` is called
    once with the number of units still to compute, `progress(1)` after each of them."""
    benchmarks = {
        name: load_benchmark(Path(run.path)) for name, run in config.evaluate.benchmarks.items()
    }
    judge = _judge(config)
    plans: list[Plan] = []
    ports: dict[Path, int] = {}
    for variant in variants:
        port = ports.setdefault(variant.model_dir, free_port(config.serve.host))
        base_url = f"http://{config.serve.host}:{port}"
        for name, run in config.evaluate.benchmarks.items():
            plan = Plan(
                variant=variant,
                benchmark=name,
                run=run,
                provider=_provider(config, variant, run, base_url),
                run_config=_run_config(config, variant, name, run),
                out_dir=out_root / variant.key / name,
            )
            plan.pending = _pending_units(benchmarks[name], plan, judge)
            plans.append(plan)
    total(sum(len(p.pending) for p in plans))
    runs: list[EvalRun] = []
    for model_dir, port in ports.items():
        mine = [p for p in plans if p.variant.model_dir == model_dir]
        if any(p.pending and p.run.mode not in LOGLIK_MODES for p in mine):
            settings = config.serve.model_copy(update={"port": port})
            log = out_root / "serve" / f"{mine[0].variant.key}.log"
            with serving(model_dir, settings, log):
                runs += [_run(p, benchmarks[p.benchmark], judge, progress) for p in mine]
        else:
            runs += [_run(p, benchmarks[p.benchmark], judge, progress) for p in mine]
    return runs


@dataclass
class Plan:
    """One (variant, benchmark) run before it runs: its provider and the units it lacks."""

    variant: Variant
    benchmark: str
    run: BenchmarkRun
    provider: Provider
    run_config: RunConfig
    out_dir: Path
    pending: list[Unit] = field(default_factory=list)


def _pending_units(benchmark: Benchmark, plan: Plan, judge: Judge | None) -> list[Unit]:
    _, _, pending = plan_units(
        benchmark, plan.provider, plan.run_config, ResultStore(plan.out_dir), judge
    )
    return pending


def _run(
    plan: Plan, benchmark: Benchmark, judge: Judge | None, progress: Callable[[int], None]
) -> EvalRun:
    if plan.pending and plan.run.mode in LOGLIK_MODES:
        _prime(benchmark, plan)
    _, report = run_and_report(
        Path(plan.run.path),
        plan.provider,
        plan.run_config,
        plan.out_dir,
        judge,
        lambda _record: progress(1),
    )
    return EvalRun(plan.variant.key, plan.benchmark, plan.out_dir, report)


def _prime(benchmark: Benchmark, plan: Plan) -> None:
    """Batch every pending cloze unit's log-likelihoods before the runner asks one by one."""
    provider = plan.provider
    augment = provider.augment if isinstance(provider, RetrievalProvider) else _same
    local = provider.inner if isinstance(provider, RetrievalProvider) else provider
    if not isinstance(local, LazyLocalModel) or plan.run.mode != McqMode.CLOZE.value:
        return
    seed = plan.run_config.decoding.seed
    requests = []
    for item, prompt, _ in plan.pending:
        assert isinstance(item, McqItem), "the cloze mode is an mcq mode"
        text = augment(unit_prompt(benchmark, item, prompt, seed))
        requests.append((text, cloze_continuations(shuffle_choices(item, seed).choices)))
    local.prime(requests)


def _same(prompt: str) -> str:
    return prompt


def _provider(config: AdaptConfig, variant: Variant, run: BenchmarkRun, base_url: str) -> Provider:
    inner: Provider
    if run.mode in LOGLIK_MODES:
        inner = LazyLocalModel(
            variant.model_dir, variant.model_id, variant.revision, config.evaluate.batch_size
        )
    else:
        inner = OpenAICompatibleProvider(
            base_url,
            variant.model_id,
            variant.revision,
            loglik_supported=False,
            request_model=str(variant.model_dir),
        )
    if variant.retrieval is None:
        return inner
    return RetrievalProvider(inner, variant.retrieval, variant.k)


def _run_config(config: AdaptConfig, variant: Variant, name: str, run: BenchmarkRun) -> RunConfig:
    return RunConfig(
        run_id=f"{config.name}-{variant.key}-{name}",
        decoding=DecodingParams(temperature=0.0, max_tokens=run.max_tokens),
        mode=run.mode,
        concurrency=config.evaluate.concurrency,
        sample=run.sample,
        sample_seed=config.evaluate.sample_seed,
    )


def _judge(config: AdaptConfig) -> Judge | None:
    if config.evaluate.judge is None:
        return None
    return Judge(build_provider(ProviderSpec.model_validate(config.evaluate.judge)))
