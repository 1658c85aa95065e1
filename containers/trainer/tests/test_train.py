"""The recipe end to end on a tiny random Llama: learning, packing, accumulation, resume, export."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from conftest import BUCKET, MakeConfig, tokenized
from dapt_trainer.adapter_archive import ADAPTER_ARCHIVE, archive_adapter
from dapt_trainer.checkpoint import latest_complete
from dapt_trainer.config import DataConfig, SourceConfig, dump_config
from dapt_trainer.data.stream import PackedStream, Row, collate, pad_id
from dapt_trainer.data.tokenize import IGNORE_INDEX
from dapt_trainer.model import Dist, FlopCount, decoder_layers, load_base
from dapt_trainer.recipe import StageRecipe, run_experiment

CPU = torch.device("cpu")
ONE = Dist()


def test_loss_goes_down_and_metrics_are_written(
    make_config: MakeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(
        {"steps": 30, "optimizer": {"lr": 1e-2, "warmup_steps": 2, "weight_decay": 0.0}}
    )
    [result] = run_experiment(config, str(config.output), ONE, CPU)
    assert result.status == "complete"
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < first - 1.0, result.losses

    out = Path(result.output)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 31))
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "mfu", "packing_efficiency"} <= set(steps[0])
    assert steps[0]["lr"] < steps[2]["lr"]  # warmup
    heldout = json.loads((out / "final" / "heldout.json").read_text())
    assert set(heldout) == {"domain", "public"} and all(v < first for v in heldout.values())
    # The starting weights were measured too, before step 1 (metrics step 0): the baseline.
    before = json.loads((out / "final" / "heldout_before.json").read_text())
    assert set(before) == set(heldout) and all(before[k] > heldout[k] for k in heldout)
    assert records[0] == {"step": 0, **{f"heldout_loss/{k}": v for k, v in before.items()}}
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Experiment", "Stage"]]
    assert emf[0]["Stage"] == "dapt" and "heldout_loss/domain" in emf[0]  # step 0
    assert "loss" in emf[1]
    assert (out / "final" / "model" / "model.safetensors").exists()
    assert (out / "final" / "COMPLETE").exists()
    # A finished stage is skipped when the job runs again (e.g. a Batch retry).
    assert run_experiment(config, str(config.output), ONE, CPU)[0].status == "skipped"


def test_packed_and_unpacked_rows_give_the_same_loss(
    make_config: MakeConfig, corpus_dir: Path, tmp_path: Path
) -> None:
    """Packing must not let a document attend to, or predict, its neighbours."""
    recipe = StageRecipe(make_config(), make_config().stages[0], str(tmp_path), ONE, CPU)
    recipe.setup()
    data = DataConfig(
        seq_len=128,
        sources=[
            SourceConfig(name="i", kind="instruction", paths=[str(corpus_dir / "sft.jsonl")]),
            SourceConfig(name="c", kind="completion", paths=[str(corpus_dir / "domain.jsonl")]),
        ],
    )
    sources = tokenized(data, recipe.tokenizer, tmp_path / "cache")
    stream = PackedStream(data, sources, 0, pad_id(recipe.tokenizer))
    packed = [stream.next_row() for _ in range(6)]
    # The same documents, one per row: cut each packed row at its position resets.
    singles = []
    for row in packed:
        ids, targets, positions, n_real = row.as_lists()
        starts = [i for i, p in enumerate(positions) if p == 0] + [128]
        for a, b in itertools.pairwise(starts):
            if a >= n_real:
                break
            n, pad = b - a, 128 - (b - a)
            singles.append(
                Row(
                    np.array(ids[a:b] + [0] * pad),
                    np.array(targets[a:b] + [IGNORE_INDEX] * pad),
                    np.array(list(range(n)) + list(range(pad))),
                    n,
                )
            )
    assert len(singles) > len(packed) * 2
    with torch.no_grad():
        packed_loss = recipe.loss_sum(collate(packed))
        single_loss = sum(recipe.loss_sum(collate([r])) for r in singles)
    assert collate(packed).n_targets == sum(collate([r]).n_targets for r in singles)
    torch.testing.assert_close(packed_loss, single_loss, rtol=1e-5, atol=1e-4)
    # Without the per-document position reset the same rows give a different loss.
    flat = [Row(r.input_ids, r.targets, np.arange(128), r.n_real) for r in packed]
    with torch.no_grad():
        assert abs(float(recipe.loss_sum(collate(flat)) - packed_loss)) > 1e-2


def test_accumulation_does_not_change_the_step(make_config: MakeConfig, tmp_path: Path) -> None:
    """micro 4 x accum 1 and micro 1 x accum 4: same rows, loss normalised over the window."""
    runs = []
    for micro, accum in ((4, 1), (1, 4)):
        config = make_config(
            {"steps": 4, "micro_batch_size": micro, "grad_accum_steps": accum},
            output=str(tmp_path / f"m{micro}"),
        )
        runs.append(run_experiment(config, str(config.output), ONE, CPU)[0].losses)
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)


def test_interrupted_run_resumes_exactly(make_config: MakeConfig, tmp_path: Path) -> None:
    """Stop at a (seeded) random step, resume from the latest COMPLETE checkpoint, ignore a
    partial one, and continue with the same data and the same losses."""
    stage = {
        "steps": 8,
        "checkpoint": {"every_steps": 3, "keep_last": 2},
        "optimizer": {"lr": 3e-3, "warmup_steps": 2, "schedule": "cosine"},
    }
    full = make_config(stage, output=str(tmp_path / "full"))
    expected = run_experiment(full, str(full.output), ONE, CPU)[0].losses

    stop_at = random.Random(1234).randint(4, 7)
    config = make_config(stage, output=str(tmp_path / "cut"))
    first = run_experiment(config, str(config.output), ONE, CPU, stop=lambda s: s == stop_at)[0]
    assert first.status == "interrupted" and first.step == stop_at
    ckpt_root = Path(str(config.output), "exp", "dapt", "checkpoints")
    (ckpt_root / "step-00000099").mkdir()  # a partial checkpoint: files but no COMPLETE marker
    (ckpt_root / "step-00000099" / "trainer_state.pt").write_bytes(b"garbage")
    assert latest_complete(str(ckpt_root)) == str(ckpt_root / f"step-{stop_at:08d}")

    second = run_experiment(config, str(config.output), ONE, CPU)[0]
    assert second.status == "complete"
    assert first.losses + second.losses == pytest.approx(expected, rel=1e-5)


def test_lora_stage_on_dapt_output_via_s3(
    make_config: MakeConfig, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two chained stages on S3: full DAPT, then DoRA SFT on its output (with a resume); the
    merged model equals base + adapter."""
    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "cache"))
    base = make_config().stages[0].model_dump()
    sft = {
        **base,
        "name": "sft",
        "model": {"from_stage": "dapt"},
        "steps": 4,
        "checkpoint": {"every_steps": 2},
        "method": {
            "name": "lora",
            "lora": {
                "rank": 8,
                "alpha": 16,
                "dora": True,
                "target_modules": ["q_proj", "v_proj", "down_proj"],
            },
        },
        "data": {
            "seq_len": 64,
            "sources": [
                {
                    "name": "sft",
                    "kind": "instruction",
                    "heldout_examples": 4,
                    "paths": [
                        str(Path(base["data"]["sources"][0]["paths"][0]).parent / "sft.jsonl")
                    ],
                },
            ],
        },
    }
    output = f"s3://{BUCKET}/runs"
    config = make_config({"steps": 2}, output=output, stages=[{**base, "steps": 2}, sft])
    results = run_experiment(config, output, ONE, CPU, stop=lambda s: s == 3)
    assert [r.status for r in results] == ["complete", "interrupted"]
    results = run_experiment(config, output, ONE, CPU)
    assert [r.status for r in results] == ["skipped", "complete"] and results[1].step == 4

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")["Contents"]}
    assert "runs/exp/sft/checkpoints/step-00000003/COMPLETE" in keys
    assert "runs/exp/sft/final/adapter/adapter_model.safetensors" in keys
    assert "runs/exp/sft/metrics.jsonl" in keys

    local = tmp_path / "final"
    for key in (k for k in keys if k.startswith("runs/exp/")):
        if "/final/" in key:
            dest = local / key.split("/final/")[1]
            dest.parent.mkdir(parents=True, exist_ok=True)
            if "/dapt/" in key:
                dest = tmp_path / "dapt" / key.split("/final/")[1]
                dest.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(BUCKET, key, str(dest))
    merged = AutoModelForCausalLM.from_pretrained(str(local / "model"), local_files_only=True)
    dapt_dir = str(tmp_path / "dapt" / "model")
    plain = AutoModelForCausalLM.from_pretrained(dapt_dir, local_files_only=True)
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(dapt_dir, local_files_only=True),
        str(local / "adapter"),
    )
    ids = torch.randint(4, 40, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(plain(ids).logits, merged(ids).logits, atol=1e-4)

    # The archive SageMaker serves holds the same adapter, its files at the root.
    with tarfile.open(local / ADAPTER_ARCHIVE) as tar:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= set(tar.getnames())
        assert all("/" not in name for name in tar.getnames())
        tar.extractall(tmp_path / "served", filter="data")
    served = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(dapt_dir, local_files_only=True),
        str(tmp_path / "served"),
    )
    with torch.no_grad():
        torch.testing.assert_close(served(ids).logits, adapted(ids).logits)


