"""Decontamination recall on paraphrased benchmark questions, and false drops on the KB.

    ../../.venv/bin/python bench/bench_decontaminate.py [--thresholds 0.4,0.5,0.6]

The paraphrase set (`bench/data/qa_paraphrases.tsv`) is 43 questions of the example QA
benchmark (every fifth item), each reworded by hand the way a customer or a teacher model
would (other function words, word order, a synonym, a contraction); each is checked inside a
chat-like record ("Customer: hi there. <question>\\nAgent: ..."). False drops: the example
domain's 38 KB articles, unmodified, against every example benchmark as the example
`pipeline.yaml` lists them (summarization as references only); none should be dropped. The
chats are counted too, for information: the example's intent, sentiment and summarization
items are made from them, so dropping some is the guard working. Also printed: the same with
the 13-gram rule alone (the rule before paraphrase matching) and, when `datasketch` is
installed, MinHash (128 permutations) estimated Jaccard of the same features in place of the
weighted cosine. Prints the setup and the figures; writes nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import time
from pathlib import Path

from dapt_data.config import DecontaminateConfig
from dapt_data.decontaminate import (
    NgramIndex,
    asked_questions,
    decontaminate_records,
    load_index,
    question_features,
)
from dapt_data.ingest import markdown_to_text
from dapt_data.records import Kind, Origin, Record

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parents[2] / "examples" / "website-builder"
PARAPHRASES = HERE / "data" / "qa_paraphrases.tsv"
SHORT_WORDS = 8
BENCHMARKS = ["qa", "mcq", "intent", "sentiment", "segmentation", "summarization"]


def _record(source: str, location: str, text: str) -> Record:
    return Record.make(source, location, Kind.COMPLETION, Origin.DOMAIN, text)


def _config(threshold: float | None) -> DecontaminateConfig:
    roots = [str(EXAMPLE / "benchmarks" / b) for b in BENCHMARKS]
    return DecontaminateConfig(
        benchmarks=roots, references_only=[roots[-1]], paraphrase_threshold=threshold
    )


def _paraphrased() -> list[tuple[str, Record]]:
    rows = []
    for line in PARAPHRASES.read_text(encoding="utf-8").splitlines():
        item, question = line.split("\t")
        text = f"Customer: hi there. {question}\nAgent: Thanks for asking, let me check."
        rows.append((item, _record("paraphrase", item, text)))
    return rows


def _short_verbatim() -> list[tuple[str, Record]]:
    """Every QA question under 8 words, copied verbatim into a chat-like record."""
    rows = []
    for line in (EXAMPLE / "benchmarks" / "qa" / "items.jsonl").open(encoding="utf-8"):
        item = json.loads(line)
        if len(re.findall(r"\w+", item["question"])) < SHORT_WORDS:
            text = f"Customer: hi there. {item['question']}\nAgent: Let me check."
            rows.append((item["id"], _record("short", item["id"], text)))
    return rows


def _kb() -> list[Record]:
    return [
        _record("kb", p.name, markdown_to_text(p.read_text(encoding="utf-8")))
        for p in sorted((EXAMPLE / "kb").glob("*.md"))
    ]


def _chats() -> list[Record]:
    out = []
    for number, line in enumerate((EXAMPLE / "chats" / "chats.jsonl").open(), start=1):
        turns = json.loads(line)["turns"]
        text = "\n".join(f"{t['role'].capitalize()}: {t['text']}" for t in turns)
        out.append(_record("chats", str(number), text))
    return out


def _measure(index: NgramIndex, name: str, paraphrased: list[tuple[str, Record]]) -> None:
    started = time.perf_counter()
    short = _short_verbatim()
    _, short_dropped = decontaminate_records([r for _, r in short], index, 0.0)
    _, dropped = decontaminate_records([r for _, r in paraphrased], index, 0.0)
    right = {
        d.record.source_id
        for d in dropped
        if d.matched and d.matched.endswith("/" + d.record.source_id.split(":", 1)[1])
    }
    _, kb_dropped = decontaminate_records(_kb(), index, 0.0)
    _, chat_dropped = decontaminate_records(_chats(), index, 0.0)
    seconds = time.perf_counter() - started
    print(
        f"| {name} | {len(right)}/{len(paraphrased)} ({100 * len(right) / len(paraphrased):.0f}%) "
        f"| {len(dropped) - len(right)} | {len(kb_dropped)}/38 "
        f"| {len(chat_dropped)}/124 | {len(short_dropped)}/{len(short)} | {seconds:.1f} s |"
    )
    for d in kb_dropped:
        print(f"|   KB dropped: {d.record.source_id} by {d.matched} ({d.score}) | | | | | | |")


def _minhash(paraphrased: list[tuple[str, Record]], thresholds: list[float]) -> None:
    if importlib.util.find_spec("datasketch") is None:
        print("datasketch is not installed: MinHash comparison skipped")
        return
    from datasketch import MinHash  # noqa: PLC0415  # optional: only this comparison needs it

    index = load_index(_config(0.5))
    assert index.paraphrases is not None
    keys = index.paraphrases.keys
    signatures = []
    for weights in index.paraphrases.weights:
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([g.encode() for g in weights])
        signatures.append(m)

    def best(text: str) -> tuple[str, float]:
        top = ("", 0.0)
        for asked in asked_questions(text):
            m = MinHash(num_perm=128, seed=1)
            m.update_batch([g.encode() for g in question_features(asked)])
            for key, sig in zip(keys, signatures, strict=True):
                score = m.jaccard(sig)
                if score > top[1]:
                    top = (key, score)
        return top

    para = [(item, best(r.text)) for item, r in paraphrased]
    kb = [best(r.text) for r in _kb()]
    for t in thresholds:
        found = sum(s >= t and k.endswith("/" + item) for item, (k, s) in para)
        false = sum(s >= t for _, s in kb)
        print(f"| MinHash Jaccard >= {t} | {found}/{len(para)} | - | {false}/38 | - | - | - |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--thresholds", default="0.5,0.55,0.6")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    print(
        f"setup: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}; benchmarks {BENCHMARKS} of {EXAMPLE}"
    )
    paraphrased = _paraphrased()
    print(
        "| rule | paraphrases caught (right item) | wrong item | KB articles dropped "
        "| chats dropped | short questions copied verbatim caught | time |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    _measure(load_index(_config(None)), "13-gram + exact short items", paraphrased)
    for t in thresholds:
        _measure(load_index(_config(t)), f"+ paraphrase cosine >= {t}", paraphrased)
    _minhash(paraphrased, thresholds)


if __name__ == "__main__":
    main()
