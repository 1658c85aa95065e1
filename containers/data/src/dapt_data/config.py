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
from dapt_eval.config_errors import ConfigError as EvalConfigError
from dapt_eval.config_errors import Problems, validation_problems
from dapt_eval.providers.factory import ProviderSpec
from lingua import Language
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dapt_data.comprehension import ComprehensionTask
from dapt_data.instructions import InstructionTask
from dapt_data.pii.ner import name_model_problem
from dapt_data.records import Kind, Origin
from dapt_data.redact import RedactionConfig
from dapt_data.storage import is_s3
from dapt_data.synthetic import SyntheticTask


class ConfigError(EvalConfigError):
    """The pipeline config is unusable; `problems` lists every one as `key.path = value: rule`
    (the shape of `dapt_eval.config_errors`)."""

    what = "data pipeline"


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

    min_chars: int = Field(
        default=50,
        ge=0,
        description="Records shorter than this many characters (after normalisation) are "
        "dropped as `too_short`.",
    )
    max_chars: int = Field(
        default=1_000_000,
        gt=0,
        description="Records longer than this many characters are dropped as `too_long`.",
    )
    max_symbol_ratio: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Largest share of visible characters that are neither letters nor digits; "
        "a record above it is dropped as `symbol_ratio`.",
    )
    max_repeated_line_ratio: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Largest share of non-blank lines that repeat an earlier line; a record "
        "above it is dropped as `repeated_lines`.",
    )
    repeated_ngram_words: int = Field(
        default=5, ge=1, description="Words per n-gram of the repeated n-gram filter."
    )
    max_repeated_ngram_ratio: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Largest share of word n-gram occurrences whose n-gram occurs more than "
        "once; a record above it is dropped as `repeated_ngrams`.",
    )
    languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="ISO 639-1 codes of the languages kept (other and undetermined text is "
        "dropped as `language`); empty: no language filter.",
    )
    language_candidates: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LANGUAGE_CANDIDATES),
        description="ISO 639-1 codes of the languages the detector chooses among (the "
        "allow-list is always added).",
    )
    language_sample_chars: int = Field(
        default=2000,
        gt=0,
        description="Characters from the start of a record that the language detector reads.",
    )


class SourceConfig(_Section):
    """One input: where it is, how to read it, and what it is for."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Unique source name: the first part of its records' `source_id` and the "
        "name of its final file and manifest entry.",
    )
    path: str = Field(
        min_length=1,
        description="File, folder or s3://bucket/prefix to read (a relative path is relative to "
        "the config file).",
    )
    format: Format = Field(
        description="How files become records: markdown, html and text one per file, chat one "
        "per chat, jsonl and csv one per line or row.",
    )
    kind: Kind = Field(
        default=Kind.COMPLETION,
        description="How the trainer uses the source: `completion` (raw text) or `instruction` "
        "(prompt/response pairs).",
    )
    origin: Origin = Field(
        default=Origin.DOMAIN,
        description="`domain` data, or `public` text mixed in to keep general skills: the group "
        "the mix's `manifest.target_domain_share` is computed over.",
    )
    include: list[str] = Field(
        default_factory=list,
        description="File name globs of the files to read; empty: the format's usual extensions.",
    )
    text_field: str = Field(
        default="text", description="jsonl/csv: the field or column holding the text."
    )
    label_field: str | None = Field(
        default=None, description="jsonl/csv: the field or column holding a label, if any."
    )
    id_field: str | None = Field(
        default=None,
        description="jsonl/csv/chat: a field or column whose value is kept in the record's meta.",
    )
    pii_name_fields: list[str] = Field(
        default_factory=list,
        description="jsonl/csv/chat: fields (or columns) holding people's names, e.g. "
        "[customer_name, agent_name]; chat turns are searched too. The redactor redacts those "
        "names wherever they occur in the record's text.",
    )
    weight: float = Field(
        default=1.0,
        gt=0,
        description="Relative emphasis within its origin group in the mix (a factor on its "
        "sampling weight, see dapt_data.manifest).",
    )
    clean: CleanConfig | None = Field(
        default=None,
        description="This source's filter bounds: only the keys given replace the top-level "
        "`clean` ones (e.g. {min_chars: 1} for a labelled set of short utterances).",
    )

    def patterns(self) -> list[str]:
        """The include globs, or the format's usual extensions."""
        return self.include or list(DEFAULT_INCLUDE[self.format])


