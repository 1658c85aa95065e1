"""The token cache: built once per source and tokenizer, shared by a node's processes, rebuilt
when a file changes; the prefetcher hands producer failures to the training thread."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from conftest import (
    BUCKET,
    MakeConfig,
    build_tokenizer,
    completion_rows,
    instruction_rows,
    shifted,
    write_jsonl,
)
from dapt_trainer import cli, storage
from dapt_trainer.config import SourceConfig, dump_config
from dapt_trainer.data import cache
from dapt_trainer.data.prefetch import Prefetcher, PrefetchError
from dapt_trainer.data.tokenize import IGNORE_INDEX, encode_completions, encode_instruction
from dapt_trainer.model import Dist, empty_base, load_tokenizer
from dapt_trainer.recipe import resolve_model_path, run_experiment
from dapt_trainer.storage import upload_dir


def _sources(tmp_path: Path) -> list[SourceConfig]:
    write_jsonl(tmp_path / "c.jsonl", completion_rows(1, 20))
    write_jsonl(tmp_path / "i.jsonl", instruction_rows(2, 10))
    return [
        SourceConfig(name="c", kind="completion", paths=[str(tmp_path / "c.jsonl")]),
        SourceConfig(name="i", kind="instruction", paths=[str(tmp_path / "i.jsonl")]),
    ]


def test_cached_documents_equal_direct_tokenisation(tmp_path: Path) -> None:
    tokenizer = build_tokenizer()
    sources = _sources(tmp_path)
    opened = cache.tokenized_sources(sources, tokenizer, tmp_path / "cache")
    rows = [completion_rows(1, 20), instruction_rows(2, 10)]
    for source, tokenized, raw in zip(sources, opened, rows, strict=True):
        assert tokenized.n_docs == len(raw)
        for doc, row in enumerate(raw):
            if source.kind == "completion":
                [ids] = encode_completions([row["text"]], tokenizer)
                learn = [True] * len(ids)
            else:
                ids, learn = encode_instruction(row, tokenizer)
            n = tokenized.length(doc)
            assert tokenized.ids(doc, 0, n).tolist() == ids
            assert tokenized.targets(doc, 0, n, n).tolist() == shifted(ids, learn)
    # A cut in the middle of a completion document predicts the next token across the cut.
    c = opened[0]
    n = c.length(0)
    assert c.targets(0, 0, 3, n).tolist() == c.ids(0, 1, 4).tolist()
    assert c.targets(0, 0, 3, 3)[-1] == IGNORE_INDEX  # but not past the usable end


def test_unchanged_sources_are_not_tokenised_again_and_a_changed_file_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer = build_tokenizer()
    root = tmp_path / "cache"
    [source] = _sources(tmp_path)[:1]
    first = cache.prepare_source(source, tokenizer, root)

    monkeypatch.setattr(cache, "encode_completions", _refuse)
    assert cache.prepare_source(source, tokenizer, root) == first
    held_out = source.model_copy(update={"heldout_examples": 5})  # split when opened
    assert cache.prepare_source(held_out, tokenizer, root) == first
    monkeypatch.undo()

    time.sleep(0.01)
    write_jsonl(tmp_path / "c.jsonl", completion_rows(9, 21))
    second = cache.prepare_source(source, tokenizer, root)
    assert second != first
    assert cache.open_source(source, second).n_docs == 21
    # A different tokenizer (here: another chat template) is another key as well.
    other = build_tokenizer()
    other.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert cache.cache_key(source, other) != cache.cache_key(source, tokenizer)
    assert not list(root.glob(".*partial"))  # nothing half-written is left behind


def test_template_failures_are_quarantined_with_file_and_line(tmp_path: Path) -> None:
    tokenizer = build_tokenizer()
    # A template that renders nothing for the assistant cannot isolate a response.
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] }} "
        "{% endif %}{% endfor %}"
    )
    path = write_jsonl(tmp_path / "i.jsonl", [{"prompt": "add a page", "response": "publish"}])
    source = SourceConfig(name="i", kind="instruction", paths=[str(path)])
    [opened] = cache.tokenized_sources([source], tokenizer, tmp_path / "cache")
    assert opened.n_docs == 0
    [q] = opened.quarantined
    assert (q.file, q.line) == (str(path), 1)
    assert "not prefix-stable" in q.reason


def test_processes_of_a_node_split_the_sources_and_wait_for_each_other(tmp_path: Path) -> None:
    tokenizer = build_tokenizer()
    sources = _sources(tmp_path)
    root = tmp_path / "cache"
    results: dict[int, Any] = {}

    def rank(r: int) -> None:
        results[r] = cache.tokenized_sources(sources, tokenizer, root, r, 2)

    other = threading.Thread(target=rank, args=(1,))
    other.start()
    rank(0)
    other.join(timeout=60)
    assert sorted(p.name.split("-")[0] for p in root.iterdir()) == ["c", "i"]
    for a, b in zip(results[0], results[1], strict=True):
        assert np.array_equal(a.tokens, b.tokens) and a.path == b.path


def test_prefetcher_keeps_order_and_raises_producer_failures() -> None:
    produced = iter([1, 2, 3])

    def produce() -> int:
        value = next(produced, None)
        if value is None:
            raise ValueError("source exhausted")
        return value

    prefetch = Prefetcher(produce, depth=2)
    assert [prefetch.get() for _ in range(3)] == [1, 2, 3]
    with pytest.raises(PrefetchError, match="building training batches failed: source exhausted"):
        prefetch.get()
    prefetch.close()


def test_a_second_instance_downloads_what_the_first_published(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tokenizer = build_tokenizer()
    sources = _sources(tmp_path)
    shared = f"s3://{BUCKET}/runs/exp/token-cache"
    first = cache.tokenized_sources(
        sources, tokenizer, tmp_path / "node-a", shared=shared, publish=True
    )
    # A node that does not publish (not the first node) never uploads.
    cache.tokenized_sources(sources, tokenizer, tmp_path / "node-x", shared=str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()

    monkeypatch.setattr(cache, "encode_completions", _refuse)
    monkeypatch.setattr(cache, "encode_instruction", _refuse)
    second = cache.tokenized_sources(sources, tokenizer, tmp_path / "node-b", shared=shared)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.offsets, b.offsets)
        assert a.path.name == b.path.name
    hows = [
        json.loads(x)["how"] for x in capsys.readouterr().out.splitlines() if "token_cache" in x
    ]
    assert hows == ["tokenised and published"] * 2 + ["tokenised"] * 2 + ["downloaded"] * 2


def test_the_key_survives_a_tokenizer_save_and_load(tmp_path: Path) -> None:
    """A stage that starts from an earlier stage's output loads the tokenizer saved with it:
    it must find the caches tokenised with the original."""
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path / "saved")
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path / "saved"), local_files_only=True)
    [source] = _sources(tmp_path)[1:]
    assert cache.cache_key(source, reloaded) == cache.cache_key(source, tokenizer)


def test_tokenize_only_fills_the_shared_cache_that_training_then_uses(
    make_config: MakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(output=str(tmp_path / "out"))
    path = tmp_path / "experiment.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "cpu-machine"))
    assert cli.main(["--config", str(path), "--tokenize-only"]) == 0
    shared = tmp_path / "out" / "exp" / "token-cache"
    assert sorted(p.name.split("-")[0] for p in shared.iterdir()) == ["domain", "public"]

    # The GPU job, on another machine (its own empty local cache), tokenises nothing.
    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "gpu-machine"))
    monkeypatch.setattr(cache, "encode_completions", _refuse)
    [result] = run_experiment(config, str(config.output), Dist(), torch.device("cpu"))
    assert result.status == "complete"


def _refuse(*args: Any) -> Any:
    raise AssertionError("tokenised again")


def test_a_shared_cache_it_cannot_use_only_costs_a_local_tokenisation(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shared cache is an optimisation: a bucket the job may not write (here: absent) is
    reported in the event and training goes on with the local cache."""
    tokenizer = build_tokenizer()
    [source] = _sources(tmp_path)[:1]
    shared = "s3://no-such-bucket/token-cache"
    [opened] = cache.tokenized_sources(
        [source], tokenizer, tmp_path / "node", shared=shared, publish=True
    )
    assert opened.n_docs == 20
    [event] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "token_cache" in x]
    assert event["how"] == "tokenised"
    download, publish = event["problems"]
    assert download.startswith("download from s3://no-such-bucket/token-cache/c-")
    assert publish.startswith("publish to s3://no-such-bucket/token-cache/c-")


