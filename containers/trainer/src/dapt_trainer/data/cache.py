"""Sources tokenised once into memory-mapped arrays on local disk, shared by the ranks of a node.

Why: a DAPT run mixes billions of public tokens with the domain's. Holding rows as Python objects
and tokenising inside the training loop on every rank neither fits in memory nor keeps a GPU fed.
Each source becomes one folder under ``<DAPT_CACHE>/tokens/<key>/``::

    tokens.bin    uint32, the token ids of every document back to back
    learn.bin     uint8 per token, 1 where the token is learned (instruction sources only;
                  completion documents learn every token)
    offsets.npy   int64 [documents + 1], where each document starts in tokens.bin
    meta.json     source name, the files and their fingerprints, counts, quarantined rows

The key hashes everything the tokens depend on: the source's kind and text field, each file's
path and fingerprint (size and mtime, or S3 ETag and version), and the tokenizer (its serialised
model, special tokens, chat template and the ids of a probe string). A changed file or tokenizer
gets a new key; an unchanged source is not tokenised again, so a resumed run starts training in
seconds. The folder is written under a temporary name and renamed into place: a crash never
leaves a partial cache that looks complete. Plain numpy files: nothing else is needed to read
them, and ``np.memmap`` pages in only the documents a step uses.

Held-out examples are the first ``heldout_examples`` documents; the split is applied when the
cache is opened, so changing it does not re-tokenise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dapt_trainer.config import SourceConfig
from dapt_trainer.data.readers import Quarantined, iter_source, source_files
from dapt_trainer.data.tokenize import (
    IGNORE_INDEX,
    TemplateError,
    encode_completions,
    encode_instruction,
)
from dapt_trainer.storage import (
    download_dir,
    exists,
    fingerprint,
    is_s3,
    join,
    upload_dir,
    write_bytes,
)

Array = npt.NDArray[Any]


@dataclass
class TokenizedSource:
    """One source's documents, memory-mapped. Document ``i`` is tokens[offsets[i]:offsets[i+1]]."""

    config: SourceConfig
    tokens: Array
    learn: Array | None
    offsets: Array
    quarantined: list[Quarantined]
    path: Path
    files: list[list[str]]
    """``[file, fingerprint]`` of every file the documents were read from (the key's inputs)."""

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_heldout(self) -> int:
        return min(self.config.heldout_examples, self.n_docs)

    @property
    def n_train(self) -> int:
        return self.n_docs - self.n_heldout

    @property
    def splittable(self) -> bool:
        """Completion text may be cut across rows; an instruction example is kept whole."""
        return self.config.kind == "completion"

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def length(self, doc: int) -> int:
        return int(self.offsets[doc + 1] - self.offsets[doc])

    def usable(self, doc: int, seq_len: int) -> int:
        """Tokens of ``doc`` that are trained on: all of a completion document (it is cut into
        rows), the first ``seq_len`` of an instruction example (truncated)."""
        n = self.length(doc)
        return n if self.splittable else min(n, seq_len)

    def ids(self, doc: int, start: int, end: int) -> Array:
        base = int(self.offsets[doc])
        return self.tokens[base + start : base + end]

    def targets(self, doc: int, start: int, end: int, doc_end: int) -> Array:
        """Next-token targets of positions [start, end) of ``doc`` used up to ``doc_end``:
        position p predicts token p + 1 when that token lies before ``doc_end`` and is learned,
        else IGNORE_INDEX. Targets never reach into another document."""
        out = np.full(end - start, IGNORE_INDEX, dtype=np.int64)
        hi = min(end, doc_end - 1)
        if hi > start:
            base = int(self.offsets[doc])
            nxt = self.tokens[base + start + 1 : base + hi + 1].astype(np.int64)
            if self.learned is not None:
                learned = self.learned[base + start + 1 : base + hi + 1]
                nxt = np.where(learned != 0, nxt, IGNORE_INDEX)
            out[: hi - start] = nxt
        return out

    def has_targets(self, doc: int, doc_end: int) -> bool:
        if self.learned is None:
            return doc_end > 1
        base = int(self.offsets[doc])
        return bool(self.learned[base + 1 : base + doc_end].any())

    @property
    def learned(self) -> Array | None:
        """Which tokens are learned (None: all of them; an instruction source with
        ``train_on_prompt`` learns its prompts too, the cache still holds the mask)."""
        return None if self.config.train_on_prompt else self.learn


class NoDataError(ValueError):
    """A source has no document to train on; the message names it and says why (its files are
    empty, every row was quarantined and for which reasons, or all are held out)."""


