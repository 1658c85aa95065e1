"""The one pipeline config: sources, then a section per step. YAML or JSON, validated.

Every problem is reported together, each naming its key (`sources.1.format: Input should be
'markdown', 'html', ...`), so a user fixes a config in one pass. Relative paths are resolved
against the config file's folder; `s3://` URIs are kept as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from dapt_eval.providers.factory import ProviderSpec
from lingua import Language
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dapt_data.comprehension import ComprehensionTask
from dapt_data.instructions import InstructionTask
from dapt_data.records import Kind, Origin
from dapt_data.redact import RedactionConfig
from dapt_data.storage import is_s3
from dapt_data.synthetic import SyntheticTask


class ConfigError(ValueError):
    """The config is unusable; the message lists every problem with its key."""


class Format(StrEnum):
    """Input formats and how each becomes records."""

    MARKDOWN = "markdown"  # one record per file, Markdown rendered to text
    HTML = "html"  # one record per file, nav/script/style/header/footer removed
    CHAT = "chat"  # JSONL (or a JSON list) of {"turns": [{"role", "text"}]}: one record a chat
    TEXT = "text"  # one record per plain-text file
    JSONL = "jsonl"  # one record per line, text (and optional label) from configured fields
    CSV = "csv"  # one record per row, text (and optional label) from configured columns


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CleanConfig(_Section):
    """Normalisation is always on; each filter can be loosened or disabled."""

    min_chars: int = Field(default=50, ge=0)
    max_chars: int = Field(default=1_000_000, gt=0)
    max_symbol_ratio: float = Field(default=0.3, ge=0, le=1)
    max_repeated_line_ratio: float = Field(default=0.3, ge=0, le=1)
    repeated_ngram_words: int = Field(default=5, ge=1)
    max_repeated_ngram_ratio: float = Field(default=0.3, ge=0, le=1)
    languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="ISO 639-1 allow-list; empty = no language filter",
    )
    language_candidates: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LANGUAGE_CANDIDATES),
        description="languages the detector chooses among (allow-list is always added)",
    )
    language_sample_chars: int = Field(default=2000, gt=0)


class SourceConfig(_Section):
    """One input: where it is, how to read it, and what it is for."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="unique; first part of source_id")
    path: str = Field(min_length=1, description="file, folder, or s3://bucket/prefix")
    format: Format
    kind: Kind = Kind.COMPLETION
    origin: Origin = Origin.DOMAIN
    include: list[str] = Field(
        default_factory=list, description="file name globs; default by format"
    )
    text_field: str = Field(default="text", description="jsonl/csv: the text column")
    label_field: str | None = Field(default=None, description="jsonl/csv: the label column")
    id_field: str | None = Field(default=None, description="jsonl/csv/chat: a column kept in meta")
    weight: float = Field(
        default=1.0,
        gt=0,
        description="relative emphasis within its origin group in the mix (manifest.py)",
    )
    clean: CleanConfig | None = Field(
        default=None,
        description="this source's filter bounds: only the keys given replace the top-level "
        "`clean` ones (e.g. {min_chars: 1} for a labelled set of short utterances)",
    )

    def patterns(self) -> list[str]:
        """The include globs, or the format's usual extensions."""
        return self.include or list(DEFAULT_INCLUDE[self.format])


class IngestConfig(_Section):
    """Limits beyond which input is quarantined instead of read."""

    max_line_chars: int = Field(default=100_000, gt=0, description="longer lines are quarantined")
    max_file_bytes: int = Field(default=512 * 1024 * 1024, gt=0)


class DedupConfig(_Section):
    """Exact (content hash) and near-duplicate (MinHash LSH) removal; first occurrence kept."""

    exact: bool = True
    near: bool = True
    threshold: float = Field(default=0.8, gt=0, le=1, description="Jaccard similarity")
    num_perm: int = Field(default=128, ge=16)
    shingle_words: int = Field(default=5, ge=1)
    seed: int = 1