class IngestConfig(_Section):
    """Limits beyond which input is quarantined instead of read."""

    max_line_chars: int = Field(
        default=100_000,
        gt=0,
        description="Longest line, in characters (a jsonl/chat line, a csv cell, any line of a "
        "document); beyond it the line, or the document, is quarantined as `line_too_long`.",
    )
    max_file_bytes: int = Field(
        default=512 * 1024 * 1024,
        gt=0,
        description="Largest file read, in bytes; a larger one is quarantined as `file_too_large`.",
    )


class Engine(StrEnum):
    """Where the corpus-sized steps run."""

    LOCAL = "local"  # this process holds the records (dapt_data.pipeline)
    SPARK = "spark"  # Apache Spark: dapt_data.spark_steps, dapt_data.spark_dedup


class DedupConfig(_Section):
    """Exact (content hash) and near-duplicate (MinHash LSH) removal; first occurrence kept."""

    @model_validator(mode="before")
    @classmethod
    def _engine_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "engine" in data:
            raise ValueError(
                "the engine is now chosen for the whole pipeline: move "
                f"'dedup.engine: {data['engine']}' to a top-level 'engine: {data['engine']}'"
            )
        return data

    exact: bool = Field(
        default=True,
        description="Drop a record whose case-folded, whitespace-collapsed text hashes like an "
        "earlier one's.",
    )
    near: bool = Field(
        default=True,
        description="Drop a record whose estimated Jaccard similarity to an earlier kept one is "
        "at least `threshold` (MinHash LSH over word shingles).",
    )
    threshold: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Jaccard similarity of word shingles at or above which a record is a "
        "near-duplicate.",
    )
    num_perm: int = Field(
        default=128,
        ge=16,
        description="MinHash permutations per signature (more: a closer Jaccard estimate, slower).",
    )
    shingle_words: int = Field(
        default=5, ge=1, description="Words per shingle of the near-duplicate signatures."
    )
    seed: int = Field(default=1, description="Seed of the MinHash permutations.")


class SparkConfig(_Section):
    """The local Spark session of the steps that run on Spark (ignored on a cluster, where the
    job's own Spark settings apply). Not part of any step's resume key: results do not depend
    on it."""

    cores: int | None = Field(
        default=None, ge=1, description="Cores of the local session (local[N]); null: all CPUs."
    )
    shuffle_partitions: int | None = Field(
        default=None,
        ge=1,
        description="Partitions of each shuffle; null: twice the cores (Spark's 200 suits a "
        "cluster, not one machine).",
    )
    driver_memory: str | None = Field(
        default=None,
        pattern=r"^[0-9]+[kmgt]$",
        description="Heap of the local Spark JVM, e.g. `4g`; null: Spark's default (1g).",
    )


