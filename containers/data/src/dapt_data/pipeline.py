"""The pipeline: ingest -> clean -> dedup -> decontaminate -> redact -> [synthesize]
-> [comprehension] -> [instructions] -> manifest, resumable. The bracketed steps run when their
config section is set; synthesize and instructions write instruction rows
(`dapt_data.generated.InstructionRow`) that the manifest lists as `kind: instruction` sources,
comprehension writes records the manifest lists as `kind: completion`.

Each step reads the previous step's `records.jsonl` and writes, under `<output>/<step>/`:
`records.jsonl`, `dropped.jsonl` (or `quarantine.jsonl` for ingest) and last `_step.json`:

    {"step": "clean", "key": "<sha256>", "counts": {...}, "outputs": {"records.jsonl": "<sha256>"}}

`key` hashes the step name, its input (file fingerprints for ingest, the input records' sha256
otherwise) and its config section. A step whose `_step.json` has the same key and whose
outputs still hash as recorded is **skipped**, and its counts are read back from `_step.json`:
counts are always computed from a step's whole output, never incremented, so a retry or a
resumed run cannot count twice. Files are rewritten whole (atomically on disk).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dapt_eval.providers import Provider
from dapt_eval.providers.factory import build_provider
from pydantic import BaseModel

from dapt_data.clean import clean_records
from dapt_data.comprehension import QA, DomainTerms, MiningConfig, mine, render
from dapt_data.config import (
    ComprehensionConfig,
    Engine,
    InstructionSourceConfig,
    PipelineConfig,
)
from dapt_data.decontaminate import NgramIndex, decontaminate_records, load_index
from dapt_data.dedup import dedup_records
from dapt_data.generated import CachedTeacher, InstructionRow, instruction_row, synthetic_row
from dapt_data.ingest import Ingested, ingest_file, listing_problems, oversized
from dapt_data.instructions import InstructionExample, build_instructions, labelled_example
from dapt_data.manifest import (
    SourceData,
    TokenCounter,
    build_manifest,
    make_counter,
    publish,
)
from dapt_data.records import (
    RAW_EXCERPT_CHARS,
    Dropped,
    Kind,
    Origin,
    Record,
    count_reasons,
    records_from_jsonl,
    to_jsonl,
)
from dapt_data.redact import RedactionConfig, redact_records
from dapt_data.storage import exists, join, list_source, read_bytes, sha256_of, write_bytes
from dapt_data.synthetic import SourceDocument, SynthesisConfig, generate_synthetic

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class StepError(RuntimeError):
    """A step ran but its result is unusable (the message names why); nothing is committed."""


@dataclass
class StepResult:
    """What a step did (or found done): counts and whether it was skipped."""

    step: str
    counts: dict[str, Any]
    skipped: bool
    outputs: dict[str, str] = field(default_factory=dict)


def sha256(data: bytes) -> str:
    """Hex sha256."""
    return hashlib.sha256(data).hexdigest()


def step_key(step: str, input_fingerprint: str, config_hash: str) -> str:
    """Resume key of a step run."""
    return sha256(f"{step}\n{input_fingerprint}\n{config_hash}\n{STEP_FORMAT}".encode())


def on_spark(config: PipelineConfig) -> bool:
    """Whether the corpus-sized steps run on Spark (`engine: spark`)."""
    return config.engine is Engine.SPARK


def spark_session(config: PipelineConfig) -> SparkSession:
    """The session of `engine: spark` (local mode as the `spark` section says, or the
    cluster's); PySpark and the JVM are loaded only then."""
    from dapt_data.spark import session  # noqa: PLC0415

    local = config.spark
    return session(local.cores, local.shuffle_partitions, local.driver_memory)


def _marker_uri(config: PipelineConfig, step: str) -> str:
    return join(config.output, step, MARKER)


def finished(config: PipelineConfig, step: str, key: str) -> StepResult | None:
    """The recorded result if this step already ran with this key and its outputs are intact."""
    marker = _marker_uri(config, step)
    if not exists(marker):
        return None
    data = json.loads(read_bytes(marker))
    if data.get("key") != key:
        return None
    for name, digest in data["outputs"].items():
        uri = join(config.output, step, name)
        if not exists(uri) or sha256(read_bytes(uri)) != digest:
            return None
    return StepResult(step, data["counts"], skipped=True, outputs=data["outputs"])


def commit(
    config: PipelineConfig,
    step: str,
    key: str,
    files: dict[str, bytes],
    counts: dict[str, Any],
    written: dict[str, str] | None = None,
) -> StepResult:
    """Write a step's outputs, then its marker (last, so a crash leaves no marker). `written`:
    the sha256 of outputs the step wrote itself (Spark's), by name under the step's folder."""
    outputs = dict(written or {})
    for name, data in files.items():
        write_bytes(join(config.output, step, name), data)
        outputs[name] = sha256(data)
    marker = {"step": step, "key": key, "counts": counts, "outputs": outputs}
    write_bytes(
        _marker_uri(config, step),
        (json.dumps(marker, indent=2, sort_keys=True) + "\n").encode("utf-8"),
    )
    return StepResult(step, counts, skipped=False, outputs=outputs)


def run_ingest(config: PipelineConfig) -> StepResult:
    """Read every source into `raw/records.jsonl` and `raw/quarantine.jsonl`."""
    listings = {s.name: list_source(s.path, s.patterns()) for s in config.sources}
    listing = {name: found.files for name, found in listings.items()}
    fingerprint = sha256(
        json.dumps(
            {name: [[r.uri, r.fingerprint] for r in refs] for name, refs in listing.items()},
            sort_keys=True,
        ).encode()
    )
    key = step_key("raw", fingerprint, config.section_hash("sources", "ingest"))
    done = finished(config, "raw", key)
    if done:
        return done
    if on_spark(config):
        from dapt_data import spark_steps  # noqa: PLC0415 (the JVM only when the engine is spark)

        written, counts = spark_steps.run_ingest(
            spark_session(config),
            config.sources,
            listings,
            config.ingest,
            join(config.output, "raw"),
        )
        return commit(config, "raw", key, {}, counts, written)
    result = Ingested()
    per_source: dict[str, dict[str, int]] = {}
    for source in config.sources:
        before = (len(result.records), len(result.quarantined))
        result.extend(listing_problems(source, listings[source.name]))
        for ref in listing[source.name]:
            too_large = oversized(source, ref, config.ingest)  # decided before reading it
            if too_large is not None:
                result.extend(too_large)
                continue
            result.extend(ingest_file(source, ref, read_bytes(ref.uri), config.ingest))
        per_source[source.name] = {
            "files": len(listing[source.name]),
            "records": len(result.records) - before[0],
            "quarantined": len(result.quarantined) - before[1],
        }
    counts = {
        "in_files": sum(len(v) for v in listing.values()),
        "out": len(result.records),
        "quarantined": count_reasons(result.quarantined),
        "sources": per_source,
    }
    files = {RECORDS: to_jsonl(result.records), "quarantine.jsonl": to_jsonl(result.quarantined)}
    return commit(config, "raw", key, files, counts)


Transform = Callable[[list[Record]], tuple[list[Record], list[Dropped]]]
"""Treats each record on its own; must pickle for `engine: spark` (a `functools.partial` of a
module-level function), which broadcasts it to the executors."""


def run_filter_step(
    config: PipelineConfig,
    step: str,
    previous: str,
    sections: tuple[str, ...],
    transform: Callable[[], Transform],
    extra_input: str = "",
) -> StepResult:
    """A records -> (kept, dropped) step; `transform` is built only when the step must run."""
    source = join(config.output, previous, RECORDS)
    key = step_key(step, sha256_of(source) + extra_input, config.section_hash(*sections))
    done = finished(config, step, key)
    if done:
        return done
    if on_spark(config):
        from dapt_data import spark_steps  # noqa: PLC0415 (the JVM only when the engine is spark)

        written, counts = spark_steps.run_filter(
            spark_session(config), source, join(config.output, step), transform()
        )
        return commit(config, step, key, {}, counts, written)
    records = list(records_from_jsonl(read_bytes(source), source))
    kept, dropped = transform()(records)
    counts = {"in": len(records), "out": len(kept), "dropped": count_reasons(dropped)}
    files = {RECORDS: to_jsonl(kept), "dropped.jsonl": to_jsonl(dropped)}
    return commit(config, step, key, files, counts)


def run_clean(config: PipelineConfig) -> StepResult:
    """Normalise and filter (with each source's own bounds where it sets them)."""
    overrides = config.clean_overrides()
    per_source = {name: config.clean_for(name) for name in overrides}
    # Sources' own bounds are part of the resume key; without any, the key is what it was.
    extra = sha256(json.dumps(overrides, sort_keys=True).encode()) if overrides else ""
    return run_filter_step(
        config,
        "clean",
        "raw",
        ("clean",),
        lambda: partial(clean_records, config=config.clean, per_source=per_source),
        extra_input=extra,
    )


def run_dedup(config: PipelineConfig) -> StepResult:
    """Exact and near-duplicate removal, in this process or on Spark (`engine`)."""
    if on_spark(config):
        return _run_dedup_spark(config)
    return run_filter_step(
        config, "dedup", "clean", ("dedup",), lambda: lambda rs: dedup_records(rs, config.dedup)
    )


def _run_dedup_spark(config: PipelineConfig) -> StepResult:
    """`dapt_data.spark_dedup` on the clean records: the same key, outputs and counts as the
    local engine, plus `records.parquet/` (its part files are outputs the marker checks)."""
    from dapt_data import spark_dedup  # noqa: PLC0415 (the JVM only when the engine is spark)

    source = join(config.output, "clean", RECORDS)
    key = step_key("dedup", sha256_of(source), config.section_hash("dedup"))
    done = finished(config, "dedup", key)
    if done:
        return done
    step_dir = join(config.output, "dedup")
    written, counts = spark_dedup.run_step(spark_session(config), source, step_dir, config.dedup)
    return commit(config, "dedup", key, {}, counts, written)


def run_decontaminate(config: PipelineConfig) -> StepResult:
    """Benchmark overlap removal (benchmark items hash into the key through the config paths
    and `items_sha256`, which `load_benchmark` verifies)."""
    section = config.decontaminate
    bench_hash = _benchmarks_fingerprint(section.benchmarks)

    def transform() -> Transform:
        index = load_index(section)
        return partial(decontaminate_records, index=index, threshold=section.threshold)

    return run_filter_step(
        config, "decontaminate", "dedup", ("decontaminate",), transform, extra_input=bench_hash
    )


def _benchmarks_fingerprint(roots: list[str]) -> str:
    # benchmark.json carries items_sha256, which load_benchmark verifies against the items.
    digests = [sha256(read_bytes(join(r, "benchmark.json"))) for r in roots]
    return sha256("\n".join(digests).encode())


def run_redact(config: PipelineConfig) -> StepResult:
    """PII redaction with `dapt_data.redact.redact_records` (no records are dropped)."""
    if not config.redact.enabled:
        data = read_bytes(join(config.output, "decontaminate", RECORDS))
        key = step_key("redact", sha256(data), config.section_hash("redact"))
        return finished(config, "redact", key) or commit(
            config,
            "redact",
            key,
            {RECORDS: data},
            {"in": data.count(b"\n"), "out": data.count(b"\n"), "redacted": "disabled"},
        )
    return _run_redact_enabled(config)


def _run_redact_enabled(config: PipelineConfig) -> StepResult:
    options = RedactionConfig.model_validate(config.redact.options)
    source = join(config.output, "decontaminate", RECORDS)
    key = step_key("redact", sha256_of(source), config.section_hash("redact"))
    done = finished(config, "redact", key)
    if done:
        return done
    if on_spark(config):
        from dapt_data import spark_steps  # noqa: PLC0415 (the JVM only when the engine is spark)

        written, counts = spark_steps.run_redact(
            spark_session(config), source, join(config.output, "redact"), options
        )
        return commit(config, "redact", key, {}, counts, written)
    records = list(records_from_jsonl(read_bytes(source), source))
    redacted, report = redact_records(records, options)
    counts = {
        "in": len(records),
        "out": len(redacted),
        "records_redacted": report.records_redacted,
        "spans_by_type": report.spans_by_type,
    }
    return commit(config, "redact", key, {RECORDS: to_jsonl(redacted)}, counts)


def run_manifest(config: PipelineConfig, previous: str = "redact") -> StepResult:
    """Split the final records per source into `final/<source>.jsonl` and publish a manifest."""
    counter = make_counter(config.manifest.tokenizer)
    files = _final_files(config, previous, counter)
    sources = [
        SourceData(
            source.name, source.kind.value, source.origin, *files[source.name], source.weight
        )
        for source in config.sources
    ]
    for step, name, origin in generated_outputs(config):
        kind, texts, body = _generated_final(config, step)
        uri = join(config.output, "final", f"{name}.jsonl")
        write_bytes(uri, body)
        sources.append(
            SourceData(
                name,
                kind.value,
                origin,
                uri,
                sha256(body),
                len(texts),
                counter.count(texts),
                getattr(config, step).weight,
            )
        )
    sections = ALL_SECTIONS + tuple(s for s, _, _ in generated_outputs(config))
    manifest = build_manifest(
        config.manifest.name,
        sources,
        config.manifest.target_domain_share,
        counter.describe(),
        config.section_hash(*sections),
    )
    published, uri, created = publish(config.output, manifest)
    counts = {
        "in": sum(files[s.name][2] for s in config.sources),
        "manifest": uri,
        "version": published.version,
        "new_version": created,
        "domain_tokens": published.mix.domain_tokens,
        "public_tokens": published.mix.public_tokens,
        "achieved_domain_share": published.mix.achieved_domain_share,
        "weights": {s.name: s.sampling_weight for s in published.sources},
    }
    return StepResult("manifest", counts, skipped=not created)


def _final_files(
    config: PipelineConfig, previous: str, counter: TokenCounter
) -> dict[str, tuple[str, str, int, int]]:
    """Per source: `final/<source>.jsonl` (its records of `previous`, in order) written, with
    its URI, sha256, records and tokens."""
    source = join(config.output, previous, RECORDS)
    names = [s.name for s in config.sources]
    final = join(config.output, "final")
    if on_spark(config):
        from dapt_data import spark_steps  # noqa: PLC0415 (the JVM only when the engine is spark)

        return spark_steps.source_files(spark_session(config), source, names, final, counter)
    records = list(records_from_jsonl(read_bytes(source), source))
    out = {}
    for name in names:
        mine = [r for r in records if r.source == name]
        body = to_jsonl(mine)
        uri = join(final, f"{name}.jsonl")
        write_bytes(uri, body)
        out[name] = (uri, sha256(body), len(mine), counter.count([r.text for r in mine]))
    return out


def _generated_final(config: PipelineConfig, step: str) -> tuple[Kind, list[str], bytes]:
    """A generating step's rows as the trainer reads them: kind, texts (counted), file."""
    if step == "comprehension":
        records = _read_records(config, step)
        return Kind.COMPLETION, [r.text for r in records], to_jsonl(records)
    rows = _read_rows(config, step)
    return Kind.INSTRUCTION, [r.text() for r in rows], to_jsonl(rows)


def generated_outputs(config: PipelineConfig) -> list[tuple[str, str, Origin]]:
    """(step, output source name, origin) of each configured generating step."""
    outputs = []
    if config.synthesize is not None:
        outputs.append(("synthesize", config.synthesize.output, config.synthesize.origin))
    if config.comprehension is not None:
        outputs.append(("comprehension", config.comprehension.output, config.comprehension.origin))
    if config.instructions is not None:
        outputs.append(("instructions", config.instructions.output, config.instructions.origin))
    return outputs


def _read_rows(config: PipelineConfig, step: str) -> list[InstructionRow]:
    uri = join(config.output, step, RECORDS)
    if not exists(_marker_uri(config, step)):
        raise FileNotFoundError(
            f"{_marker_uri(config, step)} is missing: run the '{step}' step before the manifest"
        )
    lines = read_bytes(uri).decode("utf-8").splitlines()
    return [InstructionRow.model_validate_json(line) for line in lines if line.strip()]


def _read_records(config: PipelineConfig, step: str) -> list[Record]:
    if not exists(_marker_uri(config, step)):
        raise FileNotFoundError(
            f"{_marker_uri(config, step)} is missing: run the '{step}' step before the manifest"
        )
    uri = join(config.output, step, RECORDS)
    return list(records_from_jsonl(read_bytes(uri), uri))


def not_configured(step: str) -> StepResult:
    """The result of an optional step whose config section is absent."""
    return StepResult(step, {"state": f"not configured (no '{step}' section)"}, skipped=True)


def run_synthesize(config: PipelineConfig, teacher: Provider | None = None) -> StepResult:
    """Teacher-generated Q&A / reading comprehension from the redacted domain records.

    Finished teacher calls are stored in `synthesize/teacher_cache.jsonl`, so a retry after a
    crash asks the teacher only for what is missing; a finished step makes no call at all.
    `teacher` overrides `synthesize.teacher` (tests pass a scripted provider).
    """
    section = config.synthesize
    if section is None:
        return not_configured("synthesize")
    data = read_bytes(join(config.output, "redact", RECORDS))
    fingerprint = sha256(data)
    if config.decontaminate.benchmarks:  # the guard's inputs are part of what the rows depend on
        bench = _benchmarks_fingerprint(config.decontaminate.benchmarks)
        fingerprint += f"\nbenchmarks:{bench}:{config.section_hash('decontaminate')}"
    key = step_key("synthesize", fingerprint, config.section_hash("sources", "synthesize"))
    done = finished(config, "synthesize", key)
    if done:
        return done
    wanted = set(section.sources) or {
        s.name for s in config.sources if s.origin is Origin.DOMAIN and s.kind is Kind.COMPLETION
    }
    records = list(records_from_jsonl(data, join(config.output, "redact", RECORDS)))
    documents = [
        SourceDocument(source_id=r.source_id, text=r.text) for r in records if r.source in wanted
    ]
    cached = CachedTeacher(
        teacher or build_provider(section.teacher), join(config.output, "synthesize", CACHE)
    )
    settings = SynthesisConfig(
        tasks=tuple(section.tasks),
        questions_per_passage=section.questions_per_passage,
        max_passage_chars=section.max_passage_chars,
        min_passage_chars=section.min_passage_chars,
        min_grounding=section.min_grounding,
        near_dup_threshold=section.near_dup_threshold,
        decoding=SynthesisConfig().decoding.model_copy(update={"max_tokens": section.max_tokens}),
        concurrency=section.concurrency,
    )
    try:
        examples, quarantined, report = generate_synthetic(documents, cached, settings)
    finally:
        cached.flush()
    rows = [synthetic_row(e, section.output, section.origin) for e in examples]
    guard = _generated_guard(config)
    overlapping: list[Dropped] = []
    if guard is not None:  # a teacher may well write a benchmark question back
        kept_ids, overlapping = _guarded(
            [(r.id, r.source_id, r.text()) for r in rows],
            guard,
            config.decontaminate.threshold,
            section.output,
            "synthesize",
        )
        rows = [r for r in rows if r.id in kept_ids]
    limit = section.max_examples or len(examples)
    over = [
        {
            "step": "synthesize",
            "reason": "max_examples",
            "detail": f"beyond synthesize.max_examples {limit}",
            "matched": None,
            "score": None,
            "record": r,
        }
        for r in (row.model_dump(mode="json") for row in rows[limit:])
    ]
    if report.generations and sum(report.quarantined.values()) >= report.generations:
        # nothing the teacher wrote was usable: a broken teacher, not an empty result
        write_bytes(join(config.output, "synthesize", "quarantine.jsonl"), to_jsonl(quarantined))
        reasons = dict(Counter(q.reason for q in quarantined))
        raise StepError(
            f"synthesize: all {len(quarantined)} teacher outputs were quarantined {reasons} "
            f"(see {join(config.output, 'synthesize', 'quarantine.jsonl')}); check "
            f"synthesize.teacher ({section.teacher.kind} {section.teacher.model_id})"
        )
    dropped_counts = count_reasons(overlapping)
    if over:
        dropped_counts["max_examples"] = len(over)
    counts = {
        "documents": len(documents),
        "out": len(rows[:limit]),
        "teacher_calls": cached.calls,
        "cache_hits": cached.hits,
        "dropped": dropped_counts,
        "report": report.model_dump(mode="json"),
    }
    dropped_rows = [d.model_dump(mode="json") for d in overlapping] + over
    files = {
        RECORDS: to_jsonl(rows[:limit]),
        "quarantine.jsonl": to_jsonl(quarantined),
        "dropped.jsonl": _json_lines(dropped_rows),
    }
    return commit(config, "synthesize", key, files, counts)


def run_comprehension(config: PipelineConfig) -> StepResult:
    """Reading-comprehension texts mined from the redacted domain records (no teacher): each
    record that yields tasks becomes one record of the output source, its text followed by
    the tasks (`dapt_data.comprehension`). Domain terms are measured against the redacted
    public records when there are any."""
    section = config.comprehension
    if section is None:
        return not_configured("comprehension")
    source = join(config.output, "redact", RECORDS)
    key = step_key(
        "comprehension", sha256_of(source), config.section_hash("sources", "comprehension")
    )
    done = finished(config, "comprehension", key)
    if done:
        return done
    wanted = set(section.sources) or {
        s.name for s in config.sources if s.origin is Origin.DOMAIN and s.kind is Kind.COMPLETION
    }
    settings = MiningConfig(
        tasks=section.tasks,
        max_per_task=section.max_per_task,
        min_sentence_words=section.min_sentence_words,
        seed=section.seed,
    )
    if on_spark(config):
        from dapt_data import spark_steps  # noqa: PLC0415 (the JVM only when the engine is spark)

        written, counts = spark_steps.run_comprehension(
            spark_session(config),
            source,
            join(config.output, "comprehension"),
            wanted,
            settings,
            section,
        )
        return commit(config, "comprehension", key, {}, counts, written)
    records = list(records_from_jsonl(read_bytes(source), source))
    mined_from = [r for r in records if r.source in wanted]
    terms = DomainTerms.count(
        (r.text for r in mined_from), (r.text for r in records if r.origin is Origin.PUBLIC)
    )
    out: list[Record] = []
    per_task: Counter[str] = Counter()
    for record in mined_from:
        tasks = mine(record.source_id, record.text, settings, terms)
        if not tasks:
            continue
        per_task.update(t.task.value for t in tasks)
        out.append(comprehension_record(record, tasks, section))
    counts = {
        "documents": len(mined_from),
        "out": len(out),
        "without_tasks": len(mined_from) - len(out),
        "tasks": dict(sorted(per_task.items())),
    }
    return commit(config, "comprehension", key, {RECORDS: to_jsonl(out)}, counts)


def comprehension_record(record: Record, tasks: list[QA], section: ComprehensionConfig) -> Record:
    """The record of the comprehension source made from `record` and its mined tasks."""
    return Record(
        id=sha256(f"{record.source_id}\0{section.output}".encode())[:16],
        source=section.output,
        source_id=record.source_id,
        kind=Kind.COMPLETION,
        origin=section.origin,
        text=render(record.text, tasks),
        meta={"tasks": str(len(tasks))},
    )


def run_instructions(config: PipelineConfig) -> StepResult:
    """Paraphrased prompt/response rows from labelled sets (an unreadable set is quarantined)
    and from labelled pipeline sources, read after redact (a record without a label, or with
    one outside `labels`, is quarantined)."""
    section = config.instructions
    if section is None:
        return not_configured("instructions")
    parts = [_folder_fingerprint(s.path) for s in section.sets]
    redacted = _read_redacted(config) if section.sources else b""
    if section.sources:
        parts.append(f"redact:{sha256(redacted)}")
    benchmarks = config.decontaminate.benchmarks
    if benchmarks:  # the guard's inputs are part of what the rows depend on
        parts.append(f"benchmarks:{_benchmarks_fingerprint(benchmarks)}")
    fingerprint = sha256("\n".join(parts).encode("utf-8"))
    key = step_key("instructions", fingerprint, config.section_hash("instructions"))
    done = finished(config, "instructions", key)
    if done:
        return done
    rows: dict[str, InstructionRow] = {}
    quarantined: list[dict[str, Any]] = []
    per_set: dict[str, int] = {}
    made: list[InstructionExample] = []
    for item in section.sets:
        try:
            from_set = [
                example
                for offset in range(section.paraphrases)
                for example in build_instructions(Path(item.path), item.task, section.seed + offset)
            ]
        except (OSError, ValueError) as err:  # a broken set is quarantined, never dropped
            quarantined.append(
                {
                    "source": section.output,
                    "source_id": item.path,
                    "reason": "bad_set",
                    "detail": str(err),
                    "raw": "",
                }
            )
            continue
        per_set[item.path] = len(from_set)
        made += from_set
    guard = _generated_guard(config) if section.sets else None
    dropped: list[Dropped] = []
    if guard is not None:
        kept_ids, dropped = _guarded(
            [(e.id, e.source_id, f"{e.prompt}\n{e.response}") for e in made],
            guard,
            config.decontaminate.threshold,
            section.output,
            "instructions",
        )
        made = [e for e in made if e.id in kept_ids]
    per_source: dict[str, int] = {}
    if section.sources:
        records = list(records_from_jsonl(redacted, join(config.output, "redact", RECORDS)))
        for wanted in section.sources:
            mine = [r for r in records if r.source == wanted.source]
            from_source, rejected = labelled_examples(
                mine, wanted, range(section.seed, section.seed + section.paraphrases)
            )
            per_source[wanted.source] = len(from_source)
            made += from_source
            quarantined += rejected
    repeated = 0
    for example in made:
        if example.id in rows:  # two seeds picked the same phrasing for an item
            repeated += 1
            continue
        rows[example.id] = instruction_row(example, section.output, section.origin)
    counts = {
        "sets": len(section.sets),
        "generated": per_set,
        "dropped": count_reasons(dropped),
        "sources": len(section.sources),
        "generated_from_sources": per_source,
        "repeated_phrasing": repeated,
        "out": len(rows),
        "quarantined": dict(sorted(Counter(q["reason"] for q in quarantined).items())),
    }
    files = {
        RECORDS: to_jsonl(list(rows.values())),
        "quarantine.jsonl": _json_lines(quarantined),
        "dropped.jsonl": to_jsonl(dropped),
    }
    return commit(config, "instructions", key, files, counts)


def _generated_guard(config: PipelineConfig) -> NgramIndex | None:
    """The decontamination index for generated rows (synthesize, instructions from sets).
    Stricter than for records: benchmark items down to `GENERATED_MIN_ITEM_WORDS` words are
    checked (a short utterance of a training set that contains a short benchmark item whole
    is a copy, whereas a KB article may say "how do I connect my domain" by chance)."""
    section = config.decontaminate
    if not section.benchmarks:
        return None
    strict = section.model_copy(
        update={"min_item_words": min(section.min_item_words, GENERATED_MIN_ITEM_WORDS)}
    )
    return load_index(strict)


def _guarded(
    rows: list[tuple[str, str, str]], index: NgramIndex, threshold: float, output: str, step: str
) -> tuple[set[str], list[Dropped]]:
    """The ids of the generated `(id, source_id, prompt + response)` rows that overlap no
    benchmark item, and the others as `benchmark_overlap` (in `<step>/dropped.jsonl`), by the
    same rules as records in decontaminate."""
    as_records = [
        Record(
            id=row_id,
            source=output,
            source_id=source_id,
            kind=Kind.INSTRUCTION,
            origin=Origin.DOMAIN,
            text=text,
        )
        for row_id, source_id, text in rows
    ]
    kept, dropped = decontaminate_records(as_records, index, threshold)
    return {r.id for r in kept}, [d.model_copy(update={"step": step}) for d in dropped]


def labelled_examples(
    records: list[Record], wanted: InstructionSourceConfig, seeds: range
) -> tuple[list[InstructionExample], list[dict[str, Any]]]:
    """Examples from one labelled source's records, and quarantine rows for records with no
    label (`missing_label`) or a label outside `wanted.labels` (`unknown_label`)."""
    labels = wanted.labels or sorted({r.label for r in records if r.label and r.label.strip()})
    allowed = set(labels)
    examples: list[InstructionExample] = []
    rejected: list[dict[str, Any]] = []
    for record in records:
        if not record.label or not record.label.strip():
            reason, detail = "missing_label", "record has no label"
        elif record.label not in allowed:
            reason = "unknown_label"
            detail = f"label {record.label!r} is not in instructions.sources labels {labels}"
        else:
            examples += [
                labelled_example(
                    wanted.task, record.source_id, record.text, record.label, labels, seed
                )
                for seed in seeds
            ]
            continue
        rejected.append(
            {
                "source": record.source,
                "source_id": record.source_id,
                "reason": reason,
                "detail": f"{record.source_id}: {detail}",
                "raw": record.text[:RAW_EXCERPT_CHARS],
            }
        )
    return examples, rejected


def _read_redacted(config: PipelineConfig) -> bytes:
    uri = join(config.output, "redact", RECORDS)
    if not exists(_marker_uri(config, "redact")):
        raise FileNotFoundError(
            f"{_marker_uri(config, 'redact')} is missing: run the 'redact' step before "
            "'instructions' (instructions.sources reads the redacted records)"
        )
    return read_bytes(uri)


def _folder_fingerprint(folder: str) -> str:
    """sha256 of every file of a local set folder (a missing folder fingerprints as such)."""
    root = Path(folder)
    if not root.is_dir():
        return f"{folder}:missing"
    parts = [
        f"{p.relative_to(root)}:{sha256(p.read_bytes())}"
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]
    return f"{folder}\n" + "\n".join(parts)


def _json_lines(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode(
        "utf-8"
    )


def configured_steps(
    config: PipelineConfig, teacher: Provider | None = None
) -> list[tuple[str, Callable[[PipelineConfig], StepResult]]]:
    """(name, step) of every step `run_all` runs, in order; the optional ones only when their
    section is set. Callers that report progress per step run them one by one."""
    steps: list[tuple[str, Callable[[PipelineConfig], StepResult]]] = [
        ("ingest", run_ingest),
        ("clean", run_clean),
        ("dedup", run_dedup),
        ("decontaminate", run_decontaminate),
        ("redact", run_redact),
    ]
    if config.synthesize is not None:
        steps.append(("synthesize", lambda c: run_synthesize(c, teacher)))
    if config.comprehension is not None:
        steps.append(("comprehension", run_comprehension))
    if config.instructions is not None:
        steps.append(("instructions", run_instructions))
    steps.append(("manifest", run_manifest))
    return steps


def run_all(config: PipelineConfig, teacher: Provider | None = None) -> list[StepResult]:
    """Every step in order; the optional ones only when their section is set."""
    return [step(config) for _, step in configured_steps(config, teacher)]


def summary(results: list[StepResult]) -> str:
    """Human-readable counts per step and reason."""
    lines = []
    for result in results:
        state = "skipped (already done)" if result.skipped else "ran"
        lines.append(f"{result.step}: {state}")
        for name, value in result.counts.items():
            lines.append(f"  {name}: {_fmt(value)}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "none"
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return str(value)


GENERATED_MIN_ITEM_WORDS = 4
"""Benchmark items down to this many words are checked against rows made from labelled sets."""
RECORDS = "records.jsonl"
MARKER = "_step.json"
CACHE = "teacher_cache.jsonl"
STEP_FORMAT = "4"  # bump when a step's output format or logic changes, to invalidate old runs
ALL_SECTIONS = ("sources", "ingest", "clean", "dedup", "decontaminate", "redact", "manifest")