def test_flop_count_follows_torchtitan(make_config: MakeConfig, tmp_path: Path) -> None:
    recipe = StageRecipe(make_config(), make_config().stages[0], str(tmp_path), ONE, CPU)
    recipe.setup()
    cfg = recipe.model.config
    n = sum(p.numel() for p in recipe.model.parameters()) - cfg.vocab_size * cfg.hidden_size
    flops = FlopCount.of(recipe.model, cfg, seq_len=64)
    assert flops.per_token == 6 * n + 12 * 2 * 4 * 8 * 64
    # The logged MFU: the weights' FLOPs per token plus the pairs the kernel computed.
    assert flops.step_flops(tokens=100, attention_pairs=3000) == 6 * n * 100 + 12 * 2 * 4 * 8 * 3000
    # A head tied to the input embedding is still a matmul: counted once, as the head.
    tied = LlamaForCausalLM(LlamaConfig(**{**cfg.to_dict(), "tie_word_embeddings": True}))
    assert tied.lm_head.weight is tied.get_input_embeddings().weight
    n_tied = sum(p.numel() for p in tied.parameters())  # parameters() yields a tied one once
    assert FlopCount.of(tied, tied.config, seq_len=64).per_token == 6 * n_tied + 12 * 2 * 4 * 8 * 64