class DecontaminateConfig(_Section):
    """Drop training text that shares word n-grams with benchmark items."""

    benchmarks: list[str] = Field(
        default_factory=list,
        description="Benchmark directories (benchmark.json and items) that training text must "
        "not overlap.",
    )
    ngram_words: int = Field(
        default=13,
        ge=1,
        description="Words per n-gram compared (a benchmark field with fewer words is one "
        "n-gram, matched whole).",
    )
    min_item_words: int = Field(
        default=8,
        ge=1,
        description="Benchmark fields with fewer words are not checked (too short to tell "
        "copying from chance).",
    )
    threshold: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="A record is dropped when its shared n-grams / an item's n-grams exceed "
        "this (0: any shared n-gram).",
    )
    check_references: bool = Field(
        default=False,
        description="Also check reference answers and summaries (drops KB text that states them).",
    )
    paraphrase_threshold: float | None = Field(
        default_factory=lambda: DEFAULT_PARAPHRASE_THRESHOLD,
        gt=0,
        le=1,
        description="Similarity (IDF-weighted cosine of content words and bigrams) from which a "
        "question in the training text is a paraphrase of a benchmark question and the text "
        "is dropped; null: no paraphrase matching.",
    )
    references_only: list[str] = Field(
        default_factory=list,
        description="Benchmarks (also in `benchmarks`) whose inputs are domain documents the "
        "model is meant to read, e.g. summaries of KB sections: only their references are "
        "checked.",
    )
    verify_hash: bool = Field(
        default=True,
        description="Check each benchmark's items file against the `items_sha256` of its "
        "benchmark.json before using it.",
    )


class RedactConfig(_Section):
    """PII redaction (`dapt_data.redact`); `options` is passed to it unchanged."""

    enabled: bool = Field(
        default=True,
        description="Redact PII (off: the redact step passes the decontaminated records on "
        "unchanged).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The settings of `dapt_data.redact.RedactionConfig` (detector, types, ...), "
        "validated with the rest of the config.",
    )


class ManifestConfig(_Section):
    """The mixing manifest the trainer reads."""

    name: str = Field(
        default="train",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Manifest name: versions are published as `manifests/<name>/v<N>.json` "
        "under the output.",
    )
    target_domain_share: float | None = Field(
        default=0.02,
        gt=0,
        lt=1,
        description="Domain tokens / all training tokens that the sampling weights aim at; "
        "null: no mixing (each source's sampling weight is its own `weight`).",
    )
    tokenizer: str | None = Field(
        default=None,
        description="tokenizer.json that counts the mix's tokens exactly; null: "
        "whitespace-separated words approximate them.",
    )


class SynthesizeConfig(_Section):
    """Q&A and reading-comprehension examples from the *redacted* domain records, by a teacher
    (`dapt_data.synthetic.generate_synthetic`); PII never reaches the teacher or training."""

    sources: list[str] = Field(
        default_factory=list,
        description="Config source names to generate from; empty: every domain completion source.",
    )
    tasks: list[SyntheticTask] = Field(
        default_factory=lambda: list(SyntheticTask),
        min_length=1,
        description="Example types asked of the teacher: `qa` (closed-book question and answer) "
        "and `reading_comprehension` (passage, question and answer).",
    )
    teacher: ProviderSpec = Field(
        description="The teacher model, as dapt_eval's provider factory takes it."
    )
    questions_per_passage: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Question/answer items asked of the teacher per passage and task.",
    )
    max_passage_chars: int = Field(
        default=1500,
        ge=200,
        description="Longest passage sent to the teacher, in characters (paragraphs are packed "
        "up to it).",
    )
    min_passage_chars: int = Field(
        default=120,
        ge=1,
        description="Passages shorter than this many characters are not sent to the teacher.",
    )
    min_grounding: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Share of an answer's content words that must occur in its passage for the "
        "example to be kept.",
    )
    near_dup_threshold: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Jaccard similarity of question word 1- and 2-grams at or above which a "
        "question duplicates an earlier one and is dropped.",
    )
    max_tokens: int = Field(
        default=1024, ge=1, description="Most tokens the teacher may generate per call."
    )
    concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Teacher calls in flight at once (the output is the same for any value; "
        "keep it within the teacher's rate limit, retries back off on throttling).",
    )
    max_examples: int | None = Field(
        default=None,
        ge=1,
        description="Keep the first N examples, the rest going to dropped.jsonl; null: keep all.",
    )
    output: str = Field(
        default="synthetic",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Name of the source the examples become in the manifest.",
    )
    origin: Origin = Field(
        default=Origin.DOMAIN, description="Origin group of the generated source in the mix."
    )
    weight: float = Field(
        default=1.0,
        gt=0,
        description="Relative emphasis of the generated source within its origin group.",
    )


