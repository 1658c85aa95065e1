"""Evaluation by generation during training: a few benchmark-format items answered greedily,
scored by exact match and by whether the answer contains the reference.

The held-out loss says whether the model fits the domain's text; these scores say whether it
answers the questions the benchmarks ask, step by step, without a deployment. They are a cheap
early signal with deliberately simple scoring; ``dapt-eval`` on the exported model (judge,
ROUGE-L, MCQ) stays the measurement of record.

Every rank decodes its own share of the items. Under FSDP2 every forward is a collective, so
when sharded each item costs exactly ``max_new_tokens`` forwards on every rank (no early stop
at EOS) and a rank without an item left decodes a stand-in that is not counted.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dapt_trainer.config import GenerationEvalConfig, StageConfig
from dapt_trainer.data.readers import Quarantined
from dapt_trainer.model import Dist
from dapt_trainer.storage import exists, read_bytes

QA_PROMPT = "{question}"
MCQ_PROMPT = (
    "Choose the correct answer. Reply with the letter only.\n\n"
    "Question: {question}\n{choices}\nAnswer:"
)
"""dapt-eval's ``mcq-letter`` prompt (``dapt_eval.prompts``): the same question it asks."""
CHOICE_LETTERS = "ABCD"
_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*"
"""Python's ``str.isspace()`` set, spelled out (dapt-eval's pattern does the same)."""
MCQ_LETTER = re.compile(
    r"(?:answer" + _SPACE + r"[:\uff1a]" + _SPACE + r")?\(?([A-D])\)?[.):]?",
    re.IGNORECASE,
)
"""dapt-eval's strict letter answer (``mcq_letter_pattern`` of its ``scoring_constants.json``,
which the trainer's image does not ship; a test checks they are the same pattern)."""


@dataclass(frozen=True)
class GenerationItem:
    prompt_ids: list[int]
    reference: str
    letter: str | None = None
    """mcq: the letter the answer is shown under (``reference`` is the answer's text)."""


@dataclass(frozen=True)
class GenerationTask:
    config: GenerationEvalConfig
    items: list[GenerationItem]
    quarantined: list[Quarantined]


class GenerationEvalError(ValueError):
    """A generation task has no usable item (exit 2): the message names the file and why."""


def load_task(config: GenerationEvalConfig, tokenizer: Any) -> GenerationTask:
    """The first ``max_items`` valid items of the task's JSONL, prompts tokenised; a line that
    is not a JSON object with the template's fields and the reference (non-empty strings) is
    quarantined with its line number."""
    mcq = config.format == "mcq"
    template = config.prompt or (MCQ_PROMPT if mcq else QA_PROMPT)
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    needed = [f for f in fields if f != "choices"] + (
        ["id", "question", "answer"] if mcq else [config.reference_field]
    )
    items: list[GenerationItem] = []
    quarantined: list[Quarantined] = []
    for number, raw in enumerate(read_bytes(config.path).splitlines(), start=1):
        if not raw.strip() or len(items) == config.max_items:
            continue
        reason, row = _row_problem(raw, needed)
        letter = None
        if not reason and mcq:
            reason, row, letter = _mcq_fields(row, config.shuffle_seed)
        if reason:
            quarantined.append(Quarantined(config.name, config.path, number, reason))
            continue
        prompt = template.format_map(row)
        reference = row["answer" if mcq else config.reference_field]
        items.append(GenerationItem(_prompt_ids(prompt, tokenizer, config), reference, letter))
    if not items:
        reasons = sorted({q.reason for q in quarantined})[:3]
        raise GenerationEvalError(
            f"eval_generation {config.name!r}: {config.path} has no usable item"
            + (f" ({len(quarantined)} quarantined: {'; '.join(reasons)})" if quarantined else "")
        )
    return GenerationTask(config, items, quarantined)


def generation_eval_problems(key: str, stage: StageConfig) -> list[str]:
    """Every task's file is there (``dapt-train --check`` and before training)."""
    problems = []
    for j, task in enumerate(stage.eval_generation):
        try:
            found = exists(task.path)
        except Exception as err:  # e.g. no such bucket, access denied
            problems.append(f"{key}.{j}.path = {task.path!r}: cannot be read: {err}")
            continue
        if not found:
            problems.append(f"{key}.{j}.path = {task.path!r}: the items file does not exist")
    return problems


def _row_problem(raw: bytes, needed: list[str]) -> tuple[str, dict[str, Any]]:
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        return f"invalid UTF-8 at byte {err.start} of the line", {}
    except json.JSONDecodeError as err:
        return f"invalid JSON: {err.msg}", {}
    if not isinstance(row, dict):
        return f"not a JSON object but {type(row).__name__}", {}
    bad = [f for f in needed if not isinstance(row.get(f), str) or not row[f].strip()]
    if bad:
        return f"missing or empty text field(s) {bad}", {}
    return "", row


