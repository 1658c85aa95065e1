"""Throughput of the clean, dedup and redact steps on a synthetic corpus (not a test).

    ../../.venv/bin/python bench/bench_pipeline.py --mb 50 \
        [--compare-datatrove /tmp/dtvenv/bin/python]

Generates English-like documents (~1 KB) with injected near-duplicates (a copy with a few words
changed) and PII-like strings (emails, phone numbers), then times each step in this one process
(single-threaded, so MB/s is per core). Prints the setup and the figures; nothing is written
to the repository.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

from dapt_data.clean import clean_records
from dapt_data.config import CleanConfig, DedupConfig
from dapt_data.dedup import dedup_records
from dapt_data.records import Kind, Origin, Record
from dapt_data.redact import RedactionConfig, redact_records

WORDS = (
    "site domain page plan billing invoice refund template editor publish contact form image "
    "gallery store product checkout payment customer account password email support settings "
    "the a an of to in for on with and or but when after before because while during under"
)


def make_corpus(megabytes: float, dup_rate: float, pii_rate: float, seed: int) -> list[str]:
    """Documents of ~1 KB; `dup_rate` of them near-copies of an earlier one, some with PII."""
    rng = random.Random(seed)
    docs: list[str] = []
    size = 0
    while size < megabytes * 1_000_000:
        if docs and rng.random() < dup_rate:
            words = rng.choice(docs).split()
            for _ in range(3):
                words[rng.randrange(len(words))] = rng.choice(WORDS.split())
            text = " ".join(words)
        else:
            sentences = [
                " ".join(rng.choices(WORDS.split(), k=rng.randint(8, 16))).capitalize() + "."
                for _ in range(12)
            ]
            text = " ".join(sentences)
        if rng.random() < pii_rate:
            user, line = rng.randint(1, 999), rng.randint(1000, 9999)
            text += f" Contact jane.doe{user}@example.com or +1 415 555 {line}."
        docs.append(text)
        size += len(text.encode("utf-8"))
    return docs


def timed(label: str, megabytes: float, func, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = func(*args)
    seconds = time.perf_counter() - start
    print(f"{label:<34} {seconds:8.2f} s  {megabytes / seconds:8.2f} MB/s per core", flush=True)
    return result


def run_datatrove(python: str, docs: list[str], folder: Path) -> None:
    """datatrove's MinHash dedup (4 stages, 1 worker) on the same texts, timed end to end."""
    corpus = folder / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": d, "id": str(i)}) for i, d in enumerate(docs)))
    script = Path(__file__).with_name("datatrove_minhash.py")
    subprocess.run([python, str(script), str(corpus), str(folder / "dt")], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--pii-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redact-mb", type=float, default=5, help="redact a prefix of this size")
    parser.add_argument("--compare-datatrove", help="python of a venv with datatrove installed")
    parser.add_argument("--workdir", default="/tmp/bench-dapt-data")
    args = parser.parse_args()

    docs = make_corpus(args.mb, args.dup_rate, args.pii_rate, args.seed)
    megabytes = sum(len(d.encode("utf-8")) for d in docs) / 1_000_000
    print(
        f"python {sys.version.split()[0]} on {platform.machine()}, {len(docs)} docs, "
        f"{megabytes:.1f} MB, dup rate {args.dup_rate}, PII rate {args.pii_rate}"
    )
    records = [
        Record.make("bench", f"doc:{i}", Kind.COMPLETION, Origin.DOMAIN, d)
        for i, d in enumerate(docs)
    ]
    no_lang = CleanConfig(languages=[], max_repeated_ngram_ratio=1.0)
    kept, _ = timed("clean (no language filter)", megabytes, clean_records, records, no_lang)
    with_lang = CleanConfig(max_repeated_ngram_ratio=1.0)
    timed("clean (+ lingua, 2000-char sample)", megabytes, clean_records, records, with_lang)
    deduped, dropped = timed(
        "dedup (exact + MinHash LSH 128)", megabytes, dedup_records, kept, DedupConfig()
    )
    print(
        f"  dedup dropped {len(dropped)} of {len(kept)} "
        f"({sum(d.reason == 'near_duplicate' for d in dropped)} near)"
    )
    head = []
    size = 0.0
    for record in deduped:
        if size >= args.redact_mb:
            break
        head.append(record)
        size += len(record.text.encode("utf-8")) / 1_000_000
    timed(f"redact (patterns, first {size:.1f} MB)", size, redact_records, head, RedactionConfig())
    if args.compare_datatrove:
        folder = Path(args.workdir)
        folder.mkdir(parents=True, exist_ok=True)
        timed(
            "datatrove MinHash (4 stages)",
            megabytes,
            run_datatrove,
            args.compare_datatrove,
            docs,
            folder,
        )


if __name__ == "__main__":
    main()