class ComprehensionConfig(_Section):
    """Reading-comprehension texts mined from the *redacted* domain records without a teacher
    (`dapt_data.comprehension`, the AdaptLLM method): each text followed by tasks mined from
    it. The teacher path (`synthesize`) is the other way to make such data."""

    sources: list[str] = Field(
        default_factory=list,
        description="Config source names to mine; empty: every domain completion source.",
    )
    tasks: list[ComprehensionTask] = Field(
        default_factory=lambda: list(ComprehensionTask),
        min_length=1,
        description="Task types mined from each text (title, section, completion, connective, "
        "word_to_text).",
    )
    max_per_task: int = Field(
        default=2, ge=1, description="Most tasks of each type appended to one document."
    )
    min_sentence_words: int = Field(
        default=10,
        ge=4,
        description="Sentences with fewer words yield no `completion` or `word_to_text` task.",
    )
    seed: int = Field(
        default=0,
        description="Seed of which candidate tasks are kept and which phrasing each gets.",
    )
    output: str = Field(
        default="comprehension",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Name of the source the mined texts become in the manifest.",
    )
    origin: Origin = Field(
        default=Origin.DOMAIN, description="Origin group of the mined source in the mix."
    )
    weight: float = Field(
        default=1.0,
        gt=0,
        description="Relative emphasis of the mined source within its origin group.",
    )


class InstructionSetConfig(_Section):
    """One labelled set: a benchmark-format folder (`benchmark.json` + items) and its task."""

    path: str = Field(
        min_length=1,
        description="Local folder with benchmark.json and its items (a training split, not an "
        "evaluation benchmark).",
    )
    task: InstructionTask = Field(
        description="Which paraphrase list phrases the items: intent, sentiment, segmentation "
        "or summarization."
    )


class InstructionSourceConfig(_Section):
    """One labelled pipeline source (a jsonl/csv source with `label_field`), read after redact."""

    source: str = Field(min_length=1, description="A `sources[].name` with a `label_field`.")
    task: InstructionTask = Field(
        description="Which labelled task phrases its records: intent, sentiment or segmentation."
    )
    labels: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Allowed labels, in prompt order, other labels being quarantined; null: the "
        "labels seen in the source, sorted.",
    )


class InstructionsConfig(_Section):
    """Paraphrased prompt/response examples from labelled sets (`dapt_data.instructions`)."""

    sets: list[InstructionSetConfig] = Field(
        default_factory=list, description="Labelled benchmark-format folders."
    )
    sources: list[InstructionSourceConfig] = Field(
        default_factory=list, description="Labelled pipeline sources, read after redaction."
    )
    seed: int = Field(
        default=0,
        description="Seed of the phrasing picked for each item (the first of `paraphrases` "
        "consecutive seeds).",
    )
    paraphrases: int = Field(
        default=1,
        ge=1,
        description="Phrasings tried per item, with seeds seed..seed+N-1 (repeats are kept once).",
    )
    output: str = Field(
        default="instructions",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Name of the source the examples become in the manifest.",
    )
    origin: Origin = Field(
        default=Origin.DOMAIN, description="Origin group of the generated source in the mix."
    )
    weight: float = Field(
        default=1.0,
        gt=0,
        description="Relative emphasis of the generated source within its origin group.",
    )

    @model_validator(mode="after")
    def _has_input(self) -> InstructionsConfig:
        if not self.sets and not self.sources:
            raise ValueError("give at least one of 'sets' or 'sources'")
        return self