def _mcq_fields(row: dict[str, Any], seed: int) -> tuple[str, dict[str, Any], str | None]:
    """An mcq row with ``choices`` rendered as dapt-eval shows them, and the answer's letter:
    the canonical order (answer, near miss, the two wrong) sorted by
    sha256("{seed}:{id}:{index}"), as ``dapt_eval.mcq.shuffle_choices``."""
    distractors = row.get("distractors")
    wrong = distractors.get("wrong") if isinstance(distractors, dict) else None
    near = distractors.get("near_miss") if isinstance(distractors, dict) else None
    canonical = [row["answer"], near, *(wrong if isinstance(wrong, list) else [])]
    if len(canonical) != 4 or not all(isinstance(c, str) and c.strip() for c in canonical):
        return "distractors is not {near_miss, wrong: [two]} of non-empty text", {}, None
    order = sorted(
        range(4), key=lambda i: hashlib.sha256(f"{seed}:{row['id']}:{i}".encode()).hexdigest()
    )
    choices = "\n".join(f"{CHOICE_LETTERS[k]}. {canonical[i]}" for k, i in enumerate(order))
    return "", {**row, "choices": choices}, CHOICE_LETTERS[order.index(0)]


def parse_letter(text: str) -> str | None:
    """The answer letter if the reply is exactly a letter (``B``, ``(b)``, ``Answer: C.``)."""
    match = MCQ_LETTER.fullmatch(text.strip())
    return match.group(1).upper() if match else None


def score_choice(answer: str, letter: str, reference: str) -> bool:
    """An mcq reply is right when it is the answer's letter (dapt-eval's strict parse) or the
    answer's text (normalised as ``score``)."""
    return parse_letter(answer) == letter or normalise(answer) == normalise(reference)


def _prompt_ids(prompt: str, tokenizer: Any, config: GenerationEvalConfig) -> list[int]:
    if not config.chat:
        return [int(t) for t in tokenizer(prompt, add_special_tokens=True)["input_ids"]]
    if not getattr(tokenizer, "chat_template", None):
        raise GenerationEvalError(
            f"eval_generation {config.name!r}: chat = true but the tokenizer has no chat "
            "template (set data.chat_template, or chat: false for raw prompts)"
        )
    out = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=True, add_generation_prompt=True
    )
    if isinstance(out, dict) or hasattr(out, "input_ids"):
        out = out["input_ids"]
    return [int(t) for t in out]


def stop_tokens(model: nn.Module, tokenizer: Any) -> set[int]:
    """The tokenizer's EOS and the model's generation EOS ids (Llama-3 chat models end a turn
    with ``<|eot_id|>``, listed there)."""
    get_base = getattr(model, "get_base_model", None)
    hf = get_base() if callable(get_base) else model
    configured = getattr(getattr(hf, "generation_config", None), "eos_token_id", None)
    listed = configured if isinstance(configured, list) else [configured]
    return {int(t) for t in [tokenizer.eos_token_id, *listed] if t is not None}


def normalise(text: str) -> str:
    """Lowercase, whitespace collapsed, surrounding punctuation and quotes dropped."""
    return " ".join(text.lower().split()).strip(TRIMMED)


def score(answer: str, reference: str) -> tuple[bool, bool]:
    """(exact match, contains) of an answer against its reference, both normalised."""
    got, want = normalise(answer), normalise(reference)
    return got == want, bool(want) and want in got


@torch.no_grad()
def greedy_answer(
    model: nn.Module,
    prompt_ids: list[int],
    max_new_tokens: int,
    stop_ids: set[int],
    device: torch.device,
    early_stop: bool,
) -> list[int]:
    """Greedy continuation of one prompt with the KV cache, up to the first stop token."""
    ids = torch.tensor([prompt_ids], device=device)
    out: list[int] = []
    past = None
    for _ in range(max_new_tokens):
        result = model(input_ids=ids, past_key_values=past, use_cache=True)
        past = result.past_key_values
        token = int(result.logits[0, -1].argmax())
        out.append(token)
        if early_stop and token in stop_ids:
            break
        ids = torch.tensor([[token]], device=device)
    return out


def evaluate_generation(
    model: nn.Module,
    tokenizer: Any,
    tasks: list[GenerationTask],
    dist: Dist,
    device: torch.device,
    autocast: bool,
) -> dict[str, float]:
    """``generation/<task>/exact_match`` and ``.../contains`` (qa), ``.../accuracy`` (mcq):
    fractions of the items, the same on every rank."""
    stop_ids = stop_tokens(model, tokenizer)
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    for task in tasks:
        counts = torch.zeros(3, device=device)  # exact, contains, items
        for i in range(math.ceil(len(task.items) / dist.world_size)):
            index = i * dist.world_size + dist.rank
            item = task.items[index] if index < len(task.items) else task.items[0]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                tokens = greedy_answer(
                    model,
                    item.prompt_ids,
                    task.config.max_new_tokens,
                    stop_ids,
                    device,
                    early_stop=not dist.sharded,
                )
            if index >= len(task.items):
                continue
            ends = [k for k, t in enumerate(tokens) if t in stop_ids]
            answer = tokenizer.decode(
                tokens[: ends[0]] if ends else tokens, skip_special_tokens=True
            )
            if item.letter is None:
                exact, contains = score(answer, item.reference)
            else:
                exact, contains = score_choice(answer, item.letter, item.reference), False
            counts += torch.tensor([float(exact), float(contains), 1.0], device=device)
        if dist.sharded:
            torch.distributed.all_reduce(counts)
        n = float(counts[2].clamp(min=1))
        if task.config.format == "mcq":
            out[f"generation/{task.config.name}/accuracy"] = float(counts[0]) / n
            continue
        out[f"generation/{task.config.name}/exact_match"] = float(counts[0]) / n
        out[f"generation/{task.config.name}/contains"] = float(counts[1]) / n
    model.train(was_training)
    return out


TRIMMED = " .,;:!?\"'`"
"""Characters dropped from both ends of a normalised answer."""
