#!/usr/bin/env python3
"""Validate the bundled website-builder example domain (stdlib only).

Usage:
    python examples/website-builder/tools/check_examples.py [path/to/examples/website-builder]

Checks that every file parses, has the required fields, uses unique ids,
uses labels from the declared label sets, that MCQ distractors are distinct
and differ from the answer, and that source_ids point at existing KB article
ids or chat ids. Prints counts per file. Exits with status 1 on any error.
"""

import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

MINIMUMS = {
    "kb": 30,
    "chats": 120,
    "qa": 200,
    "mcq": 200,
    "intent": 400,
    "sentiment": 300,
    "segmentation": 200,
    "summarization": 80,
    "judge-calibration": 150,
}

errors = []
warnings = []


def err(msg):
    errors.append(msg)


def warn(msg):
    warnings.append(msg)


def is_text(value):
    return isinstance(value, str) and value.strip() != ""


def read_jsonl(path):
    rows = []
    if not path.is_file():
        err(f"{path}: missing file")
        return rows
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                err(f"{path.name}:{lineno}: invalid JSON ({exc})")
                continue
            if not isinstance(obj, dict):
                err(f"{path.name}:{lineno}: expected a JSON object")
                continue
            rows.append((lineno, obj))
    return rows


def read_labels(path):
    if not path.is_file():
        err(f"{path}: missing labels.json")
        return []
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        err(f"{path}: invalid JSON ({exc})")
        return []
    if not isinstance(labels, list) or not all(is_text(x) for x in labels):
        err(f"{path}: must be a JSON list of strings")
        return []
    if len(labels) != len(set(labels)):
        err(f"{path}: duplicate labels")
    return labels


def check_fields(name, lineno, obj, fields):
    ok = True
    for field, kind in fields.items():
        if field not in obj:
            err(f"{name}:{lineno}: missing field '{field}'")
            ok = False
        elif kind is str and not is_text(obj[field]):
            err(f"{name}:{lineno}: field '{field}' must be a non-empty string")
            ok = False
        elif kind is list and not isinstance(obj[field], list):
            err(f"{name}:{lineno}: field '{field}' must be a list")
            ok = False
        elif kind is dict and not isinstance(obj[field], dict):
            err(f"{name}:{lineno}: field '{field}' must be an object")
            ok = False
    return ok


def check_ids(name, rows, key, prefix):
    seen = set()
    pattern = re.compile(rf"^{re.escape(prefix)}-\d{{4}}$")
    for lineno, obj in rows:
        value = obj.get(key)
        if not isinstance(value, str):
            continue
        if not pattern.match(value):
            err(f"{name}:{lineno}: id '{value}' does not look like {prefix}-NNNN")
        if value in seen:
            err(f"{name}:{lineno}: duplicate id '{value}'")
        seen.add(value)
    return seen


# Same rule as dapt_eval.mcq: a distractor whose token-set Jaccard similarity with the
# answer is >= 0.8 counts as a near-paraphrase of it.
PARAPHRASE_JACCARD = 0.8


def tokens(text):
    out, word = [], []
    for char in unicodedata.normalize("NFKC", text).casefold():
        if char.isalnum() or char == "_" or unicodedata.category(char).startswith("M"):
            word.append(char)
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    return out


def jaccard(a, b):
    x, y = set(tokens(a)), set(tokens(b))
    return len(x & y) / len(x | y) if x | y else 1.0


FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def check_kb(root):
    kb_ids = set()
    files = sorted((root / "kb").glob("*.md"))
    for path in files:
        text = path.read_text(encoding="utf-8")
        match = FRONT_MATTER.match(text)
        if not match:
            err(f"kb/{path.name}: missing front-matter block")
            continue
        meta = {}
        for line in match.group(1).splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                meta[key.strip()] = value.strip()
        for field in ("id", "title", "updated"):
            if not meta.get(field):
                err(f"kb/{path.name}: front matter lacks '{field}'")
        kid = meta.get("id", "")
        if kid and not re.match(r"^kb-\d{3}$", kid):
            err(f"kb/{path.name}: id '{kid}' does not look like kb-NNN")
        if kid in kb_ids:
            err(f"kb/{path.name}: duplicate id '{kid}'")
        kb_ids.add(kid)
        if meta.get("updated") and not re.match(r"^\d{4}-\d{2}-\d{2}$", meta["updated"]):
            err(f"kb/{path.name}: 'updated' must be YYYY-MM-DD")
        words = len(text[match.end():].split())
        if not 200 <= words <= 600:
            err(f"kb/{path.name}: body has {words} words (expected 200-600)")
    return kb_ids, len(files)