def test_tokenize_only_fails_when_it_cannot_publish(
    s3: Any, make_config: MakeConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(token_cache="s3://no-such-bucket/token-cache")
    path = tmp_path / "experiment.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert cli.main(["--config", str(path), "--tokenize-only"]) == 1
    assert "could not be published to s3://no-such-bucket/token-cache" in capsys.readouterr().err


def test_an_s3_model_is_staged_whole_and_again_when_it_changes(
    s3: Any, make_config: MakeConfig, model_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "node"))
    uri = f"s3://{BUCKET}/models/tiny"
    upload_dir(model_dir, uri)
    config = make_config({"model": {"path": uri}})
    # GIVEN a download killed after config.json (the second object)
    client, real = storage._client(), storage._client().download_file
    calls: list[str] = []

    def killed(bucket: str, key: str, dest: str) -> None:
        calls.append(key)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        real(bucket, key, dest)

    monkeypatch.setattr(client, "download_file", killed)
    with pytest.raises(KeyboardInterrupt):
        resolve_model_path(config, str(config.output), config.stages[0], Dist())
    monkeypatch.setattr(client, "download_file", real)
    # WHEN the job runs again THEN it downloads the model whole instead of using the remains
    local = resolve_model_path(config, str(config.output), config.stages[0], Dist())
    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in model_dir.iterdir())
    # and a model changed at the same URI is staged again, not taken from the cache
    s3.put_object(Bucket=BUCKET, Key="models/tiny/config.json", Body=b"{}")
    assert resolve_model_path(config, str(config.output), config.stages[0], Dist()) != local


