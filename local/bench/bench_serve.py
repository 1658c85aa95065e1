"""Throughput of `transformers serve` on this machine, by its batching settings.

Why: the local pipeline reaches every model through the served folder, and most of its time is
spent there. transformers' continuous batching defaults (8192 tokens per batch) were made for
GPUs; on a CPU the attention masks they build make long prompts slow. This script serves the
imported base model with each setting in turn and sends the same requests to each: classification
prompts of the example domain, alone (~120 tokens) and with 300 words of KB in front of them
(~600 tokens, the retrieval baseline's length), 16 in flight, 16 new tokens each.

    .venv/bin/python local/bench/bench_serve.py [--requests 32] [--concurrency 16]

Prints the machine, the settings and requests/s per setting and prompt length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from dapt_local.config import ServeSection, load_config
from dapt_local.model_import import import_model
from dapt_local.serve import serving

REPO = Path(__file__).resolve().parents[2]
SETTINGS = {
    "one at a time (no batching)": {"continuous_batching": False},
    "continuous batching, transformers defaults": {
        "continuous_batching": True,
        "cb_max_batch_tokens": None,
        "cb_block_size": None,
    },
    "continuous batching, 2048 tokens, blocks of 32 (the pipeline's)": {
        "continuous_batching": True,
        "cb_max_batch_tokens": 2048,
        "cb_block_size": 32,
    },
}


def prompts(n: int, context_words: int) -> list[str]:
    example = REPO / "examples" / "website-builder"
    items = [
        json.loads(x) for x in (example / "benchmarks/intent/items.jsonl").read_text().splitlines()
    ]
    labels = ", ".join(json.loads((example / "benchmarks/intent/labels.json").read_text()))
    kb = " ".join((example / "kb/kb-001-plans-and-pricing.md").read_text().split()[:context_words])
    return [
        (kb + "\n\n" if context_words else "")
        + "Classify the intent of this Quillsite customer message.\n"
        f"Possible intents: {labels}\n\nMessage: {item['text']}\n\nAnswer with the intent only."
        for item in items[:n]
    ]


def measure(base_url: str, model: str, texts: list[str], concurrency: int) -> tuple[float, float]:
    client = httpx.Client(timeout=600)

    def one(text: str) -> int:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 16,
            "temperature": 0,
        }
        reply = client.post(f"{base_url}/v1/chat/completions", json=body).json()
        return int(reply["usage"]["prompt_tokens"])

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = list(pool.map(one, texts))
    elapsed = time.perf_counter() - started
    return len(texts) / elapsed, sum(tokens) / len(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    config = load_config(REPO / "examples" / "website-builder" / "adapt.yaml")
    model = import_model(config.base_model, Path(config.cache))
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(
        f"model: {config.base_model.name} {model.revision}, bf16; {args.requests} requests, "
        f"{args.concurrency} in flight, 16 new tokens each"
    )
    print("| setting | prompt tokens | requests/s |")
    print("| --- | --- | --- |")
    for name, changes in SETTINGS.items():
        settings = ServeSection(**changes)  # type: ignore[arg-type]
        with serving(model.path, settings, Path("/tmp/bench-serve.log")) as served:
            for words in (0, 300):
                rate, tokens = measure(
                    served.base_url, served.model, prompts(args.requests, words), args.concurrency
                )
                print(f"| {name} | {tokens:.0f} | {rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
