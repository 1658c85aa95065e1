"""What a config points at, checked before any GPU time is spent: model folders, tokenizers,
chat templates, manifests and data files.

``dapt-train`` runs these checks first in every mode (``--check``, ``--tokenize-only`` and
training), so a missing file is reported with its path and exit 2 (never retried by Batch)
instead of a traceback from deep inside transformers or the token cache.
"""

from __future__ import annotations

from typing import Any

from dapt_trainer.config import BUNDLED_CHAT_TEMPLATES, ExperimentConfig, StageConfig
from dapt_trainer.data.readers import ManifestError, resolve_data, source_files
from dapt_trainer.data.tokenize import TemplateError, encode_instruction, use_chat_template
from dapt_trainer.generation_eval import generation_eval_problems
from dapt_trainer.model import load_tokenizer
from dapt_trainer.recipe import tokenizer_folder
from dapt_trainer.storage import exists, list_children


def input_problems(experiment: ExperimentConfig) -> list[str]:
    """Every problem of the inputs the config names, each as `key = value: what is wrong`."""
    problems: list[str] = []
    usable_models: set[str] = set()
    for i, stage in enumerate(experiment.stages):
        if stage.model.path is not None:
            found = model_problems(f"stages.{i}.model.path", stage.model.path)
            problems += found
            if not found:
                usable_models.add(stage.name)
        problems += data_problems(f"stages.{i}.data", stage)
        problems += generation_eval_problems(f"stages.{i}.eval_generation", stage)
        origin = _origin(experiment, stage)
        if origin.name in usable_models:
            problems += template_problems(f"stages.{i}.data", experiment, stage)
    return problems


def model_problems(key: str, uri: str) -> list[str]:
    """A Hugging Face model folder: it exists, has ``config.json`` and a tokenizer."""
    try:
        names = set(list_children(uri))
    except Exception as err:  # e.g. a bucket that does not exist or may not be listed
        return [f"{key} = {uri!r}: cannot be listed ({err})"]
    if not names:
        return [
            f"{key} = {uri!r}: does not exist or is empty (expected a Hugging Face model "
            "folder: config.json, tokenizer files, safetensors)"
        ]
    problems = []
    if "config.json" not in names:
        problems.append(f"{key} = {uri!r}: has no config.json (not a Hugging Face model folder)")
    if not names & set(TOKENIZER_FILES):
        problems.append(
            f"{key} = {uri!r}: has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save "
            "it next to the weights with tokenizer.save_pretrained(<folder>)"
        )
    return problems


def data_problems(key: str, stage: StageConfig) -> list[str]:
    """Manifests readable and consistent, every data file there."""
    problems = []
    for j, source in enumerate(stage.data.sources):
        try:
            files = source_files(source)
        except ManifestError as err:
            problems.append(f"{key}.sources.{j}.manifest = {source.manifest!r}: {err}")
            continue
        for file in files:
            try:
                found = exists(file)
            except Exception as err:  # e.g. no such bucket, access denied
                problems.append(f"{key}.sources.{j} ({source.name}): {file} cannot be read: {err}")
                continue
            if not found:
                problems.append(
                    f"{key}.sources.{j} ({source.name}): data file {file} does not exist"
                )
    if not problems:
        try:
            resolve_data(stage.data)  # groups consistent with the manifests' origins
        except ManifestError as err:
            problems.append(f"{key}.sources: {err}")
    return problems


def template_problems(key: str, experiment: ExperimentConfig, stage: StageConfig) -> list[str]:
    """Instruction sources need a chat template (the tokenizer's or ``data.chat_template``)
    that renders a plain user/assistant conversation."""
    instruction = [s.name for s in stage.data.sources if s.kind == "instruction"]
    if not instruction:
        return []
    folder = tokenizer_folder(experiment, stage)
    try:
        tokenizer = load_tokenizer(folder)
    except Exception as err:  # e.g. only a slow tokenizer and no sentencepiece
        return [f"{key}: the tokenizer in {folder} cannot be loaded: {err}"]
    spec = stage.data.chat_template
    use_chat_template(tokenizer, spec)
    if not getattr(tokenizer, "chat_template", None):
        return [
            f"{key}.chat_template = None: the tokenizer in {folder} has no chat template, which "
            f"instruction source(s) {instruction} need; set a bundled one "
            f"({', '.join(sorted(BUNDLED_CHAT_TEMPLATES))}) or inline Jinja"
        ]
    try:
        encode_instruction(PROBE_ROW, tokenizer)
    except TemplateError as err:
        shown = "<the tokenizer's>" if spec is None else spec
        if spec is not None and spec not in BUNDLED_CHAT_TEMPLATES:
            shown = "<inline>"
        return [f"{key}.chat_template = {shown}: {err} (on a one-turn user/assistant probe)"]
    return []


def _origin(experiment: ExperimentConfig, stage: StageConfig) -> StageConfig:
    while stage.model.from_stage is not None:
        stage = experiment.stage(stage.model.from_stage)
    return stage


TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
"""A Hugging Face tokenizer's own files (fast, SentencePiece, BPE, WordPiece)."""
PROBE_ROW: dict[str, Any] = {"prompt": "Hello.", "response": "Hello to you."}
