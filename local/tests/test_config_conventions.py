"""Conventions the configs of dapt-eval, dapt-data, dapt-trainer and dapt-local share (each
package tests its own): one error shape, `Invalid <what> config '<source>' (N problem(s))` with
one problem per key, and a description on every field of every config model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dapt_eval.config_errors
import pytest
import yaml
from dapt_eval.conventions import problem_key, undocumented

from conftest import EXAMPLE
from dapt_local.cli import main
from dapt_local.config import AdaptConfig, ConfigError, load_config


def test_a_config_error_has_a_source_problems_and_the_shared_message() -> None:
    err = ConfigError("adapt.yaml", ["serve.port = 70000: must be <= 65535", "name: required"])
    assert isinstance(err, ValueError)
    assert isinstance(err, dapt_eval.config_errors.ConfigError)
    assert err.source == "adapt.yaml"
    assert err.problems == ["serve.port = 70000: must be <= 65535", "name: required"]
    assert str(err) == (
        "Invalid local run config 'adapt.yaml' (2 problem(s)):\n"
        "  - serve.port = 70000: must be <= 65535\n"
        "  - name: required"
    )


def example() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return raw


def write(path: Path, raw: Any) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_every_problem_of_a_bad_config_names_its_key(tmp_path: Path) -> None:
    raw = example()
    del raw["base_model"]["package"]
    raw["serve"]["port"] = 70000
    raw["evaluate"]["benchmarks"]["mcq"]["sample"] = 0
    raw["evaluate"]["retrieval"]["colour"] = "red"
    raw["bogus"] = 1
    path = write(tmp_path / "bad.yaml", raw)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    err = caught.value
    assert err.source == str(path)
    assert [problem_key(p) for p in err.problems] == [
        "base_model.package",
        "serve.port",
        "evaluate.benchmarks.mcq.sample",
        "evaluate.retrieval.colour",
        "bogus",
    ]
    assert "serve.port = 70000: Input should be less than or equal to 65535" in err.problems
    assert str(err).startswith(f"Invalid local run config '{path}' (5 problem(s)):\n  - ")
    # A rule across sections, checked once the sections are valid, names each key it faults.
    raw = example()
    raw["gate"]["tasks"] = {"mcqq": {}, "intent": {}, "typo": {}}
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "cross.yaml", raw))
    assert [problem_key(p) for p in caught.value.problems] == ["gate.tasks.mcqq", "gate.tasks.typo"]


def test_file_errors_have_the_same_shape(tmp_path: Path) -> None:
    path = tmp_path / "adapt.yaml"
    for text, problem in (
        ("[unclosed", "<root>: not valid YAML"),
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


def test_the_cli_prints_the_error_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "adapt.yaml", {**example(), "bogus": 1})
    assert main(["run", "--config", str(path), "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"Invalid local run config '{path}' (1 problem(s)):\n  - bogus = 1: unknown key\n"
    )


CONFIG_MODELS: tuple[type, ...] = (AdaptConfig,)
"""The root of `adapt.yaml`; nested models, dapt-eval's gate policy among them, are found from
their fields (the `data.pipeline` file and the `train` stage are checked by dapt-data's and
dapt-trainer's own schemas)."""


def test_every_config_field_is_described() -> None:
    visited, missing = undocumented(CONFIG_MODELS)
    names = {cls.__name__ for cls in visited}  # the walk reached the nested sections ...
    assert {"BaseModelSpec", "PublicText", "BenchmarkRun", "RetrievalSection"} <= names
    assert {"GatePolicy", "TaskRule"} <= names  # ... dapt-eval's too
    assert missing == []