def no_data_problems(sources: list[TokenizedSource]) -> list[str]:
    """Why each source without a training document has none (empty for usable sources)."""
    problems = []
    for source in sources:
        if source.n_train > 0:
            continue
        name, quarantined = source.config.name, source.quarantined
        if source.n_docs:
            why = (
                f"heldout_examples = {source.config.heldout_examples} holds out all of its "
                f"{source.n_docs} documents"
            )
        elif not quarantined:
            why = f"its files hold no rows ({[f for f, _ in source.files]})"
        else:
            reasons = Counter(q.reason for q in quarantined).most_common(NO_DATA_REASONS)
            shown = "; ".join(f"{n} x {reason}" for reason, n in reasons)
            first = quarantined[0]
            why = (
                f"all {len(quarantined)} of its rows were quarantined ({shown}; first: "
                f"{first.file}, line {first.line})"
            )
        problems.append(f"source {name!r} has nothing to train on: {why}")
    return problems


def cache_key(source: SourceConfig, tokenizer: Any) -> str:
    return _key_of(_key_inputs(source, tokenizer_fingerprint(tokenizer)))


def _key_of(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:24]


def _key_inputs(source: SourceConfig, tokenizer_fp: str) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "kind": source.kind,
        "text_field": source.text_field if source.kind == "completion" else None,
        "files": [[f, fingerprint(f)] for f in source_files(source)],
        "tokenizer": tokenizer_fp,
    }


def tokenizer_fingerprint(tokenizer: Any) -> str:
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:  # a slow (Python) tokenizer: its vocabulary stands in for the model
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    probe = tokenizer(TOKENIZER_PROBE, add_special_tokens=True)["input_ids"]
    specials = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id]
    template = getattr(tokenizer, "chat_template", None)
    h.update(json.dumps([type(tokenizer).__name__, specials, template, list(probe)]).encode())
    return h.hexdigest()


def tokenized_sources(
    sources: list[SourceConfig],
    tokenizer: Any,
    root: Path,
    local_rank: int = 0,
    local_world_size: int = 1,
    shared: str | None = None,
    publish: bool = False,
) -> list[TokenizedSource]:
    """Every source, tokenised into the node-local cache ``root`` and opened.

    The processes of a node share the work: local rank r prepares sources r, r + n, ... (n
    processes), then every process waits for the others' folders. Waiting polls the file system
    rather than a collective, so a long first tokenisation cannot trip a collective's timeout;
    if the process building a folder dies, torchrun stops the whole job. With ``shared`` (a
    local folder or S3 prefix), a source found there is downloaded instead of tokenised, and
    with ``publish`` what is tokenised here is uploaded there for the next node or job.
    """
    tokenizer_fp = tokenizer_fingerprint(tokenizer)  # once: it serialises the whole vocabulary
    folders = []
    for i, source in enumerate(sources):
        if i % local_world_size == local_rank:
            folders.append(prepare_source(source, tokenizer, root, shared, publish, tokenizer_fp))
        else:
            folders.append(root / f"{source.name}-{_key_of(_key_inputs(source, tokenizer_fp))}")
    next_report = time.monotonic() + 60
    while not all((f / "meta.json").exists() for f in folders):
        time.sleep(POLL_SECONDS)
        if time.monotonic() >= next_report:
            next_report += 60
            missing = [f.name for f in folders if not (f / "meta.json").exists()]
            print(json.dumps({"event": "waiting_for_token_cache", "folders": missing}), flush=True)
    return [open_source(s, f) for s, f in zip(sources, folders, strict=True)]


