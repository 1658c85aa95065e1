"""The experiment config: one YAML file, validated as a whole, every problem reported at once.

An experiment is a chain of stages (e.g. ``dapt`` with full weights, then ``sft`` with LoRA on
the ``dapt`` output). Each stage carries its own model, data, method, optimisation and
checkpoint settings; ``output`` and ``seed`` are shared.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dapt_trainer.storage import read_text

NAME_RULE: dict[str, Any] = json.loads(
    Path(__file__).with_name("names.json").read_text(encoding="utf-8")
)
"""The naming rule of experiment and run names (``names.json``; the stacks and CLIs read it too)."""


def name_problem(name: str) -> str | None:
    """Why ``name`` breaks the naming rule, or None."""
    if len(name) > NAME_RULE["maxLength"] or re.fullmatch(NAME_RULE["pattern"], name) is None:
        return f"{name!r} must be {NAME_RULE['rule']}"
    return None


class ConfigError(ValueError):
    """A config failed validation; ``problems`` lists every one as `key.path = value: rule`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"Invalid trainer config '{source}' ({len(problems)} problem(s)):\n{lines}"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """Where the starting weights come from: exactly one of ``path`` and ``from_stage``."""

    path: str | None = None
    """Local directory or ``s3://`` prefix holding a Hugging Face checkpoint (config, tokenizer,
    safetensors). Nothing is fetched from a model hub."""
    from_stage: str | None = None
    """Name of an earlier stage of this experiment whose merged output is the starting point."""

    @model_validator(mode="after")
    def _one_origin(self) -> ModelConfig:
        if (self.path is None) == (self.from_stage is None):
            raise ValueError("set exactly one of 'path' and 'from_stage'")
        return self


class SourceConfig(_Strict):
    """One data source: files of one kind, one mixing weight, one group."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """Short name used in metrics (held-out loss per source) and the quarantine report."""
    kind: Literal["completion", "instruction"]
    """``completion``: raw text for continued pretraining. ``instruction``: prompt/response or
    chat ``messages`` rows, rendered with the model's chat template; loss on responses only."""
    paths: list[str] = Field(default_factory=list)
    """JSONL (``.jsonl``, ``.json``) or Parquet (``.parquet``) files, local or ``s3://``."""
    manifest: str | None = None
    """Optional dataset manifest (JSON with a ``files`` list) written by the data pipeline; its
    files are read in addition to ``paths``."""
    weight: float | None = Field(default=None, gt=0)
    """Relative share of training tokens (normalised within the group when ``domain_share`` is
    set, over all sources otherwise). Unset: the data-pipeline ``manifest``'s
    ``mix_probability`` (its share of training tokens), else 1."""
    group: Literal["domain", "public"] | None = None
    """Whether the source counts toward ``data.domain_share``. Unset: the data-pipeline
    ``manifest``'s ``origin``, else ``public``."""

    @property
    def share(self) -> float:
        """``weight``, or 1 where nothing set it."""
        return 1.0 if self.weight is None else self.weight

    @property
    def counts_as(self) -> Literal["domain", "public"]:
        """``group``, or ``public`` where nothing set it."""
        return self.group or "public"

    text_field: str = "text"
    """Field holding the document text of a completion row."""
    heldout_examples: int = Field(default=0, ge=0)
    """Examples kept out of training (the first N valid rows) to report held-out loss."""

    @model_validator(mode="after")
    def _has_files(self) -> SourceConfig:
        if not self.paths and self.manifest is None:
            raise ValueError("set 'paths' or 'manifest' (or both)")
        return self


class DataConfig(_Strict):
    """What a stage trains on and how examples become fixed-size rows."""

    sources: list[SourceConfig] = Field(min_length=1)
    seq_len: int = Field(default=4096, ge=8)
    """Tokens per row; longer completion documents are split, longer instruction examples
    truncated."""
    packing: bool = True
    """Pack several documents per row (attention never crosses a document boundary)."""
    pack_window: int = Field(default=64, ge=1, le=4096)
    """Documents drawn ahead and considered when filling a row: each row starts with the oldest
    and is topped up with the best-fitting others, so instruction examples (never cut) still
    fill rows. 1 packs in draw order. Shares are charged at draw time, so they still hold."""
    domain_share: float | None = Field(default=None, gt=0, lt=1)
    """Fraction of training tokens drawn from ``group: domain`` sources (e.g. 0.02)."""

    @model_validator(mode="after")
    def _groups(self) -> DataConfig:
        problems = check_groups(self, resolved=False)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def check_groups(data: DataConfig, resolved: bool) -> list[str]:
    """Unique source names; ``domain_share`` needs a domain and a public source. Before the
    manifests are read (``resolved=False``), a manifest source without an explicit group may
    still turn out to be either, so the group rule waits for ``resolve_data``."""
    names = [s.name for s in data.sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    problems = []
    if duplicates:
        problems.append(f"source names must be unique; repeated: {duplicates}")
    pending = not resolved and any(s.manifest is not None and s.group is None for s in data.sources)
    if data.domain_share is not None and not pending:
        groups = {s.counts_as for s in data.sources}
        if groups != {"domain", "public"}:
            problems.append(
                "'domain_share' needs at least one 'domain' and one 'public' source; "
                f"groups present: {sorted(groups)}"
            )
    return problems


class LoraConfig(_Strict):
    """Low-rank adapters (PEFT). High ranks (256+) are supported; consider ``rslora`` there."""

    rank: int = Field(default=256, ge=1, le=4096)
    alpha: int = Field(default=512, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS), min_length=1
    )
    dora: bool = False
    """Weight-decomposed LoRA (DoRA)."""
    rslora: bool = False
    """Scale by alpha/sqrt(rank) instead of alpha/rank (keeps high ranks learning)."""


