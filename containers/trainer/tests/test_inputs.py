"""Bad inputs a new user meets: missing files, unusable sources, base models without a chat
template. Each is exit 2 with a message naming the path and what is wrong, and ``--check``
finds what can be found before a GPU is started."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import BUCKET, MakeConfig, build_tokenizer, instruction_rows, write_jsonl
from dapt_trainer import cli
from dapt_trainer.config import ConfigError, ExperimentConfig, SourceConfig, dump_config
from dapt_trainer.data import cache
from dapt_trainer.data.cache import NoDataError
from dapt_trainer.data.tokenize import IGNORE_INDEX, use_chat_template
from dapt_trainer.model import Dist
from dapt_trainer.recipe import run_experiment


@pytest.fixture(scope="module")
def base_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a base model ships: a tokenizer without a chat template."""
    root = tmp_path_factory.mktemp("base") / "tiny-base"
    shutil.copytree(model_dir, root)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = None
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        (root / name).unlink(missing_ok=True)
    tokenizer.save_pretrained(root)
    return root


def _yaml(config: ExperimentConfig, tmp_path: Path) -> str:
    path = tmp_path / "experiment.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    return str(path)


def _one_source(make_config: MakeConfig, source: dict[str, Any], **stage: Any) -> ExperimentConfig:
    return make_config({"data": {"seq_len": 64, "sources": [source], **stage}})


def _bad_inputs(
    make_config: MakeConfig, model_dir: Path, tmp_path: Path
) -> dict[str, tuple[ExperimentConfig, str]]:
    """A config per bad input, and what the message must say."""
    (tmp_path / "v3.json").write_bytes(b"\x89PNG not a manifest")
    no_tokenizer = tmp_path / "weights-only"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model_dir / name, no_tokenizer / name)
    kb = {"name": "kb", "kind": "completion"}
    missing = str(tmp_path / "kb-2.jsonl")
    return {
        "data file": (
            _one_source(make_config, {**kb, "paths": [missing]}),
            f"data file {missing} does not exist",
        ),
        "manifest version": (
            _one_source(make_config, {**kb, "manifest": str(tmp_path / "v9.json")}),
            f"manifest {tmp_path / 'v9.json'} (source 'kb') does not exist",
        ),
        "non-JSON manifest": (
            _one_source(make_config, {**kb, "manifest": str(tmp_path / "v3.json")}),
            f"manifest {tmp_path / 'v3.json'} (source 'kb') is not JSON",
        ),
        "model path": (
            make_config({"model": {"path": str(tmp_path / "llama-2-7b")}}),
            f"model.path = '{tmp_path / 'llama-2-7b'}': does not exist",
        ),
        "tokenizer": (
            make_config({"model": {"path": str(no_tokenizer)}}),
            f"model.path = '{no_tokenizer}': has no tokenizer",
        ),
    }