def prepare_source(
    source: SourceConfig,
    tokenizer: Any,
    root: Path,
    shared: str | None = None,
    publish: bool = False,
    tokenizer_fp: str | None = None,
) -> Path:
    """The local cache folder of ``source``: already here, else downloaded from ``shared``,
    else tokenised now (and uploaded to ``shared`` when ``publish``)."""
    inputs = _key_inputs(source, tokenizer_fp or tokenizer_fingerprint(tokenizer))
    key = _key_of(inputs)
    name = f"{source.name}-{key}"
    final = root / name
    if (final / "meta.json").exists():
        return final
    start = time.monotonic()
    partial = root / f".{name}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    remote = join(shared, name) if shared else None
    how, problems = "tokenised", []
    if remote is not None:
        try:
            if exists(join(remote, "meta.json")):
                _fetch(remote, partial)
                how = "downloaded"
        except Exception as err:  # the shared cache is an optimisation: tokenise instead
            shutil.rmtree(partial, ignore_errors=True)
            problems.append(f"download from {remote} failed: {err}")
    if how == "tokenised":
        partial.mkdir(parents=True)
        _build(source, tokenizer, partial, key, inputs["files"])
        if remote is not None and publish:
            try:
                # meta.json last: its presence is what marks a shared entry complete.
                upload_dir(partial, remote, skip=("meta.json",))
                write_bytes(join(remote, "meta.json"), (partial / "meta.json").read_bytes())
                how = "tokenised and published"
            except Exception as err:  # e.g. no write access to a configured token_cache
                problems.append(f"publish to {remote} failed: {err}")
    try:
        os.replace(partial, final)
    except OSError:  # another process finished the same key first: theirs is as good
        shutil.rmtree(partial, ignore_errors=True)
    meta = json.loads((final / "meta.json").read_text(encoding="utf-8"))
    event = {
        "event": "token_cache",
        "source": source.name,
        "key": key,
        "how": how,
        "documents": meta["documents"],
        "tokens": meta["tokens"],
        "seconds": round(time.monotonic() - start, 1),
        **({"problems": problems} if problems else {}),
    }
    print(json.dumps(event), flush=True)
    return final


def _fetch(remote: str, partial: Path) -> None:
    if is_s3(remote):
        download_dir(remote, partial)
    else:
        shutil.copytree(remote, partial)
    if not (partial / "meta.json").exists():
        raise FileNotFoundError(f"shared token cache {remote} lost its meta.json while copying")


def open_source(source: SourceConfig, folder: Path) -> TokenizedSource:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    n_tokens = int(meta["tokens"])
    # np.memmap refuses an empty file; a source with no valid document has none to map.
    tokens = (
        np.memmap(folder / "tokens.bin", dtype=np.uint32, mode="r", shape=(n_tokens,))
        if n_tokens
        else np.zeros(0, dtype=np.uint32)
    )
    learn = None
    if source.kind == "instruction":
        learn = (
            np.memmap(folder / "learn.bin", dtype=np.uint8, mode="r", shape=(n_tokens,))
            if n_tokens
            else np.zeros(0, dtype=np.uint8)
        )
    return TokenizedSource(
        config=source,
        tokens=tokens,
        learn=learn,
        offsets=np.load(folder / "offsets.npy", mmap_mode="r"),
        quarantined=[Quarantined(**q) for q in meta["quarantined"]],
        path=folder,
        files=meta["files"],
    )


def _build(
    source: SourceConfig, tokenizer: Any, folder: Path, key: str, files: list[list[str]]
) -> None:
    quarantined: list[Quarantined] = []
    offsets = [0]
    with (folder / "tokens.bin").open("wb") as tokens, (folder / "learn.bin").open("wb") as learn:

        def write(ids: list[int], learned: list[bool] | None) -> None:
            if max(ids, default=0) > np.iinfo(np.uint32).max:
                raise ValueError(f"token id {max(ids)} does not fit the cache's uint32")
            tokens.write(np.asarray(ids, dtype=np.uint32).tobytes())
            if learned is not None:
                learn.write(np.asarray(learned, dtype=np.uint8).tobytes())
            offsets.append(offsets[-1] + len(ids))

        rows = iter_source(source, quarantined)
        if source.kind == "completion":
            batch: list[str] = []
            for _, _, row in rows:
                batch.append(row[source.text_field])
                if len(batch) == BATCH_ROWS:
                    for ids in encode_completions(batch, tokenizer):
                        write(ids, None)
                    batch = []
            for ids in encode_completions(batch, tokenizer) if batch else []:
                write(ids, None)
        else:
            for file, line, row in rows:
                try:
                    ids, learned = encode_instruction(row, tokenizer)
                except TemplateError as err:
                    quarantined.append(Quarantined(source.name, file, line, str(err)))
                    continue
                write(ids, learned)
    np.save(folder / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    meta = {
        "source": source.name,
        "key": key,
        "files": files,
        "documents": len(offsets) - 1,
        "tokens": offsets[-1],
        "quarantined": [q.as_dict() for q in quarantined],
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


CACHE_FORMAT = 1
"""Bump when the layout or the tokenisation rules change: old folders are then never reused."""
BATCH_ROWS = 1024
POLL_SECONDS = 0.5
NO_DATA_REASONS = 3
"""Most common quarantine reasons named when a source has no usable row."""
TOKENIZER_PROBE = "Tokenizer probe: <b>Ünïcödé</b> 12345 \t\n  spaces and tabs."
