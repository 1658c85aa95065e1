"""Shared builders: a tiny random Llama with a word-level tokenizer built here (no downloads),
small corpora and configs."""

from __future__ import annotations

import importlib
import json
import os
import random
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
import yaml
from moto import mock_aws
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from torch.multiprocessing.spawn import spawn
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from dapt_trainer import recipe, storage
from dapt_trainer.config import DataConfig, ExperimentConfig, dump_config, parse_config
from dapt_trainer.data.cache import TokenizedSource, tokenized_sources
from dapt_trainer.model import Dist, setup_device, setup_model
from dapt_trainer.recipe import run_experiment

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # the test machine is shared; small matmuls gain nothing from threads

WORDS = [
    "the",
    "site",
    "builder",
    "lets",
    "you",
    "add",
    "a",
    "page",
    "domain",
    "editor",
    "billing",
    "plan",
    "invoice",
    "theme",
    "font",
    "color",
    "button",
    "form",
    "gallery",
    "blog",
    "post",
    "publish",
    "draft",
    "preview",
    "mobile",
    "layout",
    "section",
    "header",
    "footer",
    "menu",
    "link",
    "image",
    "upload",
    "store",
    "product",
    "cart",
    "checkout",
    "payment",
    "refund",
    "question",
    "answer",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)
BUCKET = "trainer-bucket"

MakeConfig = Callable[..., ExperimentConfig]


def sentence(rng: random.Random, n: int) -> str:
    """Text with structure a tiny model can learn quickly: words follow a fixed cycle."""
    start = rng.randrange(len(WORDS))
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(n))


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows may be dicts (serialised) or raw strings (written verbatim, for malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def completion_rows(seed: int, n: int, lo: int = 5, hi: int = 40) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"text": sentence(rng, rng.randint(lo, hi))} for _ in range(n)]


def instruction_rows(seed: int, n: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        if i % 2:
            rows.append({"prompt": sentence(rng, 6), "response": sentence(rng, 8)})
        else:
            rows.append(
                {
                    "messages": [
                        {"role": "system", "content": sentence(rng, 3)},
                        {"role": "user", "content": sentence(rng, 5)},
                        {"role": "assistant", "content": sentence(rng, 6)},
                        {"role": "user", "content": sentence(rng, 4)},
                        {"role": "assistant", "content": sentence(rng, 7)},
                    ]
                }
            )
    return rows


def build_tokenizer() -> Any:
    specials = ["[UNK]", "[PAD]", "<s>", "</s>"]
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [" ".join(WORDS), "system user assistant :"]
    raw.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=specials))
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", raw.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="<s>",
        eos_token="</s>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(autouse=True, scope="session")
def _token_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One token cache per test session (never the machine's /tmp/dapt-cache); tests that
    need their own set DAPT_CACHE themselves."""
    os.environ["DAPT_CACHE"] = str(tmp_path_factory.mktemp("dapt-cache"))


def shifted(ids: list[int], learn: list[bool]) -> list[int]:
    """Reference next-token targets of one document: ids[i + 1] where that token is learned,
    else -100 (the last position predicts nothing)."""
    return [ids[i + 1] if learn[i + 1] else -100 for i in range(len(ids) - 1)] + [-100]


def tokenized(data: DataConfig, tokenizer: Any, root: Path) -> list[TokenizedSource]:
    """The data's sources tokenised into ``root`` (a test's own cache)."""
    return tokenized_sources(list(data.sources), tokenizer, root)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (hidden 32) with random weights and a word-level tokenizer, saved."""
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    root = tmp_path_factory.mktemp("models") / "tiny-llama"
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_jsonl(root / "domain.jsonl", completion_rows(1, 60))
    write_jsonl(root / "public.jsonl", completion_rows(2, 120, lo=20, hi=60))
    write_jsonl(root / "sft.jsonl", instruction_rows(3, 40))
    return root


