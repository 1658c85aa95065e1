"""Throughput and MFU of the dapt trainer and, on the same model and rows, a plain Hugging Face
Trainer baseline. Not a test: figures go to docs/benchmarks.md.

    python bench/bench_train.py --mode cpu          # anywhere: tiny Llama, fp32
    python bench/bench_train.py --mode gpu-1b       # one GPU: ~1.1B Llama, full FT, bf16
    python bench/bench_train.py --mode gpu-7b-lora  # one GPU: Llama-2-7B shape, LoRA r=256, bf16

Models have random weights built from a LlamaConfig; the tokenizer is built here (no hub).
Both trainers see the same packed rows (same seq_len, micro batch, accumulation, optimizer).

Every mode also measures the data path on this machine's CPU (it runs beside the GPU): how fast
sources are tokenised into the token cache, how fast packed rows are built from it, and the
packing efficiency of an instruction-only mix (examples are never cut) in draw order versus the
default best-fit window.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from dapt_trainer.config import DataConfig, SourceConfig, parse_config
from dapt_trainer.data.cache import tokenized_sources
from dapt_trainer.data.stream import PackedStream
from dapt_trainer.model import Dist, attention_implementation, load_tokenizer, setup_device
from dapt_trainer.recipe import StageRecipe

MODES: dict[str, dict[str, Any]] = {
    "cpu": {
        "model": {
            "hidden_size": 256,
            "intermediate_size": 688,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
        },
        "seq_len": 256,
        "micro": 4,
        "accum": 1,
        "steps": 8,
        "warmup": 2,
        "method": "full",
        "precision": "fp32",
        "checkpointing": False,
    },
    "gpu-1b": {  # TinyLlama-1.1B shape
        "model": {
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "num_hidden_layers": 22,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
        },
        "seq_len": 4096,
        "micro": 2,
        "accum": 4,
        "steps": 10,
        "warmup": 3,
        "method": "full",
        "precision": "bf16",
        "checkpointing": True,
    },
    "gpu-7b-lora": {  # Llama-2-7B shape
        "model": {
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
        },
        "seq_len": 4096,
        "micro": 1,
        "accum": 4,
        "steps": 6,
        "warmup": 2,
        "method": "lora",
        "precision": "bf16",
        "checkpointing": True,
    },
}
VOCAB_WORDS = 4000
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> {% endif %}"
)
# transformers 5.23 renamed TrainingArguments.gradient_checkpointing to activation_checkpointing
# (the old name warns, even when False, and goes in v6); earlier 5.x only know the old name.
_CHECKPOINTING_ARG = (
    "activation_checkpointing"
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(TrainingArguments)}
    else "gradient_checkpointing"
)


def build_assets(root: Path, mode: dict[str, Any]) -> tuple[Path, Path]:
    """A saved random-weight Llama + word-level tokenizer, and a JSONL corpus."""
    words = [f"w{i}" for i in range(VOCAB_WORDS)]
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(
        [" ".join(words)],
        trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "<s>", "</s>"]),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="<s>",
        eos_token="</s>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=32000 if mode["precision"] == "bf16" else len(tokenizer),
        max_position_embeddings=mode["seq_len"],
        **mode["model"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model_dir = root / "model"
    model = LlamaForCausalLM(config)
    if mode["precision"] == "bf16":
        # Half the bytes to write and read back (7B: 13 GB, not 27 GB); both trainers load
        # fp32 master weights from it, as from any bf16 checkpoint.
        model = model.to(torch.bfloat16)
    model.save_pretrained(model_dir)
    del model
    tokenizer.save_pretrained(model_dir)
    rng = random.Random(0)
    corpus = root / "corpus.jsonl"
    with corpus.open("w") as f:
        for _ in range(2000):
            n = rng.randint(mode["seq_len"] // 8, mode["seq_len"] * 2)
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(n))}) + "\n")
    return model_dir, corpus


def experiment(
    root: Path, model_dir: Path, corpus: Path, mode: dict[str, Any], attention: str
) -> Any:
    total = mode["warmup"] + mode["steps"]
    return parse_config(
        {
            "experiment": "bench",
            "output": str(root / "out"),
            "seed": 0,
            "compute": {
                "precision": mode["precision"],
                "activation_checkpointing": mode["checkpointing"],
                "attention": attention,
                "compile": mode.get("compile", False),
            },
            "stages": [
                {
                    "name": "bench",
                    "model": {"path": str(model_dir)},
                    "data": {
                        "seq_len": mode["seq_len"],
                        "sources": [{"name": "c", "kind": "completion", "paths": [str(corpus)]}],
                    },
                    "method": {"name": mode["method"], "lora": {"rank": 256, "alpha": 512}},
                    "optimizer": {"lr": 1e-4, "warmup_steps": 1},
                    "micro_batch_size": mode["micro"],
                    "grad_accum_steps": mode["accum"],
                    "steps": total,
                    "checkpoint": {"every_steps": 10_000},
                }
            ],
        }
    )


def bench_data(root: Path, model_dir: Path, corpus: Path, seq_len: int) -> dict[str, Any]:
    """Token cache build rate, row build rate, and instruction packing by window size."""
    tokenizer = load_tokenizer(model_dir)
    rng = random.Random(1)
    chats = root / "chats.jsonl"
    with chats.open("w") as f:
        for _ in range(N_CHATS):
            # Lengths spread like real SFT data: prompt and response log-normal with a long
            # tail, an example's median 1/16 of a row (256 tokens in a 4096-token row).
            median = math.log(seq_len / 32)
            p, r = (min(int(rng.lognormvariate(median, 0.8)), seq_len // 2) + 1 for _ in range(2))
            words = [f"w{rng.randrange(VOCAB_WORDS)}" for _ in range(p + r)]
            row = {"prompt": " ".join(words[:p]), "response": " ".join(words[p:])}
            f.write(json.dumps(row) + "\n")
    out: dict[str, Any] = {}
    for kind, path in (("completion", corpus), ("instruction", chats)):
        source = SourceConfig(name=kind, kind=kind, paths=[str(path)])
        start = time.perf_counter()
        [tokenized] = tokenized_sources([source], tokenizer, root / f"cache-{kind}")
        seconds = time.perf_counter() - start
        out[f"cache_build_{kind}_tokens_per_s"] = round(tokenized.n_tokens / seconds)
        for window in (1, 64) if kind == "instruction" else (64,):
            data = DataConfig(seq_len=seq_len, pack_window=window, sources=[source])
            stream = PackedStream(data, [tokenized], 0, tokenizer.pad_token_id)
            start = time.perf_counter()
            for _ in range(N_ROWS):
                stream.next_row()
            seconds = time.perf_counter() - start
            out[f"rows_{kind}_window{window}_tokens_per_s"] = round(
                stream.stats["real_tokens"] / seconds
            )
            out[f"packing_{kind}_window{window}"] = round(stream.packing_efficiency(), 4)
    return out


def bench_ours(cfg: Any, mode: dict[str, Any], device: torch.device) -> dict[str, Any]:
    recipe = StageRecipe(cfg, cfg.stages[0], str(cfg.output), Dist(), device)
    recipe.setup()
    recipe.model.train()
    records = [recipe.train_step() for _ in range(mode["warmup"] + mode["steps"])]
    timed = records[mode["warmup"] :]
    seconds = sum(r["step_time_s"] for r in timed)
    tokens = sum(r["tokens"] for r in timed)
    return {
        "tokens_per_s": tokens / seconds,
        "flops_per_token": recipe.flops.per_token,
        "loss_first": records[0]["loss"],
        "loss_last": records[-1]["loss"],
        "packing_efficiency": timed[-1]["packing_efficiency"],
        "peak_mem_gib": _peak_mem(device),
        "step_times": [r["step_time_s"] for r in timed],
    }


class _Timer(TrainerCallback):  # type: ignore[misc]
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def bench_hf(cfg: Any, mode: dict[str, Any], device: torch.device, out: Path) -> dict[str, Any]:
    """The same rows through transformers.Trainer (labels = inputs, it shifts internally)."""
    recipe = StageRecipe(cfg, cfg.stages[0], str(cfg.output), Dist(), device)
    recipe.model_path = Path(cfg.stages[0].model.path)
    recipe.tokenizer = load_tokenizer(recipe.model_path)
    _, stream = recipe.setup_data()
    n_rows = mode["micro"] * mode["accum"] * (mode["warmup"] + mode["steps"])
    rows = [stream.next_row() for _ in range(n_rows)]
    dataset = [
        {
            "input_ids": torch.tensor(r.input_ids),
            "position_ids": torch.tensor(r.position_ids),
            "labels": torch.tensor(
                [t if i < r.n_real else -100 for i, t in enumerate(r.input_ids.tolist())]
            ),
        }
        for r in rows
    ]
    model = LlamaForCausalLM.from_pretrained(
        str(recipe.model_path),
        dtype=torch.float32,
        local_files_only=True,
        attn_implementation=attention_implementation(cfg.compute.attention, device),
    )
    if mode["method"] == "lora":
        from peft import LoraConfig, get_peft_model  # noqa: PLC0415

        model = get_peft_model(
            model,
            LoraConfig(
                r=256,
                lora_alpha=512,
                target_modules=list(cfg.stages[0].method.lora.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=mode["micro"],
        gradient_accumulation_steps=mode["accum"],
        max_steps=mode["warmup"] + mode["steps"],
        learning_rate=1e-4,
        warmup_steps=1,
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=device.type == "cpu",
        bf16=mode["precision"] == "bf16",
        **{_CHECKPOINTING_ARG: mode["checkpointing"]},
        torch_compile=mode["compile"],
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=0,
        disable_tqdm=True,
        optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch",
    )
    timer = _Timer()
    trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[timer])
    start = time.perf_counter()
    trainer.train()
    ends = [start, *timer.ends]
    step_times = [b - a for a, b in itertools.pairwise(ends)][mode["warmup"] :]
    per_step = len(rows) // (mode["warmup"] + mode["steps"])
    timed_rows = rows[mode["warmup"] * per_step :]
    tokens = sum(r.n_real for r in timed_rows)
    return {
        "tokens_per_s": tokens / sum(step_times),
        "peak_mem_gib": _peak_mem(device),
        "step_times": step_times,
    }


def _peak_mem(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    gib = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return round(gib, 2)


def cpu_peak_flops(n: int = 1024, repeats: int = 10) -> float:
    """Measured fp32 matmul FLOP/s of this CPU: the MFU denominator in CPU mode."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=sorted(MODES), default="cpu")
    parser.add_argument(
        "--peak-flops",
        type=float,
        default=989e12,
        help="GPU peak FLOP/s for MFU (default H100 SXM bf16 dense)",
    )
    parser.add_argument(
        "--attention",
        default="auto",
        choices=["auto", "flash_attention_2", "flex_attention", "sdpa", "eager"],
        help="attention kernel for both trainers (auto: flash-attention 2 if installed, else sdpa)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile decoder layers")
    parser.add_argument("--steps", type=int, help="timed steps (default: the mode's)")
    args = parser.parse_args()
    mode = dict(MODES[args.mode], compile=args.compile)
    if args.steps:
        mode["steps"] = args.steps
    device = setup_device(Dist())
    if device.type == "cpu" and args.mode != "cpu":
        parser.error(f"--mode {args.mode} needs a GPU")
    peak = cpu_peak_flops() if device.type == "cpu" else args.peak_flops
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["DAPT_CACHE"] = str(root / "cache")
        model_dir, corpus = build_assets(root, mode)
        data_path = bench_data(root, model_dir, corpus, mode["seq_len"])
        cfg = experiment(root, model_dir, corpus, mode, args.attention)
        ours = bench_ours(cfg, mode, device)
        hf = bench_hf(cfg, mode, device, root / "hf")
    flops = ours["flops_per_token"]
    setup = {
        "mode": args.mode,
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "attention": attention_implementation(args.attention, device),
        "torch": torch.__version__,
        **{k: v for k, v in mode.items() if k != "model"},
        **mode["model"],
        "flops_per_token": flops,
        "peak_flops": peak,
        "peak_source": "measured fp32 matmul" if device.type == "cpu" else "--peak-flops",
    }
    print(json.dumps({"setup": setup}, indent=1))
    print(f"{'trainer':<22}{'tokens/s':>12}{'MFU':>9}{'peak GiB':>10}")
    for name, r in (("dapt-trainer", ours), ("HF Trainer baseline", hf)):
        mfu = r["tokens_per_s"] * flops / peak
        mem = "-" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.1f}"
        print(f"{name:<22}{r['tokens_per_s']:>12.1f}{mfu:>9.2%}{mem:>10}")
    print(
        json.dumps(
            {
                "loss_first": ours["loss_first"],
                "loss_last": ours["loss_last"],
                "packing_efficiency": round(ours["packing_efficiency"], 4),
                "speedup_vs_hf": round(ours["tokens_per_s"] / hf["tokens_per_s"], 3),
                "median_step_s": {
                    "dapt-trainer": statistics.median(ours["step_times"]),
                    "hf": statistics.median(hf["step_times"]),
                },
            }
        )
    )
    print(json.dumps({"data_path": data_path}, indent=1))


N_CHATS = 3000
N_ROWS = 200

if __name__ == "__main__":
    main()