@pytest.mark.parametrize(
    "case", ["data file", "manifest version", "non-JSON manifest", "model path", "tokenizer"]
)
def test_a_bad_input_is_exit_2_naming_the_path_and_check_finds_it(
    make_config: MakeConfig,
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    config, expected = _bad_inputs(make_config, model_dir, tmp_path)[case]
    path = _yaml(config, tmp_path)
    for mode in (["--check"], [], ["--tokenize-only"]):
        assert cli.main(["--config", path, *mode]) == 2, mode
        err = capsys.readouterr().err
        assert expected in err, err
        assert "Traceback" not in err


def test_a_missing_manifest_version_on_s3_names_itself(
    s3: Any, make_config: MakeConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"s3://{BUCKET}/data/manifests/train/v3.json"
    config = _one_source(make_config, {"name": "kb", "kind": "completion", "manifest": uri})
    assert cli.main(["--config", _yaml(config, tmp_path), "--check"]) == 2
    assert f"manifest {uri} (source 'kb') does not exist" in capsys.readouterr().err


def _parquet(path: Path, **columns: list[str]) -> str:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    path.write_bytes(buf.getvalue())
    return str(path)


def test_a_source_with_every_row_quarantined_stops_after_the_report(
    make_config: MakeConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a Parquet file whose text is in another column than the config's text_field
    wrong = _parquet(tmp_path / "kb.parquet", body=["add a page", "the blog", "a theme"])
    config = _one_source(make_config, {"name": "kb", "kind": "completion", "paths": [wrong]})
    # WHEN the stage starts THEN the quarantine report is written, then the error names the
    # source and the reason
    with pytest.raises(NoDataError) as err:
        run_experiment(config, str(config.output), Dist(), __import__("torch").device("cpu"))
    message = str(err.value)
    assert "source 'kb' has nothing to train on: all 3 of its rows were quarantined" in message
    assert "3 x field 'text' missing or not a string" in message
    report = Path(str(config.output), "exp", "dapt", "quarantine.jsonl")
    assert [json.loads(x)["line"] for x in report.read_text().splitlines()] == [1, 2, 3]
    # The CLI: exit 2 with that message, for training and for --tokenize-only alike.
    path = _yaml(config, tmp_path)
    for mode in ([], ["--tokenize-only"]):
        assert cli.main(["--config", path, *mode]) == 2, mode
        assert "source 'kb' has nothing to train on" in capsys.readouterr().err


def test_an_empty_file_is_a_source_with_nothing_to_train_on(
    make_config: MakeConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kb.jsonl").write_text("\n", encoding="utf-8")
    source = {"name": "kb", "kind": "completion", "paths": [str(tmp_path / "kb.jsonl")]}
    config = _one_source(make_config, source)
    assert cli.main(["--config", _yaml(config, tmp_path), "--tokenize-only"]) == 2
    assert "source 'kb' has nothing to train on: its files hold no rows" in capsys.readouterr().err


def test_a_base_model_needs_a_chat_template_for_instruction_data(
    make_config: MakeConfig,
    base_model_dir: Path,
    corpus_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chats = {"name": "chats", "kind": "instruction", "paths": [str(corpus_dir / "sft.jsonl")]}

    def config(**data: Any) -> str:
        stage = {"model": {"path": str(base_model_dir)}, "data": {"sources": [chats], **data}}
        return _yaml(make_config(stage), tmp_path)

    # GIVEN a base model whose tokenizer has no chat template, --check says what to set
    assert cli.main(["--config", config(), "--check"]) == 2
    err = capsys.readouterr().err
    assert "data.chat_template = None: the tokenizer in" in err
    assert "has no chat template, which instruction source(s) ['chats'] need" in err
    # A bundled template by name, or inline Jinja, makes it usable; broken Jinja is found too.
    assert cli.main(["--config", config(chat_template="chatml"), "--check"]) == 0
    inline = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert cli.main(["--config", config(chat_template=inline), "--check"]) == 0
    assert cli.main(["--config", config(chat_template="{% for m in %}"), "--check"]) == 2
    assert "data.chat_template = <inline>: chat template raised" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"chat_template = 'llama2': not a bundled template"):
        make_config({"data": {"sources": [chats], "chat_template": "llama2"}})


def test_a_row_the_template_refuses_is_quarantined_not_fatal(tmp_path: Path) -> None:
    # GIVEN Llama-2's template, which raises unless user and assistant alternate
    tokenizer = use_chat_template(build_tokenizer(), "llama-2")
    bad = {
        "messages": [
            {"role": "user", "content": "add a page"},
            {"role": "user", "content": "and a blog"},
            {"role": "assistant", "content": "publish the draft"},
        ]
    }
    path = write_jsonl(tmp_path / "chats.jsonl", [*instruction_rows(3, 2), bad])
    source = SourceConfig(name="chats", kind="instruction", paths=[str(path)])
    # WHEN the source is tokenised THEN that row is quarantined with file, line and reason
    [opened] = cache.tokenized_sources([source], tokenizer, tmp_path / "cache")
    assert opened.n_docs == 2
    [q] = opened.quarantined
    assert (q.file, q.line) == (str(path), 3)
    assert q.reason == "chat template raised: Conversation roles must alternate " + (
        "user/assistant/user/assistant/..."
    )
    # and the other rows learn only their responses, system prompt folded into the first turn
    learn = opened.learn
    assert learn is not None
    doc = slice(int(opened.offsets[1]), int(opened.offsets[2]))
    learned = [int(t) for t, k in zip(opened.tokens[doc], learn[doc], strict=True) if k]
    row = instruction_rows(3, 2)[1]
    expected = tokenizer(" " + row["response"] + " </s>", add_special_tokens=False)["input_ids"]
    assert learned == expected
    assert IGNORE_INDEX not in learned
