"""Generated instruction data as the trainer reads it, and a resumable teacher.

`InstructionRow` is one line of `synthesize/records.jsonl`, `instructions/records.jsonl` and
`final/<output>.jsonl`: the trainer's instruction reader takes `prompt` and `response` and
ignores the other fields, which keep the lineage (`source_id`) and how the row was made.

`CachedTeacher` wraps the teacher so that every finished generation is stored (keyed by the
teacher's identity, the prompt and the decoding settings); a retried step replays stored
outputs instead of calling the teacher again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence

from dapt_eval.providers import DecodingParams, Provider
from dapt_eval.providers.base import Generation, Oracle, Usage
from pydantic import BaseModel, ConfigDict, Field

from dapt_data.instructions import InstructionExample
from dapt_data.records import Kind, Origin
from dapt_data.storage import append_bytes, read_appended
from dapt_data.synthetic import SyntheticExample, SyntheticTask


class InstructionRow(BaseModel):
    """One prompt/response training example with its lineage."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="the output source name")
    source_id: str = Field(min_length=1, description="the record or item it was made from")
    kind: Kind = Kind.INSTRUCTION
    origin: Origin
    task: str
    prompt: str = Field(min_length=1)
    response: str = Field(min_length=1)
    meta: dict[str, str] = Field(default_factory=dict)

    def text(self) -> str:
        """What the tokens are counted on."""
        return f"{self.prompt}\n{self.response}"


def synthetic_row(example: SyntheticExample, source: str, origin: Origin) -> InstructionRow:
    """A kept synthetic example as a training row (reading comprehension shows the passage)."""
    prompt = example.question
    if example.task == SyntheticTask.READING_COMPREHENSION and example.passage:
        prompt = READING_TEMPLATE.format(passage=example.passage, question=example.question)
    generator = example.generator
    return InstructionRow(
        id=example.id,
        source=source,
        source_id=example.source_id,
        origin=origin,
        task=example.task.value,
        prompt=prompt,
        response=example.answer,
        meta={
            "passage_index": str(example.passage_index),
            "grounding": str(example.grounding),
            "teacher": f"{generator.provider}:{generator.model_id}@{generator.revision}",
            "prompt_id": f"{generator.prompt_id}@{generator.prompt_version}",
        },
    )


def instruction_row(example: InstructionExample, source: str, origin: Origin) -> InstructionRow:
    """A paraphrased labelled item as a training row."""
    return InstructionRow(
        id=example.id,
        source=source,
        source_id=example.source_id,
        origin=origin,
        task=example.task.value,
        prompt=example.prompt,
        response=example.response,
        meta={"prompt_id": f"{example.prompt_id}@{example.prompt_version}"},
    )


class CachedTeacher(Provider):
    """Replays stored generations; stores new ones in `uri` every `flush_every` calls and on
    `flush()`. Only successful generations are stored, so failures are retried next time.

    The cache is an append log (`storage.append_bytes`): a flush writes only the generations
    made since the last one, so a step of N calls writes O(N) bytes, not O(N^2) as rewriting
    the whole file every `flush_every` calls did. A key found twice (two runs that both asked)
    keeps the last text; they are equal for a deterministic teacher."""

    def __init__(self, inner: Provider, uri: str, flush_every: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.model_id = inner.model_id
        self.revision = inner.revision
        self.uri = uri
        self.flush_every = flush_every or DEFAULT_FLUSH_EVERY
        self.cache: dict[str, str] = {}
        self.hits = 0
        self.calls = 0
        self._pending: list[str] = []
        self._lock = threading.Lock()  # synthesis calls the teacher from several threads
        for line in read_appended(uri).decode("utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                self.cache[row["key"]] = row["text"]

    def identity(self) -> dict[str, str]:
        """The wrapped teacher's identity (examples record who wrote them)."""
        return self.inner.identity()

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        """The stored output for this prompt, or the teacher's (then stored)."""
        key = _cache_key(self.inner.identity(), prompt, params)
        with self._lock:
            stored = self.cache.get(key)
            if stored is not None:
                self.hits += 1
            else:
                self.calls += 1
        if stored is not None:
            identity = self.inner.identity()
            return Generation(
                stored, Usage(), 0.0, identity["provider"], self.model_id, self.revision
            )
        generation = self.inner.generate(prompt, params, oracle)  # outside the lock: in parallel
        line = json.dumps({"key": key, "text": generation.text}, ensure_ascii=False)
        with self._lock:
            self.cache[key] = generation.text
            self._pending.append(line)
            if len(self._pending) >= self.flush_every:
                self._flush_pending()
        return generation

    def loglik(
        self, prompt: str, continuations: Sequence[str], oracle: Oracle | None = None
    ) -> list[float]:
        """Not cached (synthesis only generates)."""
        return self.inner.loglik(prompt, continuations, oracle)

    def flush(self) -> None:
        """Append the generations made since the last flush (nothing when there are none)."""
        with self._lock:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        append_bytes(self.uri, ("\n".join(self._pending) + "\n").encode("utf-8"))
        self._pending = []


def _cache_key(identity: dict[str, str], prompt: str, params: DecodingParams) -> str:
    text = json.dumps([identity, prompt, params.cache_dict()], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


READING_TEMPLATE = "Read the passage and answer the question.\n\n{passage}\n\nQuestion: {question}"
DEFAULT_FLUSH_EVERY = 20
