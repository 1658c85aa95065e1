"""The experiment config: one YAML file, validated as a whole, every problem reported at once.

An experiment is a chain of stages (e.g. ``dapt`` with full weights, then ``sft`` with LoRA on
the ``dapt`` output). Each stage carries its own model, data, method, optimisation and
checkpoint settings; ``output`` and ``seed`` are shared.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dapt_trainer.config_errors import ConfigError as _ConfigError
from dapt_trainer.config_errors import Problems, validation_problems
from dapt_trainer.storage import is_s3, read_text

NAME_RULE: dict[str, Any] = json.loads(
    Path(__file__).with_name("names.json").read_text(encoding="utf-8")
)
"""The naming rule of experiment and run names (``names.json``; the stacks and CLIs read it too)."""


def name_problem(name: str) -> str | None:
    """Why ``name`` breaks the naming rule, or None."""
    if len(name) > NAME_RULE["maxLength"] or re.fullmatch(NAME_RULE["pattern"], name) is None:
        return f"{name!r} must be {NAME_RULE['rule']}"
    return None


class ConfigError(_ConfigError):
    """A trainer config failed validation; ``problems`` lists every one as
    `key.path = value: rule` (the shape of ``dapt_trainer.config_errors``)."""

    what = "trainer"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """Where the starting weights come from: exactly one of ``path`` and ``from_stage``."""

    path: str | None = Field(
        default=None,
        description="Local directory or s3:// prefix holding a Hugging Face checkpoint (config, "
        "tokenizer, safetensors) to start from; nothing is fetched from a model hub.",
    )
    from_stage: str | None = Field(
        default=None,
        description="Name of an earlier stage of this experiment whose exported model "
        "(merged, when it trained adapters) is the starting point.",
    )

    @model_validator(mode="after")
    def _one_origin(self) -> ModelConfig:
        if (self.path is None) == (self.from_stage is None):
            raise ValueError("set exactly one of 'path' and 'from_stage'")
        return self


class SourceConfig(_Strict):
    """One data source: files of one kind, one mixing weight, one group."""

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Short name of the source, used in metrics (held-out loss per source) and "
        "the quarantine report.",
    )
    kind: Literal["completion", "instruction"] = Field(
        description="`completion`: raw text for continued pretraining; `instruction`: "
        "prompt/response or chat `messages` rows rendered with the model's chat template, with "
        "loss on the responses only.",
    )
    paths: list[str] = Field(
        default_factory=list,
        description="JSONL (.jsonl, .json) or Parquet (.parquet) files, local or s3://.",
    )
    manifest: str | None = Field(
        default=None,
        description="Dataset manifest written by the data pipeline (JSON with a `files` list), "
        "whose files are read in addition to `paths`.",
    )
    weight: float | None = Field(
        default=None,
        gt=0,
        description="Relative share of training tokens, normalised within the group when "
        "`data.domain_share` is set and over all sources otherwise; unset: the manifest's "
        "`mix_probability` (its share of training tokens), else 1.",
    )
    group: Literal["domain", "public"] | None = Field(
        default=None,
        description="Whether the source counts toward `data.domain_share` (`domain`) or not "
        "(`public`); unset: the manifest's `origin`, else `public`.",
    )
    text_field: str = Field(
        default="text", description="Field of a completion row holding the document text."
    )
    train_on_prompt: bool = Field(
        default=False,
        description="`instruction` sources: learn every token of an example (system and user "
        "turns, the template's role markers) instead of the responses only, as "
        "`train_on_inputs` does elsewhere; the held-out loss then covers them too.",
    )
    heldout_examples: int = Field(
        default=0,
        ge=0,
        description="Examples kept out of training (the first N valid rows) to measure the "
        "source's held-out loss.",
    )

    @property
    def share(self) -> float:
        """``weight``, or 1 where nothing set it."""
        return 1.0 if self.weight is None else self.weight

    @property
    def counts_as(self) -> Literal["domain", "public"]:
        """``group``, or ``public`` where nothing set it."""
        return self.group or "public"

    @model_validator(mode="after")
    def _has_files(self) -> SourceConfig:
        if not self.paths and self.manifest is None:
            raise ValueError("set 'paths' or 'manifest' (or both)")
        if self.train_on_prompt and self.kind == "completion":
            raise Problems(
                [
                    "train_on_prompt = True: only for 'instruction' sources (a completion source "
                    "learns every token already)"
                ]
            )
        return self


class DataConfig(_Strict):
    """What a stage trains on and how examples become fixed-size rows."""

    sources: list[SourceConfig] = Field(
        min_length=1, description="The sources mixed into this stage's rows; names are unique."
    )
    seq_len: int = Field(
        default=4096,
        ge=8,
        description="Tokens per row; longer completion documents are split, longer instruction "
        "examples truncated.",
    )
    packing: bool = Field(
        default=True,
        description="Pack several documents per row, attention never crossing a document "
        "boundary (off: one document, or a piece of one, per row, the rest padded).",
    )
    # Shares are charged when a document is drawn, not when it is placed, so they still hold.
    pack_window: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Documents drawn ahead when filling a row: each row starts with the oldest "
        "and is topped up with the best-fitting others, so instruction examples (never cut) "
        "still fill rows; 1 packs in draw order.",
    )
    domain_share: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Fraction of training tokens drawn from `group: domain` sources (e.g. 0.02); "
        "unset: every source's share is its weight over all weights.",
    )

    chat_template: str | None = Field(
        default=None,
        description="Chat template for `instruction` sources, replacing the tokenizer's: the "
        "name of a bundled one (`chatml`, `llama-2`) or inline Jinja; needed for a base model "
        "without one (e.g. Llama-2-7b). Unset: the tokenizer's own.",
    )

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        if value is None or value in BUNDLED_CHAT_TEMPLATES or "{{" in value or "{%" in value:
            return value
        raise ValueError(
            f"not a bundled template ({', '.join(sorted(BUNDLED_CHAT_TEMPLATES))}) nor inline "
            "Jinja (no '{{' or '{%')"
        )

    @model_validator(mode="after")
    def _groups(self) -> DataConfig:
        problems = check_groups(self, resolved=False)
        if problems:
            raise Problems(problems)
        return self


def check_groups(data: DataConfig, resolved: bool) -> list[str]:
    """Unique source names; ``domain_share`` needs a domain and a public source. Before the
    manifests are read (``resolved=False``), a manifest source without an explicit group may
    still turn out to be either, so the group rule waits for ``resolve_data``. Each problem is
    `key = value: rule`, keys relative to the data section."""
    names = [s.name for s in data.sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    problems = []
    if duplicates:
        problems.append(f"sources: source names must be unique; repeated: {duplicates}")
    pending = not resolved and any(s.manifest is not None and s.group is None for s in data.sources)
    if data.domain_share is not None and not pending:
        groups = {s.counts_as for s in data.sources}
        if groups != {"domain", "public"}:
            problems.append(
                f"domain_share = {data.domain_share}: needs at least one 'domain' and one "
                f"'public' source; groups present: {sorted(groups)}"
            )
    return problems


class LoraConfig(_Strict):
    """Low-rank adapters (PEFT). High ranks (256+) are supported; consider ``rslora`` there."""

    rank: int = Field(
        default=256, ge=1, le=4096, description="Rank r of each adapter's two low-rank matrices."
    )
    alpha: int = Field(
        default=512,
        gt=0,
        description="Adapter scaling numerator: updates are scaled by alpha/rank (alpha/sqrt(rank) "
        "with `rslora`).",
    )
    dropout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Dropout probability on the adapters' input while training.",
    )
    target_modules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        min_length=1,
        description="Names of the linear modules that get adapters (default: the attention "
        "q/k/v/o and the MLP gate/up/down projections).",
    )
    dora: bool = Field(
        default=False, description="Weight-decomposed LoRA (DoRA) instead of plain LoRA."
    )
    rslora: bool = Field(
        default=False,
        description="Scale by alpha/sqrt(rank) instead of alpha/rank (rank-stabilised LoRA, which "
        "keeps high ranks learning).",
    )


class MethodConfig(_Strict):
    """Which weights train: all of them (``full``) or LoRA/DoRA adapters (``lora``)."""

    name: Literal["full", "lora"] = Field(
        default="full",
        description="`full`: every weight trains; `lora`: only the adapters train, and the "
        "exported model has them merged in (the adapter is saved too).",
    )
    lora: LoraConfig = Field(
        default_factory=LoraConfig, description="Adapter settings, used when `name` is `lora`."
    )


class OptimizerConfig(_Strict):
    """AdamW with a warmup, then a cosine, linear or constant schedule."""

    lr: float = Field(
        default=2e-5, gt=0, le=1, description="Peak learning rate, reached at the end of warmup."
    )
    betas: tuple[float, float] = Field(
        default=(0.9, 0.95),
        description="AdamW's decay rates of the first and second gradient moments, each in [0, 1).",
    )
    eps: float = Field(
        default=1e-8, gt=0, description="AdamW's term added to the denominator for stability."
    )
    weight_decay: float = Field(
        default=0.1, ge=0, description="AdamW's decoupled weight decay, per unit learning rate."
    )
    grad_clip: float | None = Field(
        default=1.0,
        gt=0,
        description="Largest global L2 norm of the gradient, clipped to before each step; unset: "
        "no clipping (the norm is still logged).",
    )
    schedule: Literal["cosine", "linear", "constant"] = Field(
        default="cosine",
        description="Learning rate after warmup: `cosine` or `linear` decay to "
        "`min_lr_ratio` x `lr` at the last step, or `constant` at `lr`.",
    )
    warmup_steps: int = Field(
        default=0,
        ge=0,
        description="Optimizer steps of linear warmup to `lr` (step k at (k+1)/(warmup_steps+1) "
        "x `lr`); fewer than the stage's `steps`.",
    )
    min_lr_ratio: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Learning rate the `cosine` and `linear` schedules end at, as a fraction of "
        "`lr`.",
    )

    @model_validator(mode="after")
    def _betas(self) -> OptimizerConfig:
        if not all(0 <= b < 1 for b in self.betas):
            raise Problems([f"betas = {list(self.betas)}: each must lie in [0, 1)"])
        return self


class CheckpointConfig(_Strict):
    """How often a stage saves a resumable checkpoint."""

    every_steps: int = Field(
        default=500,
        ge=1,
        description="Save a resumable checkpoint every N optimizer steps (the last step exports "
        "the final model instead).",
    )
    keep_last: int = Field(
        default=2,
        ge=1,
        description="Complete checkpoints kept; older ones are deleted once a newer one is "
        "complete.",
    )


class GenerationEvalConfig(_Strict):
    """A small task scored by generation at every evaluation: each item's prompt is answered
    greedily and the answer compared with the item's reference (exact match and contains,
    after lowercasing and collapsing whitespace)."""

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Names the task in metrics (`generation/<name>/exact_match`, `.../contains`).",
    )
    path: str = Field(
        min_length=1,
        description="JSONL file (local or s3://) of items, e.g. a benchmark's `items.jsonl` "
        "(dapt-eval's qa rows: `question`, `reference_answer`); bad rows are quarantined.",
    )
    format: Literal["qa", "mcq"] = Field(
        default="qa",
        description="`qa`: free answers scored by exact match / contains against "
        "`reference_field`. `mcq`: dapt-eval's mcq rows (`id`, `question`, `answer`, "
        "`distractors`), choices shuffled per item as dapt-eval does (`shuffle_seed`) and shown "
        "as `A. ...` lines in `{choices}`; `accuracy`: the reply is the answer's letter "
        "(dapt-eval's strict letter parse) or the answer's text (normalised).",
    )
    prompt: str | None = Field(
        default=None,
        min_length=1,
        description="Prompt template, `str.format` fields taken from an item (plain names; "
        "mcq also `{choices}`). Default: `{question}` for qa, dapt-eval's `mcq-letter` prompt "
        "for mcq.",
    )
    shuffle_seed: int = Field(
        default=0,
        ge=0,
        description="mcq: the choice-shuffle seed (dapt-eval's `decoding.seed`, 0 by default).",
    )
    reference_field: str = Field(
        default="reference_answer",
        min_length=1,
        description="Field of an item holding the reference answer (`label` for dapt-eval's "
        "classification rows).",
    )
    chat: bool = Field(
        default=True,
        description="Render the prompt as one user turn with the chat template and the "
        "generation prompt (off: the raw prompt, for a base model).",
    )
    max_items: int = Field(
        default=32, ge=1, le=1024, description="The first N valid items are evaluated."
    )
    max_new_tokens: int = Field(
        default=64, ge=1, le=4096, description="Longest greedy answer, in tokens."
    )

    @field_validator("prompt")
    @classmethod
    def _plain_fields(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
            plain = all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", f) for f in fields)
        except ValueError as err:
            raise ValueError(f"not a str.format template ({err})") from None
        if not fields or not plain:
            raise ValueError("needs at least one field, each a plain name like {question}")
        return value


class StageConfig(_Strict):
    """One training stage."""

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Stage name: its output is `<output>/<experiment>/<name>/`, and a later "
        "stage's `model.from_stage` refers to it.",
    )
    model: ModelConfig = Field(description="Where the stage's starting weights come from.")
    data: DataConfig = Field(description="What the stage trains on and how rows are built.")
    method: MethodConfig = Field(
        default_factory=MethodConfig,
        description="Which weights train: all of them or LoRA/DoRA adapters.",
    )
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig,
        description="AdamW settings and the learning-rate schedule.",
    )
    micro_batch_size: int = Field(
        default=1, ge=1, description="Rows per forward pass on each GPU (rank)."
    )
    grad_accum_steps: int = Field(
        default=1,
        ge=1,
        description="Micro batches per optimizer step on each rank, so a step covers seq_len x "
        "micro_batch_size x grad_accum_steps x ranks token positions.",
    )
    steps: int = Field(ge=1, description="Optimizer steps the stage trains for.")
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig,
        description="How often resumable checkpoints are saved and how many are kept.",
    )
    log_every: int = Field(
        default=1,
        ge=1,
        description="Write a training metrics record every N optimizer steps (and at the last).",
    )
    eval_every: int | None = Field(
        default=None,
        ge=1,
        description="Measure the held-out loss every N optimizer steps (it is always measured "
        "at the end when any source holds examples out); unset: only then.",
    )
    eval_at_start: bool = Field(
        default=True,
        description="Also measure the starting weights' held-out loss before step 1 (metrics "
        "step 0, `heldout_before.json`, the lineage's `heldout_loss_before`): the baseline that "
        "shows what training changed, e.g. how much general ability the public slice lost.",
    )

    eval_generation: list[GenerationEvalConfig] = Field(
        default_factory=list,
        description="Tasks scored by greedy generation wherever the held-out loss is logged "
        "(step 0, every `eval_every` steps) and after the last step; names are unique.",
    )

    @model_validator(mode="after")
    def _warmup(self) -> StageConfig:
        problems = []
        if self.optimizer.warmup_steps >= self.steps:
            problems.append(
                f"optimizer.warmup_steps = {self.optimizer.warmup_steps}: must be < "
                f"steps ({self.steps})"
            )
        names = [t.name for t in self.eval_generation]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            problems.append(f"eval_generation: task names must be unique; repeated: {repeated}")
        if problems:
            raise Problems(problems)
        return self


DEFAULT_LOSS_CHUNK_TOKENS = 2048
"""Tokens per LM head chunk: 1 GiB of fp32 logits for a 128k vocabulary, 0.25 GiB for 32k
(here, not at the bottom: a field default needs it defined)."""


class ComputeConfig(_Strict):
    """How the hardware is used; shared by all stages."""

    precision: Literal["bf16", "fp32"] = Field(
        default="bf16",
        description="`bf16`: bf16 autocast on GPU (FSDP2 mixed precision when sharded) and a "
        "bf16 exported model; the CPU runs fp32 unless `cpu_bf16`.",
    )
    activation_checkpointing: bool = Field(
        default=True,
        description="Recompute each decoder layer's activations in the backward pass instead of "
        "keeping them (less memory for about one more forward pass).",
    )
    attention: Literal["auto", "flash_attention_2", "flex_attention", "sdpa", "eager"] = Field(
        default="auto",
        description="Attention kernel (a transformers `attn_implementation`); `auto`: "
        "flash-attention 2 on GPU when the image has it (packed documents cost no masked FLOPs) "
        "and a stage packs one row per forward, else SDPA with the block-diagonal mask derived "
        "from packed position ids. `flash_attention_2` with packing needs micro_batch_size 1.",
    )
    compile: bool = Field(default=False, description="`torch.compile` each decoder layer.")
    # x86 CPUs with AVX-512 BF16 or AMX run it about 1.6x faster than fp32 (measured on the
    # development sandbox's EPYC); off by default because CPU runs are mostly tests, where fp32
    # keeps losses exactly comparable.
    cpu_bf16: bool = Field(
        default=False,
        description="On a CPU (no GPU visible), also train under bf16 autocast when `precision` "
        "is bf16.",
    )
    loss_chunk_tokens: int | None = Field(
        default=DEFAULT_LOSS_CHUNK_TOKENS,
        ge=1,
        description="Compute the LM head and cross-entropy this many tokens at a time when a "
        "micro batch has more (each chunk recomputed in the backward), so a large vocabulary's "
        "fp32 logits never exist for the whole micro batch; unset: all at once.",
    )
    peak_flops: float = Field(
        default=989e12,
        gt=0,
        description="Peak FLOP/s of one accelerator at `precision`, the denominator of the "
        "logged MFU (989e12: H100 SXM bf16 dense).",
    )


class ExperimentConfig(_Strict):
    """The whole YAML file."""

    experiment: str = Field(
        description="Names the job and its `runs/<experiment>/` prefix; follows the rule of "
        "`names.json`, shared with the stacks and the CLIs (a run stack's role writes only under "
        "its own name).",
    )
    output: str | None = Field(
        default=None,
        description="Local directory or s3:// prefix the stages write under "
        "(`<output>/<experiment>/<stage>/`); `--output` or `DAPT_OUTPUT` overrides it.",
    )
    seed: int = Field(
        default=0,
        description="Seed of torch's random state (adapter initialisation, the same on every "
        "rank; then `seed + rank` for dropout) and of each source's per-epoch example order "
        "(the same on every rank).",
    )
    # A job downloads a source's cache from here instead of tokenising it again; the first node
    # publishes what it builds. Entries are keyed by file fingerprints and tokenizer, so sharing
    # one prefix between experiments is safe.
    token_cache: str | None = Field(
        default=None,
        description="Local directory or s3:// prefix where tokenised sources are shared between "
        "nodes, instances and runs (default `<output>/<experiment>/token-cache`).",
    )
    compute: ComputeConfig = Field(
        default_factory=ComputeConfig,
        description="How the hardware is used; shared by all stages.",
    )
    tensorboard: bool = Field(
        default=True,
        description="Also write each stage's metrics records as TensorBoard scalars in "
        "`<stage>/tensorboard/` (uploaded beside `metrics.jsonl` when the output is S3; rebuilt "
        "from it when a resume drops lines, so each step appears once).",
    )
    stages: list[StageConfig] = Field(
        min_length=1,
        description="The stages, run in order; a stage may start from an earlier one's output.",
    )

    @field_validator("experiment")
    @classmethod
    def _follows_the_naming_rule(cls, value: str) -> str:
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

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
            if self.compute.attention == "flash_attention_2" and packs_rows_in_batches(stage):
                # transformers treats position ids as varlen boundaries only at batch size 1:
                # with more rows, packed documents would attend to each other.
                problems.append(
                    f"compute.attention = 'flash_attention_2': packs documents apart only with "
                    f"one row per forward, and stages.{i} ({stage.name}) packs with "
                    f"micro_batch_size = {stage.micro_batch_size}; use micro_batch_size 1 (and "
                    "grad_accum_steps for the batch), sdpa or auto (sdpa there)"
                )
        if problems:
            raise Problems(problems)
        return self

    def stage(self, name: str) -> StageConfig:
        return next(s for s in self.stages if s.name == name)


def packs_rows_in_batches(stage: StageConfig) -> bool:
    """Whether a forward gets several rows that hold several documents each."""
    return stage.data.packing and stage.micro_batch_size > 1


def parse_config(raw: Any, source: str = "<config>") -> ExperimentConfig:
    """Validate a parsed YAML document, raising ConfigError with every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"<root> = {type(raw).__name__}: must be a mapping"])
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(source, validation_problems(err)) from None


