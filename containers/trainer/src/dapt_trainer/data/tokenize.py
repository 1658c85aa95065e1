"""Rows -> token ids (and, for instruction rows, which tokens are learned), with the model's own
tokenizer. The token cache stores them; targets are shifted per document when rows are built
(``TokenizedSource.targets``), so the last token of one document never predicts the next one.
"""

from __future__ import annotations

from typing import Any

from dapt_trainer.config import BUNDLED_CHAT_TEMPLATES, CHAT_TEMPLATES


class TemplateError(ValueError):
    """The chat template cannot isolate response tokens for this example."""


def chat_template_text(spec: str) -> str:
    """The Jinja of ``data.chat_template``: a bundled template's file, or the text itself."""
    if spec in BUNDLED_CHAT_TEMPLATES:
        return (CHAT_TEMPLATES / f"{spec}.jinja").read_text(encoding="utf-8").rstrip("\n")
    return spec


def use_chat_template(tokenizer: Any, spec: str | None) -> Any:
    """``tokenizer`` with the stage's chat template (unchanged when ``spec`` is None). The
    template is part of the tokenizer's fingerprint (token cache key) and is saved with the
    exported model, so serving renders prompts the way training did."""
    if spec is not None:
        tokenizer.chat_template = chat_template_text(spec)
    return tokenizer


def encode_completions(texts: list[str], tokenizer: Any) -> list[list[int]]:
    """Token ids of completion documents, ending with EOS; one batched tokenizer call (the Rust
    tokenizer spreads a batch over its threads)."""
    eos = tokenizer.eos_token_id
    out = []
    for encoded in tokenizer(texts, add_special_tokens=True)["input_ids"]:
        ids = list(encoded)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        out.append(ids)
    return out


def encode_instruction(row: dict[str, Any], tokenizer: Any) -> tuple[list[int], list[bool]]:
    """Chat-template token ids of an instruction row, and which of them are learned (responses).

    Raises TemplateError when the template cannot isolate the responses."""
    messages = row.get("messages") or [
        {"role": "user", "content": row["prompt"]},
        {"role": "assistant", "content": row["response"]},
    ]
    return _chat(messages, tokenizer)


def _chat(messages: list[dict[str, str]], tokenizer: Any) -> tuple[list[int], list[bool]]:
    """Render with the chat template; mark the tokens of each assistant turn as learnable.

    Each assistant turn's tokens are found by rendering the conversation up to that turn with
    the generation prompt, and up to its end: the difference is the response (including the
    end-of-turn tokens the model must learn to emit). Templates where a rendered prefix is not
    a prefix of the full rendering are rejected rather than guessed at.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("the tokenizer has no chat_template")
    full = _render(tokenizer, messages, generation_prompt=False)
    learn = [False] * len(full)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = _render(tokenizer, messages[:i], generation_prompt=True) if i else []
        end = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if full[: len(start)] != start or full[: len(end)] != end or len(end) <= len(start):
            raise TemplateError(f"chat template is not prefix-stable at message {i}")
        for j in range(len(start), len(end)):
            learn[j] = True
    return full, learn


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    from jinja2 import TemplateError as JinjaError  # noqa: PLC0415 - transformers' template engine

    try:
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=generation_prompt
        )
    except JinjaError as err:  # e.g. raise_exception('Conversation roles must alternate ...')
        raise TemplateError(f"chat template raised: {err}") from None
    if isinstance(out, dict) or hasattr(out, "input_ids"):
        out = out["input_ids"]
    return [int(t) for t in out]


IGNORE_INDEX = -100