@pytest.mark.parametrize("method", ["full", "lora"])
def test_activation_checkpointing_changes_no_loss(
    make_config: MakeConfig, tmp_path: Path, method: str, recwarn: pytest.WarningsRecorder
) -> None:
    """The production default (on) recomputes every decoder layer and trains exactly as off,
    through the API of the installed transformers (not its deprecated alias)."""
    losses = {}
    for on in (False, True):
        config = make_config(
            {"method": {"name": method, "lora": {"rank": 8, "alpha": 16}}},
            compute={"precision": "fp32", "activation_checkpointing": on},
        )
        recipe = StageRecipe(config, config.stages[0], str(tmp_path / str(on)), ONE, CPU)
        recipe.setup()
        layers = decoder_layers(recipe.model)
        assert [getattr(layer, "gradient_checkpointing", False) for layer in layers] == [on] * 2
        recipe.model.train()
        losses[on] = [recipe.train_step()["loss"] for _ in range(3)]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
    assert not [w for w in recwarn if "gradient_checkpointing_enable" in str(w.message)]


def test_sigterm_under_torchrun_checkpoints_exits_143_and_resumes(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """The container's command (the launcher around torchrun, two CPU workers) stopped by a
    SIGTERM to the launcher alone, as the ECS agent's ``docker stop`` sends it to PID 1: exit 143
    without a traceback (plain torchrun: exit 1 and a SignalException traceback), a complete
    checkpoint at the step the ranks agreed on, and one process resumes it exactly."""
    stage = {"steps": 20, "checkpoint": {"every_steps": 1000}}
    reference = make_config(stage, output=str(tmp_path / "ref"))
    expected = run_experiment(reference, str(reference.output), ONE, CPU)[0].losses

    config = make_config({**stage, "micro_batch_size": 1}, output=str(tmp_path / "job"))
    path = tmp_path / "job.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    metrics = tmp_path / "job" / "exp" / "dapt" / "metrics.jsonl"
    env = {**os.environ, "DAPT_CONFIG": str(path), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    launch = ["--standalone", "--nproc_per_node=2", "-m", "dapt_trainer"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dapt_trainer.launch", *launch],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    log = err.decode()
    assert proc.returncode == 143, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert '"event": "launcher_stopped", "signal": "SIGTERM", "exit_code": 143' in log
    records = [json.loads(x) for x in metrics.read_text().splitlines()]
    done = [r["loss"] for r in records if "loss" in r]  # not the step-0 held-out record
    stopped = len(done)
    assert 2 <= stopped < 20
    ckpt = latest_complete(str(tmp_path / "job" / "exp" / "dapt" / "checkpoints"))
    assert ckpt is not None and ckpt.endswith(f"step-{stopped:08d}")

    # One process, two rows per forward: the global batch of the two ranks.
    single = make_config(stage, output=str(tmp_path / "job"))
    resumed = run_experiment(single, str(single.output), ONE, CPU)[0]
    assert done + resumed.losses == pytest.approx(expected, rel=1e-4)


def test_compiled_layers_train_exactly_like_eager(make_config: MakeConfig, tmp_path: Path) -> None:
    """``compute.compile`` (torch.compile per decoder layer, here with activation checkpointing,
    as a GPU run would use it) changes no loss. Inductor builds C++ kernels on the CPU: the
    first run on a machine takes ~20 s, later ones reuse its cache."""
    losses = {}
    torch._dynamo.reset()  # counters and caches of earlier tests in this process
    for compiled in (False, True):
        config = make_config(
            {"steps": 3},
            output=str(tmp_path / str(compiled)),
            compute={"precision": "fp32", "activation_checkpointing": True, "compile": compiled},
        )
        [result] = run_experiment(config, str(config.output), ONE, CPU)
        assert result.status == "complete"
        losses[compiled] = result.losses
        # Dynamo captured graphs only when asked to compile.
        assert bool(torch._dynamo.utils.counters["stats"]["unique_graphs"]) == compiled
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_lineage_records_config_code_data_and_evaluation(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = make_config({"steps": 20, "data": {**_data(make_config), "domain_share": 0.1}})
    [result] = run_experiment(config, str(config.output), ONE, CPU)
    lineage = json.loads((Path(result.output) / "final" / "lineage.json").read_text())
    assert lineage["config"]["yaml"] == dump_config(config)
    assert len(lineage["code"]["source_sha256"]) == 64
    assert lineage["code"]["versions"]["torch"] == torch.__version__
    assert lineage["base_model"]["config_sha256"] is not None
    sources = {s["name"]: s for s in lineage["data"]["sources"]}
    assert set(sources) == {"domain", "public"}
    for source in sources.values():
        assert all(fingerprint for _, fingerprint in source["files"])
        assert source["heldout_documents"] == 4 and source["quarantined"] == 0
    # Trained: the non-padding tokens of the steps' rows, not what waits in the packing window.
    records = (Path(result.output) / "metrics.jsonl").read_text().splitlines()
    in_steps = sum(r["tokens"] for r in map(json.loads, records) if "loss" in r)
    trained = lineage["training"]["tokens_trained"]
    assert trained == sum(s["trained_tokens"] for s in sources.values()) == in_steps
    drawn = lineage["training"]["tokens_drawn"]
    assert drawn == sum(s["drawn_tokens"] for s in sources.values()) > trained
    # The mixture's share (of what it drew) holds within (sources - 1) x the longest document.
    assert abs(sources["domain"]["drawn_tokens"] / drawn - 0.1) < 70 / drawn
    assert lineage["training"]["steps"] == 20 and lineage["training"]["last_step"]["step"] == 20
    assert lineage["evaluation"]["heldout_loss"] == result.heldout
    before = lineage["evaluation"]["heldout_loss_before"]
    assert set(before) == set(result.heldout) and before["domain"] > result.heldout["domain"]


def _data(make_config: MakeConfig) -> dict[str, Any]:
    return make_config().stages[0].data.model_dump(mode="json")


@pytest.mark.parametrize("attention", ["sdpa", "eager", "flex_attention"])
def test_every_attention_kernel_keeps_packed_documents_apart(
    model_dir: Path, attention: str
) -> None:
    """Transformers derives the block-diagonal mask from position ids only when no attention
    mask and no KV cache is passed (hence ``use_cache=False`` in the recipe). Forward only:
    flex attention has no CPU backward; on CPU its kernel compiles first (~20 s)."""
    model = load_base(model_dir, CPU, attention)
    ids = torch.randint(4, 40, (1, 32), generator=torch.Generator().manual_seed(0))
    positions = torch.tensor([list(range(10)) + list(range(22))])
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        apart = torch.cat(
            [
                model(input_ids=ids[:, a:b], position_ids=positions[:, a:b], use_cache=False).logits
                for a, b in ((0, 10), (10, 32))
            ],
            dim=1,
        )
    torch.testing.assert_close(packed, apart, rtol=1e-5, atol=1e-5)


def test_the_adapter_archive_is_reproducible_and_refuses_a_non_adapter(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    first = archive_adapter(adapter, tmp_path / "a.tar.gz").read_bytes()
    os.utime(adapter / "adapter_config.json", (1, 1))
    assert archive_adapter(adapter, tmp_path / "b.tar.gz").read_bytes() == first
    (adapter / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no adapter_config\.json"):
        archive_adapter(adapter, tmp_path / "c.tar.gz")


def test_each_rank_draws_its_own_dropout_from_identical_adapters(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """seed + rank after the adapters are initialised: LoRA dropout masks differ across ranks,
    while the starting weights and the data stream are the same on all of them."""
    config = make_config({"method": {"name": "lora", "lora": {"rank": 4, "dropout": 0.5}}})
    adapters, draws, rows = [], [], []
    for rank in (0, 1):
        dist = Dist(rank=rank)  # one process standing in for rank 0 or rank 1 of a job
        recipe = StageRecipe(config, config.stages[0], str(tmp_path / str(rank)), dist, CPU)
        recipe.setup()
        adapters.append({k: v.clone() for k, v in recipe.model.named_parameters() if "lora" in k})
        draws.append(torch.rand(8))
        rows.append(recipe.stream.next_row().input_ids)
    assert adapters[0].keys() == adapters[1].keys() and adapters[0]
    for name, weight in adapters[0].items():
        torch.testing.assert_close(weight, adapters[1][name])
    assert not torch.equal(draws[0], draws[1])
    np.testing.assert_array_equal(rows[0], rows[1])