def load_config(location: str | Path) -> ExperimentConfig:
    """Read and validate a YAML config from a local path or ``s3://`` URI; a file that cannot
    be read or parsed is a ``ConfigError`` too (``<file>: cannot read``, ``<root>: not valid
    YAML``)."""
    text = _read_config(str(location))
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(str(location), [f"<root>: not valid YAML ({err})"]) from None
    return parse_config(raw, str(location))


def _read_config(location: str) -> str:
    unreadable: tuple[type[Exception], ...] = (OSError, ValueError)  # not UTF-8, no bucket
    if is_s3(location):
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - S3 only

        unreadable += (BotoCoreError, ClientError)
    try:
        return read_text(location)
    except unreadable as err:
        raise ConfigError(location, [f"<file>: cannot read ({err})"]) from None


def dump_config(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def resume_changes(saved: ExperimentConfig, current: ExperimentConfig, stage: str) -> list[str]:
    """What changed in ``stage`` (and the seed) between the config a checkpoint was saved with
    and the current one, as `key: saved -> current`. A checkpoint's weights, optimizer,
    schedule and data position belong to its config; only the keys of ``RESUMABLE_KEYS`` (how
    often to log, evaluate and checkpoint, how the batch is split) and ``compute``, ``output``
    and ``token_cache`` (where and on what it runs) may change between a stop and its
    resume."""
    if not any(s.name == stage for s in saved.stages):
        return [f"stages: the checkpoint's config has no stage {stage!r}"]

    def compared(config: ExperimentConfig) -> dict[str, Any]:
        dumped = config.stage(stage).model_dump(mode="json", exclude=set(RESUMABLE_KEYS))
        return _flatten({"seed": config.seed, f"stage {stage}": dumped})

    before, after = compared(saved), compared(current)
    return [
        f"{key}: {before.get(key, '(unset)')!r} -> {after.get(key, '(unset)')!r}"
        for key in sorted(set(before) | set(after), key=_natural)
        if before.get(key, _ABSENT) != after.get(key, _ABSENT)
    ]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = list(value.items())
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _natural(key: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in key.split(".")]


_ABSENT = object()
RESUMABLE_KEYS = (
    "log_every",
    "eval_every",
    "eval_at_start",
    "eval_generation",
    "checkpoint",
    "micro_batch_size",
    "grad_accum_steps",
)
"""Stage keys a resumed run may change: when it logs, evaluates and checkpoints, and how the
global batch is split (a resume on another world size); not what it trains. The global batch in
rows itself is compared with the checkpoint's when it is loaded."""


CHAT_TEMPLATES = Path(__file__).with_name("chat_templates")
BUNDLED_CHAT_TEMPLATES = frozenset(p.stem for p in CHAT_TEMPLATES.glob("*.jinja"))
"""Names ``data.chat_template`` may give instead of inline Jinja
(``chat_templates/<name>.jinja``)."""
DEFAULT_LORA_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
