"""Public general-English text that needs no download: the Python documentation's help topics.

Every CPython installation carries `pydoc_data.topics`, the text of the language reference's
sections that `help()` shows (about 465,000 characters, 79 topics in Python 3.11), under the
Python Software Foundation License (PSF-2.0, GPL-compatible, permits redistribution). It is
technical English prose written by people, not generated, which is what the public share of a
mix is for here: a stand-in for general text, to mix with the domain and to measure on a
held-out slice whether general ability survives training. A real deployment mixes a large
public corpus (e.g. a web-text sample) instead; this is the one that runs offline everywhere.

`export` writes it as JSONL rows (`text`, `topic`), one per topic, split into documents of at
most `max_words` words at paragraph breaks, with the Python version in every row: different
CPython releases carry different text, so the manifest's hash of the file changes with it.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

LICENSE = "PSF-2.0"
SOURCE = "python-stdlib:pydoc_data.topics"
DEFAULT_MAX_WORDS = 400


def documents(max_words: int = DEFAULT_MAX_WORDS) -> list[dict[str, str]]:
    """The help topics as documents of at most about `max_words` words, in topic order."""
    from pydoc_data.topics import topics  # noqa: PLC0415 - part of the standard library

    out: list[dict[str, str]] = []
    for topic in sorted(topics):
        paragraphs = [" ".join(p.split()) for p in topics[topic].split("\n\n") if p.strip()]
        current: list[str] = []
        for paragraph in paragraphs:
            if (
                current
                and sum(len(p.split()) for p in current) + len(paragraph.split()) > max_words
            ):
                out.append(_row(topic, current))
                current = []
            current.append(paragraph)
        if current:
            out.append(_row(topic, current))
    return out


def jsonl(max_words: int = DEFAULT_MAX_WORDS) -> bytes:
    """The documents as the JSONL file `export` writes."""
    rows = documents(max_words)
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode()


def export(path: Path, max_words: int = DEFAULT_MAX_WORDS) -> int:
    """Write the documents as JSONL unless the file already holds exactly them (its mtime, and
    so the data pipeline's input fingerprint, stays put); returns how many documents."""
    data = jsonl(max_words)
    if not path.is_file() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data.count(b"\n")


def _row(topic: str, paragraphs: list[str]) -> dict[str, str]:
    return {
        "text": "\n\n".join(paragraphs),
        "topic": topic,
        "source": SOURCE,
        "license": LICENSE,
        "python": platform.python_version(),
    }