def check_labelled(root, name, prefix):
    folder = root / "benchmarks" / name
    labels = read_labels(folder / "labels.json")
    rows = read_jsonl(folder / "items.jsonl")
    fname = f"{name}/items.jsonl"
    texts = Counter()
    dist = Counter()
    for lineno, obj in rows:
        if not check_fields(fname, lineno, obj, {"id": str, "text": str, "label": str}):
            continue
        if labels and obj["label"] not in labels:
            err(f"{fname}:{lineno}: label '{obj['label']}' not in labels.json")
        texts[obj["text"].strip().lower()] += 1
        dist[obj["label"]] += 1
    for text, n in texts.items():
        if n > 1:
            err(f"{fname}: text appears {n} times: {text[:60]!r}")
    check_ids(fname, rows, "id", prefix)
    unused = [lab for lab in labels if dist[lab] == 0]
    if unused:
        warn(f"{fname}: labels never used: {unused}")
    return len(rows), dist, labels


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    counts = {}
    dists = {}

    kb_ids, counts["kb"] = check_kb(root)

    # Label sets (chats reuse the intent, sentiment and segmentation labels).
    counts["intent"], dists["intent"], intent_labels = check_labelled(root, "intent", "intent")
    counts["sentiment"], dists["sentiment"], sentiment_labels = check_labelled(root, "sentiment", "sentiment")
    counts["segmentation"], dists["segmentation"], segment_labels = check_labelled(root, "segmentation", "segment")

    # Chats
    chat_rows = read_jsonl(root / "chats" / "chats.jsonl")
    chat_dist = {"intent": Counter(), "sentiment": Counter(), "segment": Counter()}
    for lineno, obj in chat_rows:
        name = "chats.jsonl"
        if not check_fields(name, lineno, obj, {"chat_id": str, "turns": list, "intent": str,
                                                "sentiment": str, "segment": str}):
            continue
        if len(obj["turns"]) < 2:
            err(f"{name}:{lineno}: a chat needs at least 2 turns")
        for i, turn in enumerate(obj["turns"]):
            if not isinstance(turn, dict) or turn.get("role") not in ("customer", "agent") \
                    or not is_text(turn.get("text")):
                err(f"{name}:{lineno}: turn {i} needs role customer|agent and non-empty text")
        if obj["turns"] and isinstance(obj["turns"][0], dict) and obj["turns"][0].get("role") != "customer":
            err(f"{name}:{lineno}: first turn should be from the customer")
        for field, labels in (("intent", intent_labels), ("sentiment", sentiment_labels),
                              ("segment", segment_labels)):
            if labels and obj[field] not in labels:
                err(f"{name}:{lineno}: {field} '{obj[field]}' not in the {field} label set")
            chat_dist[field][obj[field]] += 1
    chat_ids = check_ids("chats.jsonl", chat_rows, "chat_id", "chat")
    counts["chats"] = len(chat_rows)
    known_sources = kb_ids | chat_ids

    def check_sources(name, lineno, obj):
        src = obj.get("source_ids")
        if not isinstance(src, list) or not src:
            err(f"{name}:{lineno}: source_ids must be a non-empty list")
            return
        for s in src:
            if s not in known_sources:
                err(f"{name}:{lineno}: unknown source id '{s}'")

    # QA
    qa_rows = read_jsonl(root / "benchmarks" / "qa" / "items.jsonl")
    qa_by_num = {}
    for lineno, obj in qa_rows:
        name = "qa/items.jsonl"
        if not check_fields(name, lineno, obj, {"id": str, "question": str, "reference_answer": str,
                                                "source_ids": list}):
            continue
        check_sources(name, lineno, obj)
        qa_by_num[obj["id"].split("-")[-1]] = obj
    check_ids("qa/items.jsonl", qa_rows, "id", "qa")
    counts["qa"] = len(qa_rows)
    questions = Counter(obj.get("question", "").strip().lower() for _, obj in qa_rows)
    for q, n in questions.items():
        if n > 1:
            err(f"qa/items.jsonl: question appears {n} times: {q[:60]!r}")

    # MCQ
    mcq_rows = read_jsonl(root / "benchmarks" / "mcq" / "items.jsonl")
    mcq_nums = set()
    for lineno, obj in mcq_rows:
        name = "mcq/items.jsonl"
        if not check_fields(name, lineno, obj, {"id": str, "question": str, "answer": str,
                                                "distractors": dict, "source_ids": list}):
            continue
        check_sources(name, lineno, obj)
        d = obj["distractors"]
        near, wrong = d.get("near_miss"), d.get("wrong")
        if not is_text(near):
            err(f"{name}:{lineno}: distractors.near_miss must be a non-empty string")
            continue
        if not isinstance(wrong, list) or len(wrong) < 2 or not all(is_text(w) for w in wrong):
            err(f"{name}:{lineno}: distractors.wrong must be a list of at least 2 strings")
            continue
        options = [obj["answer"], near] + wrong
        normalised = [" ".join(tokens(o)) for o in options]
        if len(set(normalised)) != len(normalised):
            err(f"{name}:{lineno}: answer and distractors must all be distinct")
        for option in options[1:]:
            similarity = jaccard(option, obj["answer"])
            if similarity >= PARAPHRASE_JACCARD:
                err(f"{name}:{lineno}: distractor {option!r} is a near-paraphrase of the answer "
                    f"(token Jaccard {similarity:.2f})")
        num = obj["id"].split("-")[-1]
        mcq_nums.add(num)
        qa = qa_by_num.get(num)
        if qa is None:
            err(f"{name}:{lineno}: no QA item qa-{num} for {obj['id']}")
        else:
            if qa["question"] != obj["question"]:
                err(f"{name}:{lineno}: question differs from qa-{num}")
            if sorted(qa["source_ids"]) != sorted(obj["source_ids"]):
                err(f"{name}:{lineno}: source_ids differ from qa-{num}")
    missing = sorted(set(qa_by_num) - mcq_nums)
    if missing:
        err(f"mcq/items.jsonl: missing MCQ items for QA numbers {missing[:10]}")
    check_ids("mcq/items.jsonl", mcq_rows, "id", "mcq")
    counts["mcq"] = len(mcq_rows)

    # Summarization
    summ_rows = read_jsonl(root / "benchmarks" / "summarization" / "items.jsonl")
    for lineno, obj in summ_rows:
        check_fields("summarization/items.jsonl", lineno, obj,
                     {"id": str, "document": str, "reference_summary": str})
        if is_text(obj.get("document")) and is_text(obj.get("reference_summary")) \
                and len(obj["reference_summary"]) >= len(obj["document"]):
            err(f"summarization/items.jsonl:{lineno}: summary is not shorter than the document")
    check_ids("summarization/items.jsonl", summ_rows, "id", "summ")
    counts["summarization"] = len(summ_rows)

    # Judge calibration
    judge_rows = read_jsonl(root / "benchmarks" / "judge-calibration" / "items.jsonl")
    verdicts = Counter()
    for lineno, obj in judge_rows:
        name = "judge-calibration/items.jsonl"
        if not check_fields(name, lineno, obj, {"id": str, "question": str, "reference_answer": str,
                                                "candidate_answer": str, "human_verdict": str,
                                                "annotator": str}):
            continue
        if obj["human_verdict"] not in ("correct", "incorrect"):
            err(f"{name}:{lineno}: human_verdict must be correct|incorrect")
        verdicts[obj["human_verdict"]] += 1
    check_ids("judge-calibration/items.jsonl", judge_rows, "id", "judge")
    counts["judge-calibration"] = len(judge_rows)

    # Minimum sizes
    for key, minimum in MINIMUMS.items():
        if counts.get(key, 0) < minimum:
            err(f"{key}: {counts.get(key, 0)} items, expected at least {minimum}")

    # Report
    print("website-builder example domain")
    print(f"  kb articles:              {counts['kb']}")
    print(f"  chats:                    {counts['chats']}")
    print(f"  qa items:                 {counts['qa']}")
    print(f"  mcq items:                {counts['mcq']}")
    print(f"  intent items:             {counts['intent']}")
    print(f"  sentiment items:          {counts['sentiment']}")
    print(f"  segmentation items:       {counts['segmentation']}")
    print(f"  summarization items:      {counts['summarization']}")
    print(f"  judge-calibration items:  {counts['judge-calibration']}")
    for name in ("intent", "sentiment", "segmentation"):
        dist = ", ".join(f"{k}={v}" for k, v in sorted(dists[name].items()))
        print(f"  {name} labels: {dist}")
    for field in ("intent", "sentiment", "segment"):
        dist = ", ".join(f"{k}={v}" for k, v in sorted(chat_dist[field].items()))
        print(f"  chat {field}: {dist}")
    total = sum(verdicts.values()) or 1
    print(f"  judge verdicts: correct={verdicts['correct']} ({100 * verdicts['correct'] / total:.1f}%), "
          f"incorrect={verdicts['incorrect']}")
    for w in warnings:
        print(f"WARNING: {w}")
    if errors:
        for e in errors[:50]:
            print(f"ERROR: {e}")
        if len(errors) > 50:
            print(f"... and {len(errors) - 50} more")
        print(f"FAILED with {len(errors)} error(s)")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