class PipelineConfig(_Section):
    """Everything one run needs."""

    output: str = Field(
        min_length=1,
        description="Local folder or s3://bucket/prefix under which every step writes.",
    )
    sources: list[SourceConfig] = Field(min_length=1, description="The inputs, in order.")
    engine: Engine = Field(
        default=Engine.LOCAL,
        description="`local`: this process holds the records, step by step. `spark`: Apache "
        "Spark runs ingest, clean, dedup, decontaminate, redact, comprehension and the manifest's "
        "files, with "
        "the same per-record functions (dapt_data.spark_steps, dapt_data.spark_dedup): Spark's "
        "local mode on this machine's cores (the `spark` section) or the cluster that runs the "
        "job; each of those steps also writes `records.parquet/`. The outputs are byte for "
        "byte the same with either engine. synthesize and instructions run on the "
        "driver with either engine.",
    )
    ingest: IngestConfig = Field(
        default_factory=IngestConfig, description="Limits of what ingest reads."
    )
    clean: CleanConfig = Field(
        default_factory=CleanConfig, description="Quality filter bounds of every source."
    )
    dedup: DedupConfig = Field(
        default_factory=DedupConfig, description="Exact and near-duplicate removal."
    )
    decontaminate: DecontaminateConfig = Field(
        default_factory=DecontaminateConfig, description="Benchmark overlap removal."
    )
    spark: SparkConfig = Field(
        default_factory=SparkConfig,
        description="Local Spark session of the steps that run on Spark (`engine: spark`).",
    )
    redact: RedactConfig = Field(default_factory=RedactConfig, description="PII redaction.")
    manifest: ManifestConfig = Field(
        default_factory=ManifestConfig, description="The mixing manifest the trainer reads."
    )
    synthesize: SynthesizeConfig | None = Field(
        default=None,
        description="Teacher-generated examples; null: the synthesize step is skipped.",
    )
    comprehension: ComprehensionConfig | None = Field(
        default=None,
        description="Mined reading-comprehension texts; null: the comprehension step is skipped.",
    )
    instructions: InstructionsConfig | None = Field(
        default=None,
        description="Paraphrased instruction examples; null: the instructions step is skipped.",
    )

    @model_validator(mode="after")
    def _unique_source_names(self) -> PipelineConfig:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise Problems([f"sources: source names must be unique; repeated: {duplicates}"])
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
        raise ConfigError(str(path), [f"<file>: cannot read ({err})"]) from err
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        kind = path.suffix.lstrip(".") or "yaml"
        raise ConfigError(str(path), [f"<root>: not valid {kind} ({err})"]) from err
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"<root> = {type(data).__name__}: must be a mapping"])
    return parse_config(data, str(path), path.parent)


def parse_config(data: dict[str, Any], where: str, base: Path | None = None) -> PipelineConfig:
    """Validate a config mapping; every problem (schema, redact options, cross-key) at once.

    With `base`, relative paths are resolved against it first, so that the cross-key rules
    (a labelled set that is a benchmark, a source reading a benchmark's items) compare the
    folders the steps will read, not how they are spelled."""
    problems = _redact_problems(data)
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(where, validation_problems(err) + problems) from err
    if base is not None:
        config = resolve_paths(config, base)
        problems += input_problems(config)
    problems += cross_problems(config)
    if problems:
        raise ConfigError(where, problems)
    return config


def _redact_problems(data: dict[str, Any]) -> list[str]:
    """`redact.options` is `dapt_data.redact.RedactionConfig`, validated here with the rest."""
    redact = data.get("redact")
    options = redact.get("options", {}) if isinstance(redact, dict) else {}
    try:
        checked = RedactionConfig.model_validate(options)
    except ValidationError as err:
        return validation_problems(err, prefix="redact.options")
    problem = name_model_problem(checked.name_model) if checked.name_model else None
    return [problem] if problem else []


