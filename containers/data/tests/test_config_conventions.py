"""Conventions the configs of dapt-eval, dapt-data and dapt-trainer share (each package tests its
own): one error shape, `Invalid <what> config '<source>' (N problem(s))` with one problem per
key, and a description on every field of every config model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dapt_eval.config_errors
import pytest
from dapt_eval.conventions import problem_key, undocumented

from dapt_data.cli import batch_settings, configured_steps
from dapt_data.comprehension import MiningConfig
from dapt_data.config import ConfigError, PipelineConfig, load_config, parse_config
from dapt_data.redact import RedactionConfig
from dapt_data.synthetic import SynthesisConfig


def test_a_config_error_has_a_source_problems_and_the_shared_message() -> None:
    err = ConfigError("pipeline.yaml", ["dedup.threshold = 1.5: must be <= 1", "output: required"])
    assert isinstance(err, ValueError)
    assert isinstance(err, dapt_eval.config_errors.ConfigError)
    assert err.source == "pipeline.yaml"
    assert err.problems == ["dedup.threshold = 1.5: must be <= 1", "output: required"]
    assert str(err) == (
        "Invalid data pipeline config 'pipeline.yaml' (2 problem(s)):\n"
        "  - dedup.threshold = 1.5: must be <= 1\n"
        "  - output: required"
    )


def test_every_problem_of_a_bad_config_names_its_key(tmp_path: Path) -> None:
    schema: dict[str, Any] = {
        "sources": [
            {"name": "kb", "path": "kb", "format": "pdf"},
            {"name": "kb", "path": "kb", "format": "text"},
        ],
        "redact": {"options": {"detector": "crystal-ball"}},
        "synthesize": {"teacher": {"kind": "openai", "model_id": "t"}},
        "colour": "red",
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(schema, "a.yaml")
    assert caught.value.source == "a.yaml"
    assert [problem_key(p) for p in caught.value.problems] == [
        "output",
        "sources.0.format",
        "synthesize.teacher.base_url",
        "colour",
        "redact.options.detector",
    ]
    # Rules across keys, checked once the schema holds, name their keys the same way.
    cross: dict[str, Any] = {
        "output": "o",
        "sources": [{"name": "kb", "path": "kb", "format": "text", "label_field": "y"}],
        "clean": {"min_chars": 10, "max_chars": 5},
        "decontaminate": {"references_only": ["b"]},
        "comprehension": {"sources": ["nope"], "output": "kb"},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(cross, "b.yaml")
    err = caught.value
    assert [problem_key(p) for p in err.problems] == [
        "clean.min_chars",
        "sources.0.label_field",
        "decontaminate.references_only.0",
        "comprehension.sources.0",
        "comprehension.output",
    ]
    assert str(err).startswith(f"Invalid data pipeline config 'b.yaml' ({len(err.problems)} ")


def test_file_environment_and_step_errors_have_the_same_shape(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    for text, problem in (
        ("[unclosed", "<root>: not valid yaml"),
        ("- a list", "<root> = list: must be a mapping"),
    ):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert caught.value.source == str(path)
        assert caught.value.problems[0].startswith(problem)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")
    assert [problem_key(p) for p in caught.value.problems] == ["<file>"]
    with pytest.raises(ConfigError) as caught:
        batch_settings({"STEPS": "ingest,bake"})
    assert caught.value.source == "<environment>"
    assert [problem_key(p) for p in caught.value.problems] == ["PIPELINE_CONFIG", "STEPS"]
    config = parse_config(
        {"output": "o", "sources": [{"name": "a", "path": "a", "format": "text"}]}, "c.yaml"
    )
    with pytest.raises(ConfigError) as caught:
        configured_steps(config, ["synthesize"], every=False, source="c.yaml")
    assert caught.value.source == "c.yaml"
    assert [problem_key(p) for p in caught.value.problems] == ["synthesize"]


CONFIG_MODELS: tuple[type, ...] = (PipelineConfig, RedactionConfig, SynthesisConfig, MiningConfig)
"""The roots of every config the pipeline reads or builds from it (`redact.options` is a
RedactionConfig; the synthesize and comprehension steps pass theirs on); nested models, dapt-eval's
provider spec among them, are found from their fields."""


def test_every_config_field_is_described() -> None:
    visited, missing = undocumented(CONFIG_MODELS)
    names = {cls.__name__ for cls in visited}  # the walk reached the nested sections ...
    assert len(names) >= 19
    assert {"InstructionSourceConfig", "CleanConfig"} <= names
    assert {"ProviderSpec", "OfflineBehaviour", "DecodingParams"} <= names  # ... dapt-eval's too
    assert missing == []