def config_factory(model_dir: Path, corpus_dir: Path, output: Path) -> MakeConfig:
    """A one-stage config over the session corpus, writing under ``output``; keyword overrides
    merge into the stage."""

    def make(stage: dict[str, Any] | None = None, **top: Any) -> ExperimentConfig:
        base: dict[str, Any] = {
            "name": "dapt",
            "model": {"path": str(model_dir)},
            "data": {
                "seq_len": 64,
                "sources": [
                    {
                        "name": "domain",
                        "kind": "completion",
                        "group": "domain",
                        "paths": [str(corpus_dir / "domain.jsonl")],
                        "heldout_examples": 4,
                    },
                    {
                        "name": "public",
                        "kind": "completion",
                        "group": "public",
                        "paths": [str(corpus_dir / "public.jsonl")],
                        "heldout_examples": 4,
                    },
                ],
            },
            "optimizer": {"lr": 3e-3, "warmup_steps": 1, "weight_decay": 0.0},
            "micro_batch_size": 2,
            "steps": 6,
            "checkpoint": {"every_steps": 100},
        }
        base.update(stage or {})
        raw = {
            "experiment": "exp",
            "output": str(output / "out"),
            "seed": 0,
            "compute": {"precision": "fp32", "activation_checkpointing": False},
            "stages": [base],
            **top,
        }
        return parse_config(raw)

    return make


@pytest.fixture
def make_config(model_dir: Path, corpus_dir: Path, tmp_path: Path) -> MakeConfig:
    """A one-stage config over the session corpus; keyword overrides merge into the stage."""
    return config_factory(model_dir, corpus_dir, tmp_path)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        storage.reset_client()
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    storage.reset_client()


# -- multi-process runs (FSDP2 on CPU, gloo) ---------------------------------------------------

Job = tuple[ExperimentConfig, int | None]
"""A one-stage experiment and the step at which the recipe is told to stop (None: never)."""


Probe = tuple[str, ExperimentConfig]
"""``module:function`` run on every rank as ``function(config, dist, device)`` (returning a
JSON-able dict), and its config."""


def run_sharded(
    jobs: list[Job], tmp_path: Path, world: int = 2, probes: list[Probe] | None = None
) -> list[dict[str, Any]]:
    """Run the jobs one after the other in ``world`` freshly spawned processes (one gloo group),
    then the probes.

    Returns per job ``status``, ``step``, ``losses`` (all-reduced: the same on every rank) and
    ``layer_calls``: decoder layer forwards on rank 0, recomputation under activation
    checkpointing included; then per probe ``{"ranks": [what each rank returned]}``.
    """
    out = tmp_path / f"results-{uuid.uuid4().hex}.json"
    yamls = [(dump_config(config), stop) for config, stop in jobs]
    probe_yamls = [(name, dump_config(config)) for name, config in probes or []]
    spawn(_worker, args=(world, free_port(), yamls, str(out), probe_yamls), nprocs=world)  # type: ignore[no-untyped-call]
    results: list[dict[str, Any]] = json.loads(out.read_text(encoding="utf-8"))
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(
    rank: int,
    world: int,
    port: int,
    jobs: list[tuple[str, int | None]],
    out: str,
    probes: list[tuple[str, str]],
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    dist = Dist.from_env()
    device = setup_device(dist)
    calls = _count_layer_calls()
    try:
        results = []
        for config_yaml, stop_at in jobs:
            config = parse_config(yaml.safe_load(config_yaml))
            stop = None if stop_at is None else (lambda step, k=stop_at: step == k)
            calls[0] = 0
            [result] = run_experiment(config, str(config.output), dist, device, stop)
            results.append(
                {
                    "status": result.status,
                    "step": result.step,
                    "losses": result.losses,
                    "layer_calls": calls[0],
                }
            )
        for name, config_yaml in probes:
            module, function = name.split(":")
            probe = getattr(importlib.import_module(module), function)
            mine = probe(parse_config(yaml.safe_load(config_yaml)), dist, device)
            ranks: list[Any] = [None] * world
            torch.distributed.all_gather_object(ranks, mine)
            results.append({"ranks": ranks})
        if rank == 0:
            Path(out).write_text(json.dumps(results), encoding="utf-8")
    finally:
        torch.distributed.destroy_process_group()


def _count_layer_calls() -> list[int]:
    """From now on, count the decoder layer forwards of every model the recipe sets up in this
    process, recomputation under activation checkpointing included. Counted at each layer's
    attention module: transformers 5 checkpoints a layer's ``forward``, not its ``__call__``
    (so FSDP2's hooks stay outside), so hooks on the layer itself never see a recomputation.
    A pre-hook, because a recomputation stops early, once the tensors backward needs exist."""
    calls = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        model = setup_model(*args, **kwargs)
        # After fully_shard a layer's class is FSDPLlamaDecoderLayer, a subclass.
        for layer in (m for m in model.modules() if isinstance(m, LlamaDecoderLayer)):
            layer.self_attn.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        return model

    recipe.setup_model = counted  # type: ignore[attr-defined]
    return calls