class MethodConfig(_Strict):
    """Which weights train: all of them (``full``) or LoRA/DoRA adapters (``lora``)."""

    name: Literal["full", "lora"] = "full"
    lora: LoraConfig = Field(default_factory=LoraConfig)


class OptimizerConfig(_Strict):
    """AdamW with a warmup, then a cosine, linear or constant schedule."""

    lr: float = Field(default=2e-5, gt=0, le=1)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float | None = Field(default=1.0, gt=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _betas(self) -> OptimizerConfig:
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1); got {list(self.betas)}")
        return self


class CheckpointConfig(_Strict):
    """How often a stage saves a resumable checkpoint."""

    every_steps: int = Field(default=500, ge=1)
    keep_last: int = Field(default=2, ge=1)
    """Complete checkpoints kept; older ones are deleted after a newer one is complete."""


class StageConfig(_Strict):
    """One training stage."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    model: ModelConfig
    data: DataConfig
    method: MethodConfig = Field(default_factory=MethodConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    micro_batch_size: int = Field(default=1, ge=1)
    """Rows per forward pass per GPU."""
    grad_accum_steps: int = Field(default=1, ge=1)
    steps: int = Field(ge=1)
    """Optimizer steps."""
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log_every: int = Field(default=1, ge=1)
    eval_every: int | None = Field(default=None, ge=1)
    """Held-out loss every N steps (always at the end when any source holds examples out)."""
    eval_at_start: bool = True
    """Also measure the held-out loss of the starting weights before step 1 (metrics step 0,
    ``heldout_before.json`` and the lineage's ``heldout_loss_before``): the baseline that shows
    what training changed, e.g. how much general ability the public held-out slice lost."""

    @model_validator(mode="after")
    def _warmup(self) -> StageConfig:
        if self.optimizer.warmup_steps >= self.steps:
            raise ValueError(
                f"optimizer.warmup_steps = {self.optimizer.warmup_steps} must be < "
                f"steps = {self.steps}"
            )
        return self


class ComputeConfig(_Strict):
    """How the hardware is used; shared by all stages."""

    precision: Literal["bf16", "fp32"] = "bf16"
    """bf16 autocast (FSDP2 mixed precision when sharded) on GPU; the CPU runs fp32 unless
    ``cpu_bf16``."""
    activation_checkpointing: bool = True
    attention: Literal["auto", "flash_attention_2", "flex_attention", "sdpa", "eager"] = "auto"
    """Attention kernel (a transformers ``attn_implementation``). ``auto``: flash-attention 2 on
    GPU when the image has it (varlen: packed documents cost no masked FLOPs), else SDPA with
    the block-diagonal mask transformers derives from packed position ids."""
    compile: bool = False
    """``torch.compile`` each decoder layer."""
    cpu_bf16: bool = False
    """On a CPU (no GPU visible), also train under bf16 autocast when ``precision`` is bf16.
    x86 CPUs with AVX-512 BF16 or AMX run it about 1.6x faster than fp32 (measured on the
    development sandbox's EPYC); off by default because CPU runs are mostly tests, where fp32
    keeps losses exactly comparable."""
    peak_flops: float = Field(default=989e12, gt=0)
    """Peak FLOP/s of one accelerator at ``precision``, for MFU (989e12: H100 SXM bf16 dense)."""


class ExperimentConfig(_Strict):
    """The whole YAML file."""

    experiment: str
    """Names the job and its ``runs/<experiment>/`` prefix; the rule of ``names.json``, shared with
    the stacks and the CLIs (a run stack's role writes only under its own name)."""

    @field_validator("experiment")
    @classmethod
    def _follows_the_naming_rule(cls, value: str) -> str:
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value
    output: str | None = None
    """Local directory or ``s3://`` prefix; ``DAPT_OUTPUT`` overrides it."""
    seed: int = 0
    token_cache: str | None = None
    """Local directory or ``s3://`` prefix where tokenised sources are shared between nodes,
    instances and runs (default ``<output>/<experiment>/token-cache``). A job downloads a
    source's cache from here instead of tokenising it again; the first node publishes what it
    builds. Entries are keyed by file fingerprints and tokenizer, so sharing one prefix between
    experiments is safe."""
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    stages: list[StageConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _chain(self) -> ExperimentConfig:
        problems: list[str] = []
        seen: list[str] = []
        for i, stage in enumerate(self.stages):
            origin = stage.model.from_stage
            if origin is not None and origin not in seen:
                problems.append(
                    f"stages.{i}.model.from_stage = {origin!r}: must name an earlier stage "
                    f"(earlier: {seen})"
                )
            if stage.name in seen:
                problems.append(f"stages.{i}.name = {stage.name!r}: stage names must be unique")
            seen.append(stage.name)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def stage(self, name: str) -> StageConfig:
        return next(s for s in self.stages if s.name == name)


def parse_config(raw: Any, source: str = "<config>") -> ExperimentConfig:
    """Validate a parsed YAML document, raising ConfigError with every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"<root> = {type(raw).__name__}: must be a mapping"])
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            path = ".".join(str(p) for p in e["loc"]) or "<root>"
            value = e.get("input")
            shown = _short(value)
            problems.append(f"{path} = {shown}: {e['msg']}")
        raise ConfigError(source, problems) from None


def load_config(location: str | Path) -> ExperimentConfig:
    """Read and validate a YAML config from a local path or ``s3://`` URI."""
    text = read_text(str(location))
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(str(location), [f"<root>: not valid YAML ({err})"]) from None
    return parse_config(raw, str(location))


def dump_config(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= DEFAULT_REPR_LIMIT else text[: DEFAULT_REPR_LIMIT - 3] + "..."


DEFAULT_LORA_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
DEFAULT_REPR_LIMIT = 80
