"""A Hugging Face causal LM on one device: batched log-likelihoods and greedy generation.

Only local files are read: `HF_HUB_OFFLINE=1` is set before transformers is imported and
every `from_pretrained` passes `local_files_only=True`.
"""

from __future__ import annotations

import os

# huggingface_hub reads these when it is first imported: set them before transformers loads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

Normalize = Literal["none", "tokens"]


@dataclass(frozen=True)
class Completion:
    """One greedy completion with its token counts."""

    text: str
    input_tokens: int
    output_tokens: int


def resolve_device(requested: str) -> str:
    """`auto` -> cuda when a GPU is visible, else cpu."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA device is visible")
    return requested


class HFEngine:
    """A model and its tokenizer; every method works in batches of `batch_size` sequences."""

    def __init__(self, model: Any, tokenizer: Any, device: str, batch_size: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ValueError("the tokenizer has neither a pad nor an eos token to pad with")
            tokenizer.pad_token = tokenizer.eos_token
        # Decoder-only generation must pad on the left so every row's last token is real.
        tokenizer.padding_side = "left"

    @classmethod
    def load(cls, model_dir: Path, device: str = "auto", batch_size: int = 8) -> HFEngine:
        """Load from a local directory: bf16 on GPU (half the memory of fp32), fp32 on CPU."""
        resolved = resolve_device(device)
        dtype = torch.bfloat16 if resolved == "cuda" else torch.float32
        # transformers' Auto* loaders are partly untyped: use them, and what they return, as Any.
        tokenizers: Any = AutoTokenizer
        models: Any = AutoModelForCausalLM
        tokenizer = tokenizers.from_pretrained(model_dir, local_files_only=True)
        model = models.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
        model.to(resolved).eval()
        return cls(model, tokenizer, resolved, batch_size)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of the context and of the continuation as the model would see them.

        The pair is tokenized whole and the context's tokens are cut off, so a merge across the
        boundary cannot happen unnoticed; if the whole does not start with the context's
        tokens, the continuation is tokenized on its own.
        """
        context_ids = list(self.tokenizer(context).input_ids)
        whole = list(self.tokenizer(context + continuation).input_ids)
        if whole[: len(context_ids)] == context_ids and len(whole) > len(context_ids):
            continuation_ids = whole[len(context_ids) :]
        else:
            continuation_ids = list(
                self.tokenizer(continuation, add_special_tokens=False).input_ids
            )
        if not context_ids or not continuation_ids:
            raise ValueError(
                f"cannot score: context {context[:40]!r} or continuation {continuation!r} "
                "tokenizes to nothing"
            )
        return context_ids, continuation_ids

    def loglik(
        self, requests: Sequence[tuple[str, str]], normalize: Normalize = "none"
    ) -> list[float]:
        """Sum of log p(continuation tokens | context) per (context, continuation) pair.

        `normalize="tokens"` divides by the continuation's token count (a per-token mean), for
        continuations of different lengths; MCQ letters are one token each, where it changes
        nothing. Requests are sorted by length so a batch pads little, and returned in order.
        When contexts repeat (the choices of one question), each context is run once and its
        key/value cache is shared by its continuations (`_shared_prefix_batch`).
        """
        pairs = [self.encode_pair(c, x) for c, x in requests]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (context, _) in enumerate(pairs):
            groups.setdefault(tuple(context), []).append(index)
        raw = (
            self._loglik_shared(pairs, groups)
            if len(groups) < len(pairs)
            else self._loglik_plain(pairs)
        )
        if normalize == "tokens":
            return [score / len(pairs[i][1]) for i, score in enumerate(raw)]
        return raw

    def _loglik_plain(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[float]:
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
        scores = [0.0] * len(pairs)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for index, score in zip(
                chunk, self._loglik_batch([pairs[i] for i in chunk]), strict=True
            ):
                scores[index] = score
        return scores

    def _loglik_shared(
        self,
        pairs: Sequence[tuple[list[int], list[int]]],
        groups: dict[tuple[int, ...], list[int]],
    ) -> list[float]:
        contexts = sorted(groups, key=len, reverse=True)
        scores = [0.0] * len(pairs)
        start = 0
        while start < len(contexts):
            chunk: list[tuple[int, ...]] = []
            rows = 0
            # Whole groups per batch, at most `batch_size` continuation rows (one group may be
            # larger on its own).
            while start < len(contexts) and (
                not chunk or rows + len(groups[contexts[start]]) <= self.batch_size
            ):
                chunk.append(contexts[start])
                rows += len(groups[contexts[start]])
                start += 1
            continuations = [[pairs[i][1] for i in groups[c]] for c in chunk]
            with torch.inference_mode():
                values = self._shared_prefix_batch([list(c) for c in chunk], continuations)
            for context, per_context in zip(chunk, values, strict=True):
                for index, score in zip(groups[context], per_context, strict=True):
                    scores[index] = score
        return scores

    def _shared_prefix_batch(
        self, contexts: list[list[int]], continuations: list[list[list[int]]]
    ) -> list[list[float]]:
        """One forward over the contexts (left-padded, so each ends at the last position),
        then one over all continuations on the copied cache. Equal to scoring each pair whole
        (tested), at a fraction of the tokens when contexts are long and choices short."""
        pad = int(self.tokenizer.pad_token_id)
        width = max(len(c) for c in contexts)
        ids = torch.full((len(contexts), width), pad)
        mask = torch.zeros((len(contexts), width), dtype=torch.long)
        for row, context in enumerate(contexts):
            ids[row, width - len(context) :] = torch.tensor(context)
            mask[row, width - len(context) :] = 1
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(self.device),
            use_cache=True,
            logits_to_keep=1,
        )
        # The last context position predicts each continuation's first token.
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        owner = [row for row, conts in enumerate(continuations) for _ in conts]
        flat = [cont for conts in continuations for cont in conts]
        cache = out.past_key_values
        cache.reorder_cache(torch.tensor(owner, device=first.device))
        cont_width = max(len(c) for c in flat)
        cont_ids = torch.full((len(flat), cont_width), pad)
        cont_mask = torch.zeros((len(flat), cont_width), dtype=torch.long)
        for row, cont in enumerate(flat):
            # Right padding: causal attention never looks ahead, so pads change no real token.
            cont_ids[row, : len(cont)] = torch.tensor(cont)
            cont_mask[row, : len(cont)] = 1
        full_mask = torch.cat([mask[owner], cont_mask], dim=1)
        positions = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, width:]
        logits = self.model(
            input_ids=cont_ids.to(self.device),
            attention_mask=full_mask.to(self.device),
            position_ids=positions.to(self.device),
            past_key_values=cache,
            use_cache=True,
        ).logits
        sums: list[float] = []
        for row, cont in enumerate(flat):
            total = first[owner[row], cont[0]]
            if len(cont) > 1:
                logprobs = torch.log_softmax(logits[row, : len(cont) - 1].float(), dim=-1)
                targets = torch.tensor(cont[1:], device=logprobs.device)
                total = total + logprobs.gather(1, targets[:, None]).sum()
            sums.append(float(total))
        out_scores: list[list[float]] = []
        cursor = 0
        for conts in continuations:
            out_scores.append(sums[cursor : cursor + len(conts)])
            cursor += len(conts)
        return out_scores

    def _loglik_batch(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[float]:
        with torch.inference_mode():  # no autograd graph: less memory, faster
            return self._loglik_forward(pairs)

    def _loglik_forward(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[float]:
        sequences = [ctx + cont for ctx, cont in pairs]
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), int(self.tokenizer.pad_token_id))
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            # Right padding: causal attention never looks ahead, so pads change no real position.
            ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
        logits = self.model(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
        ).logits
        scores = []
        for row, (ctx, cont) in enumerate(pairs):
            # The token at position t is predicted by the logits at t - 1.
            positions = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1, device=logits.device)
            logprobs = torch.log_softmax(logits[row, positions].float(), dim=-1)
            targets = torch.tensor(cont, device=logits.device)
            scores.append(float(logprobs.gather(1, targets[:, None]).sum()))
        return scores

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()
    ) -> list[Completion]:
        """Greedy completions, batched; text is cut at the first stop string, if any."""
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self._generate_batch([prompts[i] for i in chunk], max_new_tokens)
            for index, completion in zip(chunk, batch, strict=True):
                results[index] = _cut(completion, stop)
        return [r for r in results if r is not None]

    def _generate_batch(self, prompts: Sequence[str], max_new_tokens: int) -> list[Completion]:
        with torch.inference_mode():
            return self._generate_forward(prompts, max_new_tokens)

    def _generate_forward(self, prompts: Sequence[str], max_new_tokens: int) -> list[Completion]:
        encoded = self.tokenizer(list(prompts), return_tensors="pt", padding=True).to(self.device)
        output = self.model.generate(
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],  # not token_type_ids: causal LMs reject it
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
        input_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        eos = self.tokenizer.eos_token_id
        completions = []
        for generated, n_input in zip(new_tokens, input_lengths, strict=True):
            tokens = generated[: generated.index(eos)] if eos in generated else generated
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            completions.append(Completion(text, int(n_input), len(tokens)))
        return completions


def _cut(completion: Completion, stop: Sequence[str]) -> Completion:
    cuts = [completion.text.find(s) for s in stop if s and s in completion.text]
    if not cuts:
        return completion
    return Completion(
        completion.text[: min(cuts)], completion.input_tokens, completion.output_tokens
    )
