"""The pipeline: ingest -> clean -> dedup -> decontaminate -> redact -> manifest, resumable.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from dapt_data.clean import clean_records
from dapt_data.config import PipelineConfig
from dapt_data.decontaminate import decontaminate_records, load_index
from dapt_data.dedup import dedup_records
from dapt_data.ingest import Ingested, ingest_file
from dapt_data.manifest import (
    SourceData,
    build_manifest,
    make_counter,
    publish,
)
from dapt_data.records import Dropped, Record, count_reasons, records_from_jsonl, to_jsonl
from dapt_data.redact import RedactionConfig, redact_records
from dapt_data.storage import exists, join, list_files, read_bytes, write_bytes


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
    config: PipelineConfig, step: str, key: str, files: dict[str, bytes], counts: dict[str, Any]
) -> StepResult:
    """Write a step's outputs, then its marker (last, so a crash leaves no marker)."""
    outputs = {}
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
    listing = {s.name: list_files(s.path, s.patterns()) for s in config.sources}
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
    result = Ingested()
    per_source: dict[str, dict[str, int]] = {}
    for source in config.sources:
        before = (len(result.records), len(result.quarantined))
        for ref in listing[source.name]:
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


def run_filter_step(
    config: PipelineConfig,
    step: str,
    previous: str,
    sections: tuple[str, ...],
    transform: Callable[[], Transform],
    extra_input: str = "",
) -> StepResult:
    """A records -> (kept, dropped) step; `transform` is built only when the step must run."""
    data = read_bytes(join(config.output, previous, RECORDS))
    key = step_key(step, sha256(data) + extra_input, config.section_hash(*sections))
    done = finished(config, step, key)
    if done:
        return done
    records = list(records_from_jsonl(data, join(config.output, previous, RECORDS)))
    kept, dropped = transform()(records)
    counts = {"in": len(records), "out": len(kept), "dropped": count_reasons(dropped)}
    files = {RECORDS: to_jsonl(kept), "dropped.jsonl": to_jsonl(dropped)}
    return commit(config, step, key, files, counts)


def run_clean(config: PipelineConfig) -> StepResult:
    """Normalise and filter."""
    return run_filter_step(
        config, "clean", "raw", ("clean",), lambda: lambda rs: clean_records(rs, config.clean)
    )


def run_dedup(config: PipelineConfig) -> StepResult:
    """Exact and near-duplicate removal."""
    return run_filter_step(
        config, "dedup", "clean", ("dedup",), lambda: lambda rs: dedup_records(rs, config.dedup)
    )


def run_decontaminate(config: PipelineConfig) -> StepResult:
    """Benchmark overlap removal (benchmark items hash into the key through the config paths
    and `items_sha256`, which `load_benchmark` verifies)."""
    section = config.decontaminate
    bench_hash = _benchmarks_fingerprint(section.benchmarks)

    def transform() -> Transform:
        index = load_index(section)
        return lambda rs: decontaminate_records(rs, index, section.threshold)

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
    data = read_bytes(join(config.output, "decontaminate", RECORDS))
    key = step_key("redact", sha256(data), config.section_hash("redact"))
    done = finished(config, "redact", key)
    if done:
        return done
    records = list(records_from_jsonl(data, join(config.output, "decontaminate", RECORDS)))
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
    data = read_bytes(join(config.output, previous, RECORDS))
    records = list(records_from_jsonl(data, join(config.output, previous, RECORDS)))
    counter = make_counter(config.manifest.tokenizer)
    sources: list[SourceData] = []
    for source in config.sources:
        mine = [r for r in records if r.source == source.name]
        body = to_jsonl(mine)
        uri = join(config.output, "final", f"{source.name}.jsonl")
        write_bytes(uri, body)
        sources.append(
            SourceData(
                source.name,
                source.kind.value,
                source.origin,
                uri,
                sha256(body),
                len(mine),
                counter.count([r.text for r in mine]),
            )
        )
    manifest = build_manifest(
        config.manifest.name,
        sources,
        config.manifest.target_domain_share,
        counter.describe(),
        config.section_hash(*ALL_SECTIONS),
    )
    published, uri, created = publish(config.output, manifest)
    counts = {
        "in": len(records),
        "manifest": uri,
        "version": published.version,
        "new_version": created,
        "domain_tokens": published.mix.domain_tokens,
        "public_tokens": published.mix.public_tokens,
        "achieved_domain_share": published.mix.achieved_domain_share,
        "weights": {s.name: s.sampling_weight for s in published.sources},
    }
    return StepResult("manifest", counts, skipped=not created)


def run_all(config: PipelineConfig) -> list[StepResult]:
    """Every step in order."""
    steps: list[Callable[[PipelineConfig], StepResult]] = [
        run_ingest,
        run_clean,
        run_dedup,
        run_decontaminate,
        run_redact,
        run_manifest,
    ]
    return [step(config) for step in steps]


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


RECORDS = "records.jsonl"
MARKER = "_step.json"
STEP_FORMAT = "1"  # bump when a step's output format or logic changes, to invalidate old runs
ALL_SECTIONS = ("sources", "ingest", "clean", "dedup", "decontaminate", "redact", "manifest")