class DecontaminateConfig(_Section):
    """Drop training text that shares word n-grams with benchmark items."""

    benchmarks: list[str] = Field(default_factory=list, description="benchmark directories")
    ngram_words: int = Field(default=13, ge=1)
    min_item_words: int = Field(default=8, ge=1, description="shorter item fields are not checked")
    threshold: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="drop when shared n-grams / the item's n-grams > threshold (0: any shared)",
    )
    check_references: bool = Field(
        default=False,
        description="also check reference answers and summaries (drops KB text that states them)",
    )
    references_only: list[str] = Field(
        default_factory=list,
        description="benchmarks (also in `benchmarks`) whose inputs are domain documents the "
        "model is meant to read, e.g. summaries of KB sections: only their references are "
        "checked",
    )
    verify_hash: bool = True


class RedactConfig(_Section):
    """PII redaction (`dapt_data.redact`); `options` is passed to it unchanged."""

    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class ManifestConfig(_Section):
    """The mixing manifest the trainer reads."""

    name: str = Field(default="train", pattern=r"^[A-Za-z0-9._-]+$")
    target_domain_share: float | None = Field(
        default=0.02,
        gt=0,
        lt=1,
        description="domain tokens / all training tokens; null = no mixing",
    )
    tokenizer: str | None = Field(default=None, description="tokenizer.json; null = whitespace")


class SynthesizeConfig(_Section):
    """Q&A and reading-comprehension examples from the *redacted* domain records, by a teacher
    (`dapt_data.synthetic.generate_synthetic`); PII never reaches the teacher or training."""

    sources: list[str] = Field(
        default_factory=list,
        description="config source names to generate from; empty = every domain completion source",
    )
    tasks: list[SyntheticTask] = Field(default_factory=lambda: list(SyntheticTask), min_length=1)
    teacher: ProviderSpec = Field(description="the teacher, as dapt_eval's provider factory takes")
    questions_per_passage: int = Field(default=3, ge=1, le=20)
    max_passage_chars: int = Field(default=1500, ge=200)
    min_passage_chars: int = Field(default=120, ge=1)
    min_grounding: float = Field(default=0.8, ge=0, le=1, description="answer tokens in passage")
    near_dup_threshold: float = Field(default=0.8, gt=0, le=1)
    max_tokens: int = Field(default=1024, ge=1, description="teacher output limit per call")
    max_examples: int | None = Field(
        default=None, ge=1, description="keep the first N examples; the rest go to dropped.jsonl"
    )
    output: str = Field(default="synthetic", pattern=r"^[A-Za-z0-9._-]+$")
    origin: Origin = Origin.DOMAIN
    weight: float = Field(default=1.0, gt=0, description="relative emphasis in the mix")


class ComprehensionConfig(_Section):
    """Reading-comprehension texts mined from the *redacted* domain records without a teacher
    (`dapt_data.comprehension`, the AdaptLLM method): each text followed by tasks mined from
    it. The teacher path (`synthesize`) is the other way to make such data."""

    sources: list[str] = Field(
        default_factory=list,
        description="config source names to mine; empty = every domain completion source",
    )
    tasks: list[ComprehensionTask] = Field(
        default_factory=lambda: list(ComprehensionTask), min_length=1
    )
    max_per_task: int = Field(default=2, ge=1, description="tasks of each type per document")
    min_sentence_words: int = Field(default=10, ge=4)
    seed: int = 0
    output: str = Field(default="comprehension", pattern=r"^[A-Za-z0-9._-]+$")
    origin: Origin = Origin.DOMAIN
    weight: float = Field(default=1.0, gt=0, description="relative emphasis in the mix")


class InstructionSetConfig(_Section):
    """One labelled set: a benchmark-format folder (`benchmark.json` + items) and its task."""

    path: str = Field(min_length=1, description="local folder with benchmark.json")
    task: InstructionTask


class InstructionSourceConfig(_Section):
    """One labelled pipeline source (a jsonl/csv source with `label_field`), read after redact."""

    source: str = Field(min_length=1, description="a `sources[].name` with a label_field")
    task: InstructionTask = Field(description="intent, sentiment or segmentation")
    labels: list[str] | None = Field(
        default=None,
        min_length=1,
        description="allowed labels, in prompt order; other labels are quarantined; "
        "null = the labels seen in the source, sorted",
    )