def test_only_global_rank_0_stages_an_s3_models_weights(
    s3: Any, make_config: MakeConfig, model_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    uri = f"s3://{BUCKET}/models/tiny"
    upload_dir(model_dir, uri)
    s3.put_object(Bucket=BUCKET, Key="models/tiny/original/consolidated.00.pth", Body=b"w")
    generation = {"eos_token_id": [3, 4]}  # as Llama-3's: its end of turn beside the EOS
    s3.put_object(
        Bucket=BUCKET, Key="models/tiny/generation_config.json", Body=json.dumps(generation)
    )
    config = make_config({"model": {"path": uri}})
    client, real = storage._client(), storage._client().download_file
    downloaded: list[str] = []

    def counted(bucket: str, key: str, dest: str) -> None:
        downloaded.append(key.removeprefix("models/tiny/"))
        real(bucket, key, dest)

    monkeypatch.setattr(client, "download_file", counted)
    small = sorted(p.name for p in model_dir.iterdir() if p.suffix != ".safetensors")
    # GIVEN two nodes of eight ranks: rank 0, a rank beside it and one on the second node
    for rank in (0, 1, 9):
        monkeypatch.setenv("DAPT_CACHE", str(tmp_path / f"node-{rank // 8}-rank-{rank}"))
        downloaded.clear()
        dist = Dist(rank=rank, local_rank=rank % 8, world_size=16, local_world_size=8)
        local = resolve_model_path(config, str(config.output), config.stages[0], dist)
        if rank == 0:  # THEN only rank 0, which reads them, downloads the weights
            assert "model.safetensors" in downloaded and len(downloaded) == len(small) + 2
            continue
        assert sorted(downloaded) == small  # the others every file but the weights
        # and that is what their meta-device build and tokenizer need
        model = empty_base(local, torch.device("cpu"))
        assert model.num_parameters() > 0 and len(load_tokenizer(local)) > 0
        assert model.generation_config.eos_token_id == [3, 4]  # as rank 0's from_pretrained