def _clean_problems(clean: CleanConfig, where: str) -> list[str]:
    problems = []
    if clean.min_chars > clean.max_chars:
        problems.append(
            f"{where}.min_chars = {clean.min_chars}: must be <= max_chars ({clean.max_chars})"
        )
    known = set(known_language_codes())
    for key in ("languages", "language_candidates"):
        codes: list[str] = getattr(clean, key)
        unknown = sorted(set(codes) - known)
        if unknown:
            problems.append(f"{where}.{key} = {codes}: unknown ISO 639-1 codes {unknown}")
    return problems


def cross_problems(config: PipelineConfig) -> list[str]:
    """Rules spanning keys, all collected, each `key = value: rule`."""
    problems: list[str] = []
    problems += _clean_problems(config.clean, "clean")
    for index, source in enumerate(config.sources):
        if source.clean is not None:
            problems += _clean_problems(config.clean_for(source.name), f"sources.{index}.clean")
        if source.pii_name_fields and source.format not in ROW_FORMATS:
            problems.append(
                f"sources.{index}.pii_name_fields = {source.pii_name_fields}: only for formats "
                f"jsonl/csv/chat, not '{source.format.value}'"
            )
        if source.label_field and source.format not in {Format.JSONL, Format.CSV}:
            problems.append(
                f"sources.{index}.label_field = '{source.label_field}': only for formats "
                f"jsonl/csv, not '{source.format.value}'"
            )
    problems += [
        f"decontaminate.references_only.{index} = '{b}': not in decontaminate.benchmarks"
        for index, b in enumerate(config.decontaminate.references_only)
        if not any(same_folder(b, listed) for listed in config.decontaminate.benchmarks)
    ]
    problems += _benchmark_source_problems(config)
    problems += _generated_problems(config)
    problems += _write_prefix_problems(config.output, os.environ.get(WRITE_PREFIX_ENV, ""))
    return problems


WRITE_PREFIX_ENV: str = json.loads(
    Path(__file__).with_name("job_contract.json").read_text(encoding="utf-8")
)["environment"]["writePrefix"]
"""Set by a run's data-prep job (``runs/<run>/``): its role may write only under that prefix."""


