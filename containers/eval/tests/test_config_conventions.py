"""Conventions the configs of dapt-eval, dapt-data and dapt-trainer share (each package tests its
own): one error shape, `Invalid <what> config '<source>' (N problem(s))` with one problem per
key (`dapt_eval.config_errors`), and a description on every field of every config model."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from dapt_eval.batch.config import BatchConfig, BatchConfigError, add_batch_args, config_from
from dapt_eval.config_errors import ConfigError, validation_problems
from dapt_eval.conventions import problem_key, undocumented
from dapt_eval.gate import GatePolicy
from dapt_eval.providers.factory import ProviderSpec
from dapt_eval.providers.offline import OfflineProvider
from dapt_eval.runner import RunConfig, RunConfigError, resolve_mode
from dapt_eval.schemas import Task


def test_a_config_error_has_a_source_problems_and_the_shared_message() -> None:
    class ThingConfigError(ConfigError):
        what = "thing"

    err = ThingConfigError("<cli>", ["size = 0: must be >= 1", "name: required"])
    assert isinstance(err, ValueError)
    assert err.source == "<cli>"
    assert err.problems == ["size = 0: must be >= 1", "name: required"]
    assert str(err) == (
        "Invalid thing config '<cli>' (2 problem(s)):\n"
        "  - size = 0: must be >= 1\n"
        "  - name: required"
    )
    assert str(ConfigError("f.yaml", ["a: b"])).startswith("Invalid config 'f.yaml' (1 problem(s))")


def test_a_validation_error_becomes_one_problem_per_key() -> None:
    with pytest.raises(ValidationError) as caught:
        GatePolicy.model_validate({"tasks": {"qa": {"tolerance": -1}}, "colour": 1})
    assert validation_problems(caught.value, prefix="gate") == [
        "gate.tasks.qa.tolerance = -1: Input should be greater than or equal to 0",
        "gate.colour = 1: unknown key",
    ]
    with pytest.raises(ValidationError) as caught:
        ProviderSpec.model_validate({"model_id": "m"})
    assert validation_problems(caught.value) == ["kind: field required"]
    # A model validator with several problems reports each under its own key.
    spec = {"kind": "openai", "model_id": "m", "api_key_env": "DAPT_TEST_UNSET_KEY"}
    with pytest.raises(ValidationError) as caught:
        ProviderSpec.model_validate(spec)
    assert [problem_key(p) for p in validation_problems(caught.value, "teacher")] == [
        "teacher.base_url",
        "teacher.api_key_env",
    ]


def test_run_and_batch_job_errors_have_the_shape() -> None:
    with pytest.raises(RunConfigError) as caught:
        RunConfig(run_id="r", concurrency=0, sample=0)
    err = caught.value
    assert isinstance(err, ConfigError) and err.source == "<run>"
    assert [problem_key(p) for p in err.problems] == ["concurrency", "sample"]
    assert str(err).startswith("Invalid run config '<run>' (2 problem(s)):\n  - concurrency = 0")
    with pytest.raises(RunConfigError) as caught:
        resolve_mode(Task.MCQ, "cloze", ChatOnly(), None, has_cloze_prompt=False)
    assert [problem_key(p) for p in caught.value.problems] == ["mode", "mode"]
    with pytest.raises(BatchConfigError) as batch:
        BatchConfig(model_uri="m", benchmark_uri="b", batch_size=0)
    assert isinstance(batch.value, ConfigError) and batch.value.source == "<flags/env>"
    parser = argparse.ArgumentParser()
    add_batch_args(parser)
    with pytest.raises(BatchConfigError) as batch:
        config_from(parser.parse_args(["--batch-size", "many"]), env={})
    assert [problem_key(p) for p in batch.value.problems] == [
        "--model (MODEL_URI)",
        "--benchmark (BENCHMARK_URI)",
        "--batch-size (BATCH_SIZE)",
    ]


class ChatOnly(OfflineProvider):
    """A provider without log-likelihoods."""

    @property
    def supports_loglik(self) -> bool:
        """No log-likelihood scoring."""
        return False


CONFIG_MODELS: tuple[type, ...] = (RunConfig, BatchConfig, ProviderSpec, GatePolicy)
"""The roots of every config dapt-eval is run with; nested ones (decoding, retry policy,
offline behaviour, task rules) are found from their fields. RunConfig, BatchConfig, RetryPolicy
and OfflineBehaviour are dataclasses and document their fields with attribute docstrings."""


def test_every_config_field_is_described() -> None:
    visited, missing = undocumented(CONFIG_MODELS)
    names = {cls.__name__ for cls in visited}  # the walk reached the nested ones
    assert {"DecodingParams", "RetryPolicy", "OfflineBehaviour", "TaskRule"} <= names
    assert missing == []
