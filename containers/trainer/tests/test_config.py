"""The YAML config: every problem reported together, each naming key path, value and rule."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from dapt_trainer.cli import main
from dapt_trainer.config import ConfigError, dump_config, load_config, parse_config
from dapt_trainer.model import attention_implementation

GOOD: dict[str, Any] = {
    "experiment": "website-builder",
    "output": "s3://bucket/runs",
    "stages": [
        {
            "name": "dapt",
            "model": {"path": "s3://bucket/models/llama-7b"},
            "data": {
                "domain_share": 0.02,
                "sources": [
                    {"name": "kb", "kind": "completion", "group": "domain", "paths": ["a.jsonl"]},
                    {"name": "web", "kind": "completion", "paths": ["b.parquet"]},
                ],
            },
            "steps": 1000,
        },
        {
            "name": "sft",
            "model": {"from_stage": "dapt"},
            "data": {"sources": [{"name": "chats", "kind": "instruction", "manifest": "m.json"}]},
            "method": {"name": "lora", "lora": {"rank": 256, "alpha": 512, "dora": True}},
            "steps": 200,
        },
    ],
}


def test_good_config_has_documented_defaults() -> None:
    config = parse_config(GOOD)
    dapt, sft = config.stages
    assert dapt.data.packing is True and dapt.data.seq_len == 4096
    assert dapt.data.pack_window == 64 and config.compute.attention == "auto"
    assert dapt.method.name == "full"
    assert config.compute.precision == "bf16" and config.compute.peak_flops == 989e12
    assert sft.method.lora.rank == 256 and sft.method.lora.dora is True
    assert "q_proj" in sft.method.lora.target_modules
    assert parse_config(__import__("yaml").safe_load(dump_config(config))) == config


def test_bad_config_names_every_key_value_and_rule() -> None:
    bad: dict[str, Any] = {
        "experiment": "x",
        "compute": {"attention": "flash3"},
        "stages": [
            {
                "name": "dapt",
                "model": {"path": "m"},
                "data": {
                    "seq_len": 2,
                    "sources": [
                        {"name": "kb", "kind": "pretrain", "paths": ["a.jsonl"], "weight": -1}
                    ],
                },
                "method": {"name": "lora", "lora": {"rank": 0}},
                "steps": 10,
                "micro_batch_sise": 4,
            }
        ],
    }
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    text = str(err.value)
    assert "stages.0.data.seq_len = 2: Input should be greater than or equal to 8" in text
    assert "stages.0.data.sources.0.kind = 'pretrain'" in text
    assert "stages.0.data.sources.0.weight = -1: Input should be greater than 0" in text
    assert "stages.0.method.lora.rank = 0" in text
    assert "stages.0.micro_batch_sise = 4: unknown key" in text
    assert "compute.attention = 'flash3': Input should be 'auto', 'flash_attention_2'" in text
    assert len(err.value.problems) == 6


def test_cross_field_rules_name_the_keys() -> None:
    bad: dict[str, Any] = {
        "experiment": "x",
        "stages": [
            {
                "name": "sft",
                "model": {"from_stage": "dapt"},
                "data": {
                    "domain_share": 0.02,
                    "sources": [
                        {"name": "kb", "kind": "completion", "group": "domain", "paths": ["a"]}
                    ],
                },
                "optimizer": {"warmup_steps": 10},
                "steps": 5,
            }
        ],
    }
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    text = str(err.value)
    assert "stages.0.data.domain_share = 0.02: needs at least one 'domain'" in text
    # A stage-level rule runs once the fields it relates are valid (pydantic's order).
    public = {"name": "web", "kind": "completion", "paths": ["b"]}
    stage = {
        **bad["stages"][0],
        "data": {"domain_share": 0.02, "sources": [*bad["stages"][0]["data"]["sources"], public]},
    }
    warmup = r"stages\.0\.optimizer\.warmup_steps = 10: must be < steps \(5\)"
    with pytest.raises(ConfigError, match=warmup):
        parse_config({**bad, "stages": [stage]})
    # The chain check runs once the stages themselves are valid.
    fixed = {
        **bad["stages"][0],
        "data": {"sources": [{"name": "kb", "kind": "completion", "paths": ["a"]}]},
        "steps": 20,
    }
    with pytest.raises(ConfigError, match="from_stage = 'dapt': must name an earlier stage"):
        parse_config({**bad, "stages": [fixed]})


def test_cli_check_reports_problems_and_exit_code(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    model_dir: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # GOOD names its manifest relative to the working directory
    path = tmp_path / "bad.yaml"
    path.write_text("experiment: x\nstages: []\n", encoding="utf-8")
    assert main(["--config", str(path), "--output", str(tmp_path), "--check"]) == 2
    assert "stages = []: List should have at least 1 item" in capsys.readouterr().err
    path.write_text(__import__("yaml").safe_dump(GOOD), encoding="utf-8")
    # A manifest that is not there is found by --check, not by the GPU job.
    assert main(["--config", str(path), "--check"]) == 2
    assert "manifest m.json (source 'chats') does not exist" in capsys.readouterr().err
    (tmp_path / "m.json").write_text('{"files": ["chats.jsonl"]}', encoding="utf-8")
    # Then every input it names must be there: the model folder and each data file.
    assert main(["--config", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "stages.0.model.path = 's3://bucket/models/llama-7b': " in err  # no such bucket here
    assert "stages.1.data.sources.0 (chats): data file chats.jsonl does not exist" in err
    stages = [{**GOOD["stages"][0], "model": {"path": str(model_dir)}}, GOOD["stages"][1]]
    path.write_text(__import__("yaml").safe_dump({**GOOD, "stages": stages}), encoding="utf-8")
    for name in ("a.jsonl", "b.parquet", "chats.jsonl"):
        (tmp_path / name).write_text("", encoding="utf-8")
    assert main(["--config", str(path), "--check"]) == 0
    assert load_config(path).stages[1].model.from_stage == "dapt"


def test_cli_says_which_env_var_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAPT_CONFIG", raising=False)
    assert main([]) == 2
    assert capsys.readouterr().err == (
        "Invalid trainer config '<environment>' (1 problem(s)):\n"
        "  - DAPT_CONFIG: environment variable is not set (or pass --config)\n"
    )


@pytest.mark.parametrize("name", ["My_Run", "run-", "a--b", "1run", "x" * 21, ""])
def test_experiment_names_follow_the_shared_naming_rule(name: str) -> None:
    # The rule lives in dapt_trainer/names.json; the stacks and CLIs read the same file, so a name
    # the trainer accepts is one a run stack can be deployed for (its role writes runs/<name>/).
    with pytest.raises(ConfigError) as err:
        parse_config({**GOOD, "experiment": name})
    problems = err.value.problems
    rule = "lowercase letters, digits or single dashes"
    assert any(p.startswith("experiment = ") and rule in p for p in problems), problems


def test_a_name_the_rule_allows_is_accepted() -> None:
    assert parse_config({**GOOD, "experiment": "dapt7b-r2"}).experiment == "dapt7b-r2"


def test_flash_attention_refuses_several_packed_rows_per_forward(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """transformers keeps packed documents apart under flash attention only at batch size 1."""
    stage = {**GOOD["stages"][0], "micro_batch_size": 2}
    flash = {**GOOD, "compute": {"attention": "flash_attention_2"}, "stages": [stage]}
    with pytest.raises(ConfigError, match=r"compute\.attention = 'flash_attention_2': packs "):
        parse_config(flash)
    assert parse_config({**flash, "stages": [{**stage, "micro_batch_size": 1}]})
    unpacked = {**stage, "data": {**stage["data"], "packing": False}}
    assert parse_config({**flash, "stages": [unpacked]})
    # auto picks SDPA there even where flash-attn is installed.
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    gpu = torch.device("cuda", 0)
    assert attention_implementation("auto", gpu) == "flash_attention_2"
    assert attention_implementation("auto", gpu, packed_batches=True) == "sdpa"