def _write_prefix_problems(output: str, write_prefix: str) -> list[str]:
    """An S3 output outside the job's writable prefix would fail at the first write; say so now."""
    if not write_prefix or not is_s3(output):
        return []
    key = output.removeprefix("s3://").partition("/")[2]
    if key.startswith(write_prefix):
        return []
    return [
        f"output = '{output}': outside {write_prefix!r}, the only prefix this job's role "
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
        for index, item in enumerate(config.instructions.sets):
            key = f"instructions.sets.{index}.path"
            if is_s3(item.path):
                problems.append(f"{key} = '{item.path}': must be a local folder")
                continue
            same = [b for b in config.decontaminate.benchmarks if same_folder(item.path, b)]
            if same:
                problems.append(
                    f"{key} = '{item.path}': the same set as decontaminate.benchmarks "
                    f"'{same[0]}' (same folder or same items; training on evaluation items); "
                    "use the training split"
                )
    if config.instructions is not None:
        problems += _instruction_source_problems(config, config.instructions.sources)
    for key, value in outputs.items():
        if value in names:
            problems.append(f"{key} = '{value}': already a source name")
    seen: dict[str, str] = {}
    for key, value in outputs.items():
        if value in seen:
            problems.append(f"{key} = '{value}': same name as {seen[value]}")
        seen.setdefault(value, key)
    return problems


def _source_names(key: str, wanted: list[str], names: set[str]) -> list[str]:
    return [
        f"{key}.{index} = '{name}': not a source name {sorted(names)}"
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
            problems.append(f"{key}.source = '{item.source}': not a source name {sorted(names)}")
        elif config.source(item.source).label_field is None:
            problems.append(
                f"{key}.source = '{item.source}': not a labelled dataset "
                "(a jsonl/csv source with label_field)"
            )
        if item.task not in LABELLED_TASKS:
            problems.append(
                f"{key}.task = '{item.task.value}': not a labelled task, use one of "
                f"{[t.value for t in LABELLED_TASKS]}"
            )
        if item.labels is not None:
            blank = [label for label in item.labels if not label.strip()]
            repeated = sorted({x for x in item.labels if item.labels.count(x) > 1})
            if blank or repeated:
                problems.append(
                    f"{key}.labels = {item.labels}: empty or repeated labels {blank + repeated}"
                )
    return problems


def input_problems(config: PipelineConfig) -> list[str]:
    """Local inputs that do not exist (a source, public ones included, a benchmark, a labelled
    set, the tokenizer), found before any step runs rather than by the step reading them.
    S3 inputs are checked by the steps (listing a prefix needs the job's credentials)."""
    problems = []
    for index, source in enumerate(config.sources):
        if not is_s3(source.path) and not os.path.exists(source.path):
            problems.append(
                f"sources.{index}.path = '{source.path}': does not exist "
                f"(source '{source.name}', origin {source.origin.value})"
            )
    for index, bench in enumerate(config.decontaminate.benchmarks):
        if not is_s3(bench) and not os.path.isdir(bench):
            problems.append(f"decontaminate.benchmarks.{index} = '{bench}': not a folder")
    if config.instructions is not None:
        for index, item in enumerate(config.instructions.sets):
            if not is_s3(item.path) and not os.path.isdir(item.path):
                problems.append(f"instructions.sets.{index}.path = '{item.path}': not a folder")
    tokenizer = config.manifest.tokenizer
    if tokenizer and not is_s3(tokenizer) and not os.path.isfile(tokenizer):
        problems.append(f"manifest.tokenizer = '{tokenizer}': not a file")
    return problems


def _benchmark_source_problems(config: PipelineConfig) -> list[str]:
    """A source that reads a benchmark's own files (inside its folder, or a copy of its items
    file) trains on evaluation items."""
    problems = []
    for index, source in enumerate(config.sources):
        if is_s3(source.path):
            continue
        real = os.path.realpath(source.path)
        digest = _file_digest(real)
        for bench in config.decontaminate.benchmarks:
            if is_s3(bench):
                continue
            root = os.path.realpath(bench)
            inside = real == root or real.startswith(root + os.sep)
            if inside or (digest is not None and digest == items_digest(bench)):
                problems.append(
                    f"sources.{index}.path = '{source.path}': reads the items of "
                    f"decontaminate.benchmarks '{bench}' (training on evaluation items)"
                )
    return problems


def _file_digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if os.path.isfile(path) else None
    except OSError:
        return None


def same_folder(a: str, b: str) -> bool:
    """Whether two local folders are one benchmark-format set: the same folder once symlinks,
    `..` and relative spellings are resolved, or folders whose items file has the same content
    (a copy)."""
    if is_s3(a) or is_s3(b):
        return a.rstrip("/") == b.rstrip("/")
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    digest = items_digest(a)
    return digest is not None and digest == items_digest(b)


def items_digest(folder: str) -> str | None:
    """sha256 of a set folder's items file (`items_file` of its benchmark.json, default
    items.jsonl); None when there is none to read."""
    root = Path(folder)
    try:
        manifest = json.loads((root / "benchmark.json").read_text(encoding="utf-8"))
        name = manifest.get("items_file", "items.jsonl") if isinstance(manifest, dict) else None
        return hashlib.sha256((root / str(name or "items.jsonl")).read_bytes()).hexdigest()
    except (OSError, ValueError):
        return None


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
ROW_FORMATS = frozenset({Format.JSONL, Format.CSV, Format.CHAT})
"""Formats whose records come from objects or rows with named fields."""
DEFAULT_PARAPHRASE_THRESHOLD = 0.55
"""Measured with bench/bench_decontaminate.py (docs/benchmarks.md)."""
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
