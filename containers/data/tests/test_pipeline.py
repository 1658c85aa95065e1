"""The whole pipeline on the example domain: counts, lineage, resume, CLI and config errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dapt_data.cli import batch_settings, main
from dapt_data.config import ConfigError, load_config, parse_config
from dapt_data.manifest import SHARE_TOLERANCE, read_manifest
from dapt_data.pipeline import run_all, run_clean, run_ingest
from pipeline_fixtures import BENCHMARKS, EXAMPLE, write_public_corpus


def _write_config(tmp_path: Path, **overrides: Any) -> Path:
    public = write_public_corpus(tmp_path / "public.jsonl")
    data: dict[str, Any] = {
        "output": "out",  # relative: resolved against the config's folder
        "sources": [
            {"name": "kb", "path": str(EXAMPLE / "kb"), "format": "markdown"},
            {
                "name": "chats",
                "path": str(EXAMPLE / "chats" / "chats.jsonl"),
                "format": "chat",
                "id_field": "chat_id",
            },
            {"name": "public", "path": public.name, "format": "jsonl", "origin": "public"},
        ],
        "decontaminate": {"benchmarks": [str(b) for b in BENCHMARKS]},
        "manifest": {"name": "website-builder", "target_domain_share": 0.02},
        **overrides,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_end_to_end_on_the_example_domain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the example KB and chats as completion data plus a small public corpus
    path = _write_config(tmp_path)
    # WHEN running the CLI
    assert main(["run", "--config", str(path)]) == 0
    printed = capsys.readouterr().out
    # THEN every step ran and printed its counts
    for step in (
        "raw: ran",
        "clean: ran",
        "dedup: ran",
        "decontaminate: ran",
        "redact: ran",
        "manifest: ran",
    ):
        assert step in printed
    out = tmp_path / "out"
    markers = {
        s: json.loads((out / s / "_step.json").read_text())["counts"]
        for s in ("raw", "clean", "dedup", "decontaminate", "redact")
    }
    # nothing is lost between steps: out + dropped of one step = in of the next
    assert markers["raw"]["out"] == 38 + 124 + 60
    for step, previous in (("clean", "raw"), ("dedup", "clean"), ("decontaminate", "dedup")):
        counts = markers[step]
        assert counts["in"] == markers[previous]["out"]
        assert counts["out"] + sum(counts["dropped"].values()) == counts["in"]
        dropped_lines = (out / step / "dropped.jsonl").read_text().splitlines()
        assert len(dropped_lines) == sum(counts["dropped"].values())
    # benchmark documents copied from chats are caught and name their item
    assert markers["decontaminate"]["dropped"]["benchmark_overlap"] > 0
    dropped = [
        json.loads(x)
        for x in (out / "decontaminate" / "dropped.jsonl").read_text().split("\n")
        if x
    ]
    assert all(d["matched"].startswith("quillsite-") for d in dropped)
    # PII in the chats is redacted
    assert markers["redact"]["records_redacted"] > 0
    # the manifest lists every source's final file with hash and counts, at the target share
    manifest = read_manifest(str(out / "manifests" / "website-builder" / "v1.json"))
    assert [s.name for s in manifest.sources] == ["kb", "chats", "public"]
    assert abs(manifest.mix.achieved_domain_share - 0.02) <= SHARE_TOLERANCE
    assert manifest.tokenizer["kind"] == "whitespace"
    final_records = sum(s.records for s in manifest.sources)
    assert final_records == markers["redact"]["out"]
    first = json.loads((out / "final" / "chats.jsonl").read_text().splitlines()[0])
    assert first["source_id"].startswith(f"chats:{EXAMPLE / 'chats' / 'chats.jsonl'}:")


def test_resume_skips_finished_steps_and_reruns_changed_ones(tmp_path: Path) -> None:
    # GIVEN a finished run
    path = _write_config(tmp_path)
    config = load_config(path)
    first = run_all(config)
    # WHEN running again unchanged
    second = run_all(config)
    # THEN every step is skipped with the same counts (no double counting) and no new version
    assert [r.skipped for r in second] == [True] * 6
    assert [r.counts for r in second[:5]] == [r.counts for r in first[:5]]
    assert second[5].counts["version"] == 1
    # WHEN the clean config changes
    changed = config.model_copy(
        update={"clean": config.clean.model_copy(update={"min_chars": 400})}
    )
    # THEN ingest is skipped and clean runs again
    assert run_ingest(changed).skipped
    rerun = run_clean(changed)
    assert not rerun.skipped
    assert rerun.counts["dropped"]["too_short"] > 0


def test_config_reports_every_problem_with_its_key(tmp_path: Path) -> None:
    # GIVEN a config with several mistakes
    data = {
        "output": "out",
        "sources": [
            {"name": "kb", "path": "kb", "format": "pdf"},
            {"name": "x", "format": "text", "kind": "chatty"},
        ],
        "dedup": {"threshold": 1.5},
        "redact": {"options": {"detector": "crystal-ball"}},
        "clean": {"languages": ["xx"], "min_chars": 10},
        "unknown": 1,
    }
    # WHEN validating
    with pytest.raises(ConfigError) as err:
        parse_config(data, "pipeline.yaml")
    # THEN each one is named by key
    message = str(err.value)
    for key in (
        "redact.options.detector",
        "sources.0.format",
        "sources.1.path",
        "sources.1.kind",
        "dedup.threshold",
        "unknown = 1: unknown key",
    ):
        assert key in message


def test_config_cross_field_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "output": "o",
                "sources": [{"name": "a", "path": "p", "format": "text"}],
                "clean": {"languages": ["xx"], "min_chars": 10, "max_chars": 5},
            },
            "c",
        )
    assert "clean.languages" in str(err.value)
    assert "clean.min_chars" in str(err.value)


def test_a_config_with_the_old_dedup_engine_is_told_where_the_engine_moved() -> None:
    # GIVEN a config from before the engine was chosen for the whole pipeline
    old = {
        "output": "o",
        "sources": [{"name": "a", "path": "p", "format": "text"}],
        "dedup": {"engine": "spark"},
    }
    # WHEN it is read THEN the error names the key and where it went
    with pytest.raises(ConfigError) as err:
        parse_config(old, "c")
    assert "top-level 'engine: spark'" in str(err.value)
    assert "dedup" in str(err.value)


def test_cli_exits_2_on_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"output": "o"}')
    assert main(["run", "--config", str(path)]) == 2
    assert "sources: field required" in capsys.readouterr().err


def test_batch_settings_come_from_the_environment() -> None:
    env = {
        "PIPELINE_CONFIG": "s3://b/pipeline.yaml",
        "OUTPUT_URI": "s3://b/run1",
        "STEPS": "ingest,clean",
    }
    assert batch_settings(env) == ("s3://b/pipeline.yaml", "s3://b/run1", ["ingest", "clean"])
    with pytest.raises(ConfigError) as err:
        batch_settings({"STEPS": "ingest,bake"})
    assert "PIPELINE_CONFIG: environment variable is not set" in str(err.value)
    assert "['bake']" in str(err.value)
