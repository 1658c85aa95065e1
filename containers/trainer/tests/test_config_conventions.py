"""Conventions the configs of dapt-eval, dapt-data and dapt-trainer share (each package tests its
own): one error shape, `Invalid <what> config '<source>' (N problem(s))` with one problem per
key, and a description on every field of every config model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from dapt_eval.conventions import problem_key, undocumented

from dapt_trainer import config_errors
from dapt_trainer.cli import main
from dapt_trainer.config import ConfigError, ExperimentConfig, load_config, parse_config


def test_a_config_error_has_a_source_problems_and_the_shared_message() -> None:
    err = ConfigError("exp.yaml", ["stages.0.steps = 0: must be >= 1", "experiment: required"])
    assert isinstance(err, ValueError) and isinstance(err, config_errors.ConfigError)
    assert err.source == "exp.yaml"
    assert err.problems == ["stages.0.steps = 0: must be >= 1", "experiment: required"]
    assert str(err) == (
        "Invalid trainer config 'exp.yaml' (2 problem(s)):\n"
        "  - stages.0.steps = 0: must be >= 1\n"
        "  - experiment: required"
    )


def test_every_problem_of_a_bad_config_names_its_key() -> None:
    stage: dict[str, Any] = {
        "name": "dapt",
        "model": {"path": "/m"},
        "data": {"sources": [{"name": "kb", "kind": "completion", "paths": ["a"]}] * 2},
        "optimizer": {"betas": [0.9, 1.5], "warmup_steps": 3},
        "steps": 2,
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"experiment": "x", "colour": "red", "stages": [stage, {"name": "sft"}]}, "bad.yaml"
        )
    err = caught.value
    assert err.source == "bad.yaml"
    assert [problem_key(p) for p in err.problems] == [
        "stages.0.data.sources",
        "stages.0.optimizer.betas",
        "stages.1.model",
        "stages.1.data",
        "stages.1.steps",
        "colour",
    ]
    assert str(err).startswith(f"Invalid trainer config 'bad.yaml' ({len(err.problems)} problem")
    # A cross-stage rule, checked once the stages are valid, names each stage's key too.
    good = {**stage, "data": {"sources": stage["data"]["sources"][:1]}, "optimizer": {}}
    late = {**good, "model": {"from_stage": "later"}}
    with pytest.raises(ConfigError) as caught:
        parse_config({"experiment": "x", "stages": [late, good]})
    assert [problem_key(p) for p in caught.value.problems] == [
        "stages.0.model.from_stage",
        "stages.1.name",
    ]


def test_file_and_environment_errors_have_the_same_shape(
    tmp_path: Path,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "exp.yaml"
    for data, problem in (
        (b"[unclosed", "<root>: not valid YAML"),
        (b"- a list", "<root> = list: must be a mapping"),
        (b"\xff\xfe", "<file>: cannot read"),
    ):
        path.write_bytes(data)
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert caught.value.source == str(path)
        assert caught.value.problems[0].startswith(problem)
    for absent in (str(tmp_path / "absent.yaml"), "s3://bucket/absent.yaml"):
        with pytest.raises(ConfigError) as caught:
            load_config(absent)
        assert caught.value.source == absent
        assert [problem_key(p) for p in caught.value.problems] == ["<file>"]
    # The CLI reports the same errors (and a missing environment) with exit code 2.
    assert main(["--config", str(tmp_path / "absent.yaml"), "--check"]) == 2
    assert capsys.readouterr().err.startswith(
        f"Invalid trainer config '{tmp_path / 'absent.yaml'}' (1 problem(s)):\n  - <file>: "
    )
    monkeypatch.delenv("DAPT_CONFIG", raising=False)
    monkeypatch.delenv("DAPT_OUTPUT", raising=False)
    assert main([]) == 2
    assert capsys.readouterr().err.startswith(
        "Invalid trainer config '<environment>' (1 problem(s)):\n  - DAPT_CONFIG: "
    )
    sources = [{"name": "kb", "kind": "completion", "paths": ["a.jsonl"]}]
    stage = {"name": "a", "model": {"path": "m"}, "data": {"sources": sources}, "steps": 100}
    path.write_text(yaml.safe_dump({"experiment": "x", "stages": [stage]}), encoding="utf-8")
    assert main(["--config", str(path)]) == 2  # no output anywhere
    assert capsys.readouterr().err.startswith(
        "Invalid trainer config '<environment>' (1 problem(s)):\n  - DAPT_OUTPUT: "
    )


def test_the_error_module_is_the_dapt_eval_one_byte_for_byte() -> None:
    # The trainer image does not install dapt-eval, so the shape is a copy; it may not drift.
    spec = importlib.util.find_spec("dapt_eval.config_errors")
    assert spec is not None and spec.origin is not None
    assert Path(config_errors.__file__).read_bytes() == Path(spec.origin).read_bytes()


CONFIG_MODELS: tuple[type, ...] = (ExperimentConfig,)
"""The roots of every config the trainer reads; nested models are found from their fields."""


def test_every_config_field_is_described() -> None:
    visited, missing = undocumented(CONFIG_MODELS)
    assert len(visited) >= 10  # the walk reached the nested sections
    assert missing == []