class InstructionsConfig(_Section):
    """Paraphrased prompt/response examples from labelled sets (`dapt_data.instructions`)."""

    sets: list[InstructionSetConfig] = Field(
        default_factory=list, description="benchmark-format folders"
    )
    sources: list[InstructionSourceConfig] = Field(
        default_factory=list, description="labelled pipeline sources, after redaction"
    )
    seed: int = 0
    paraphrases: int = Field(
        default=1, ge=1, description="phrasings tried per item (seeds seed..seed+N-1)"
    )
    output: str = Field(default="instructions", pattern=r"^[A-Za-z0-9._-]+$")
    origin: Origin = Origin.DOMAIN
    weight: float = Field(default=1.0, gt=0, description="relative emphasis in the mix")

    @model_validator(mode="after")
    def _has_input(self) -> InstructionsConfig:
        if not self.sets and not self.sources:
            raise ValueError("give at least one of 'sets' or 'sources'")
        return self


class PipelineConfig(_Section):
    """Everything one run needs."""

    output: str = Field(min_length=1, description="local folder or s3://bucket/prefix")
    sources: list[SourceConfig] = Field(min_length=1)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    redact: RedactConfig = Field(default_factory=RedactConfig)
    manifest: ManifestConfig = Field(default_factory=ManifestConfig)
    synthesize: SynthesizeConfig | None = None
    comprehension: ComprehensionConfig | None = None
    instructions: InstructionsConfig | None = None

    @model_validator(mode="after")
    def _unique_source_names(self) -> PipelineConfig:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique, repeated: {duplicates}")
        return self

    def section_hash(self, *sections: str) -> str:
        """sha256 of the named sections' JSON: a step's part of its resume key."""
        data = {name: getattr(self, name) for name in sections}
        text = json.dumps(
            {k: _dump(v) for k, v in data.items()}, sort_keys=True, ensure_ascii=False
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def source(self, name: str) -> SourceConfig:
        """The source config of a name (records carry the name)."""
        return next(s for s in self.sources if s.name == name)

    def clean_overrides(self) -> dict[str, dict[str, Any]]:
        """Per source with its own `clean` section, the keys that section sets."""
        return {
            s.name: s.clean.model_dump(mode="json", exclude_unset=True)
            for s in self.sources
            if s.clean is not None
        }

    def clean_for(self, name: str) -> CleanConfig:
        """The filter bounds that apply to a source: top-level `clean` with its overrides."""
        override = self.clean_overrides().get(name, {})
        return self.clean.model_copy(update=override) if override else self.clean


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def load_config(path: Path) -> PipelineConfig:
    """Read YAML (`.yaml`/`.yml`) or JSON, validate, and resolve relative paths."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"config {path}: cannot read: {err}") from err
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"config {path}: not valid {path.suffix.lstrip('.')}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: must be a mapping, got {type(data).__name__}")
    config = parse_config(data, str(path))
    return resolve_paths(config, path.parent)


def parse_config(data: dict[str, Any], where: str) -> PipelineConfig:
    """Validate a config mapping; every problem (schema, redact options, cross-key) at once."""
    problems = _redact_problems(data)
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"config {where} is invalid:\n" + describe(err, problems)) from err
    problems += cross_problems(config)
    if problems:
        raise ConfigError(f"config {where} is invalid:\n" + "\n".join(problems))
    return config


def _redact_problems(data: dict[str, Any]) -> list[str]:
    """`redact.options` is `dapt_data.redact.RedactionConfig`, validated here with the rest."""
    redact = data.get("redact")
    options = redact.get("options", {}) if isinstance(redact, dict) else {}
    try:
        RedactionConfig.model_validate(options)
    except ValidationError as err:
        return describe(err, prefix="redact.options.").splitlines()
    return []


def describe(err: ValidationError, more: list[str] | None = None, prefix: str = "") -> str:
    """One line per problem: `  key.path: message (got value)`, then `more`."""
    lines = []
    for detail in err.errors():
        key = prefix + (".".join(str(p) for p in detail["loc"]) or "(root)")
        message = "field required" if detail["type"] == "missing" else detail["msg"]
        if detail["type"] == "extra_forbidden":
            message = "unknown key"
        got = "" if detail["type"] == "missing" else f" (got {detail.get('input')!r})"
        lines.append(f"  {key}: {message}{got}")
    return "\n".join(lines + (more or []))


def _clean_problems(clean: CleanConfig, where: str) -> list[str]:
    problems = []
    if clean.min_chars > clean.max_chars:
        problems.append(f"  {where}.min_chars: {clean.min_chars} > max_chars {clean.max_chars}")
    unknown = sorted(set(clean.languages) - set(known_language_codes()))
    if unknown:
        problems.append(f"  {where}.languages: unknown ISO 639-1 codes {unknown}")
    unknown = sorted(set(clean.language_candidates) - set(known_language_codes()))
    if unknown:
        problems.append(f"  {where}.language_candidates: unknown ISO 639-1 codes {unknown}")
    return problems


def cross_problems(config: PipelineConfig) -> list[str]:
    """Rules spanning keys, all collected."""
    problems: list[str] = []
    problems += _clean_problems(config.clean, "clean")
    for index, source in enumerate(config.sources):
        if source.clean is not None:
            problems += _clean_problems(config.clean_for(source.name), f"sources.{index}.clean")
        if source.label_field and source.format not in {Format.JSONL, Format.CSV}:
            problems.append(
                f"  sources.{index}.label_field: only for formats jsonl/csv, "
                f"not '{source.format.value}'"
            )
    listed = {str(Path(b)) for b in config.decontaminate.benchmarks}
    problems += [
        f"  decontaminate.references_only.{index}: '{b}' is not in decontaminate.benchmarks"
        for index, b in enumerate(config.decontaminate.references_only)
        if str(Path(b)) not in listed
    ]
    problems += _generated_problems(config)
    problems += _write_prefix_problems(config.output, os.environ.get(WRITE_PREFIX_ENV, ""))
    return problems


WRITE_PREFIX_ENV = "DAPT_WRITE_PREFIX"
"""Set by a run's data-prep job (``runs/<run>/``): its role may write only under that prefix."""


def _write_prefix_problems(output: str, write_prefix: str) -> list[str]:
    """An S3 output outside the job's writable prefix would fail at the first write; say so now."""
    if not write_prefix or not is_s3(output):
        return []
    key = output.removeprefix("s3://").partition("/")[2]
    if key.startswith(write_prefix):
        return []
    return [
        f"  output: '{output}' is outside {write_prefix!r}, the only prefix this job's role "
        f"may write ({WRITE_PREFIX_ENV}); use s3://<bucket>/{write_prefix}..."
    ]


def _generated_problems(config: PipelineConfig) -> list[str]:
    """Names and inputs of the synthesize and instructions sections."""
    problems: list[str] = []
    names = {s.name for s in config.sources}
    outputs: dict[str, str] = {}
    synth = config.synthesize
    if synth is not None:
        outputs["synthesize.output"] = synth.output
        problems += _source_names("synthesize.sources", synth.sources, names)
    if config.comprehension is not None:
        outputs["comprehension.output"] = config.comprehension.output
        problems += _source_names("comprehension.sources", config.comprehension.sources, names)
    if config.instructions is not None:
        outputs["instructions.output"] = config.instructions.output
        benchmarks = {str(Path(b)) for b in config.decontaminate.benchmarks}
        for index, item in enumerate(config.instructions.sets):
            key = f"instructions.sets.{index}.path"
            if is_s3(item.path):
                problems.append(f"  {key}: must be a local folder, got '{item.path}'")
            elif str(Path(item.path)) in benchmarks:
                problems.append(
                    f"  {key}: '{item.path}' is also in decontaminate.benchmarks "
                    "(training on evaluation items); use the training split"
                )
    if config.instructions is not None:
        problems += _instruction_source_problems(config, config.instructions.sources)
    for key, value in outputs.items():
        if value in names:
            problems.append(f"  {key}: '{value}' is already a source name")
    seen: dict[str, str] = {}
    for key, value in outputs.items():
        if value in seen:
            problems.append(f"  {key}: same name as {seen[value]} '{value}'")
        seen.setdefault(value, key)
    return problems


def _source_names(key: str, wanted: list[str], names: set[str]) -> list[str]:
    return [
        f"  {key}.{index}: '{name}' is not a source name {sorted(names)}"
        for index, name in enumerate(wanted)
        if name not in names
    ]


def _instruction_source_problems(
    config: PipelineConfig, items: list[InstructionSourceConfig]
) -> list[str]:
    """Each `instructions.sources` entry names a labelled source and a classification task."""
    problems: list[str] = []
    names = {s.name for s in config.sources}
    for index, item in enumerate(items):
        key = f"instructions.sources.{index}"
        if item.source not in names:
            problems.append(f"  {key}.source: '{item.source}' is not a source name {sorted(names)}")
        elif config.source(item.source).label_field is None:
            problems.append(
                f"  {key}.source: '{item.source}' is not a labelled dataset "
                "(a jsonl/csv source with label_field)"
            )
        if item.task not in LABELLED_TASKS:
            problems.append(
                f"  {key}.task: '{item.task.value}' is not a labelled task, use one of "
                f"{[t.value for t in LABELLED_TASKS]}"
            )
        if item.labels is not None:
            blank = [label for label in item.labels if not label.strip()]
            repeated = sorted({x for x in item.labels if item.labels.count(x) > 1})
            if blank or repeated:
                problems.append(f"  {key}.labels: empty or repeated labels {blank + repeated}")
    return problems


def known_language_codes() -> list[str]:
    """ISO 639-1 codes lingua knows."""
    return [lang.iso_code_639_1.name.lower() for lang in Language.all()]


def resolve_paths(config: PipelineConfig, base: Path) -> PipelineConfig:
    """Make local paths absolute against the config's folder."""

    def resolve(value: str) -> str:
        return value if is_s3(value) or Path(value).is_absolute() else str((base / value).resolve())

    sources = [s.model_copy(update={"path": resolve(s.path)}) for s in config.sources]
    decon = config.decontaminate.model_copy(
        update={
            "benchmarks": [resolve(b) for b in config.decontaminate.benchmarks],
            "references_only": [resolve(b) for b in config.decontaminate.references_only],
        }
    )
    tokenizer = config.manifest.tokenizer
    manifest = config.manifest.model_copy(
        update={"tokenizer": resolve(tokenizer) if tokenizer else None}
    )
    instructions = config.instructions
    if instructions is not None:
        instructions = instructions.model_copy(
            update={
                "sets": [s.model_copy(update={"path": resolve(s.path)}) for s in instructions.sets]
            }
        )
    return config.model_copy(
        update={
            "instructions": instructions,
            "output": resolve(config.output),
            "sources": sources,
            "decontaminate": decon,
            "manifest": manifest,
        }
    )


DEFAULT_INCLUDE: dict[Format, tuple[str, ...]] = {
    Format.MARKDOWN: ("*.md", "*.markdown"),
    Format.HTML: ("*.html", "*.htm"),
    Format.CHAT: ("*.jsonl", "*.json"),
    Format.TEXT: ("*.txt",),
    Format.JSONL: ("*.jsonl",),
    Format.CSV: ("*.csv",),
}
LABELLED_TASKS: tuple[InstructionTask, ...] = (
    InstructionTask.INTENT,
    InstructionTask.SENTIMENT,
    InstructionTask.SEGMENTATION,
)
"""Tasks whose response is a record's label (summarization needs a reference summary)."""
DEFAULT_LANGUAGE_CANDIDATES: tuple[str, ...] = (
    "en",
    "de",
    "fr",
    "es",
    "it",
    "pt",
    "nl",
    "pl",
    "ru",
    "zh",
    "ja",
)
