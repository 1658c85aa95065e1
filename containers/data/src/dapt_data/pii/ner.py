"""Names in running text from a spaCy NER pipeline (opt-in: `redact.options.name_model`).

The name heuristics (`pii.names`) find participants, cue phrases and gazetteer names; a name
with none of these ("Margaret Olsen from accounting approved it") needs a model. spaCy is not a
dependency: its English models are not published on PyPI under spaCy's name (only unofficial
re-uploads are, see docs/benchmarks.md), so a domain that wants this installs `spacy` and a
model it trusts, and names the package or folder here.

A PERSON entity is kept unless dapt-data's name rules already refuse it: a span with a digit
("Batch 2023-11-30"), a field label ("Tel:"), a word of `NAME_STOPWORDS` ("Quillsite Pro",
"Starter"), a name used for a thing (`names.used_for_a_thing`: "the Hunter theme", "Victoria
Day", "Schäfer Holzspielzeug GmbH"), or a lone word that is also an ordinary word or place
(`AMBIGUOUS_FIRST_NAMES`: "Mark as read", "Bill me", "Austin template"; such names still count
after a cue phrase).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from dapt_data.pii.gazetteer import AMBIGUOUS_FIRST_NAMES
from dapt_data.pii.names import NAME_STOPWORDS, used_for_a_thing
from dapt_data.pii.types import PiiType, Span


class Entity(Protocol):
    """What is read of a spaCy entity."""

    start_char: int
    end_char: int
    label_: str


Pipeline = Callable[[str], Any]
"""A loaded spaCy pipeline: text in, a `Doc` whose `ents` are `Entity`s out."""


class NameModelError(ValueError):
    """The configured name model cannot be used (the message says why and what to install)."""


def name_model_problem(name: str) -> str | None:
    """Why `name` cannot be loaded, without loading it (for config checks), or None."""
    if importlib.util.find_spec("spacy") is None:
        return (
            f"redact.options.name_model = {name!r}: needs spaCy, which is not installed "
            "(pip install spacy, then a spaCy model package or folder)"
        )
    if Path(name).is_dir():
        return None
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return (
            f"redact.options.name_model = {name!r}: neither an installed package nor a folder "
            "(install the spaCy model, or give the folder of one)"
        )
    return None


@functools.cache
def load_pipeline(name: str) -> Pipeline:
    """The spaCy pipeline `name` (package or folder), loaded once per process, without the
    components NER does not need."""
    problem = name_model_problem(name)
    if problem:
        raise NameModelError(problem)
    import spacy  # noqa: PLC0415  # optional dependency, only for this detector

    try:
        return spacy.load(name, exclude=list(UNUSED_COMPONENTS))  # type: ignore[no-any-return]
    except (OSError, ImportError, AttributeError) as err:
        raise NameModelError(
            f"redact.options.name_model = {name!r}: not a spaCy pipeline ({err})"
        ) from err


def model_name_spans(text: str, nlp: Pipeline) -> list[Span]:
    """PERSON entities of `nlp` on `text`, less those the rules above refuse."""
    return [
        Span(e.start_char, e.end_char, PiiType.NAME, "name-model")
        for e in _entities(nlp(text))
        if e.label_ == "PERSON" and _plausible(text, e.start_char, e.end_char)
    ]


def _entities(doc: Any) -> Iterable[Entity]:
    return doc.ents  # type: ignore[no-any-return]


def _plausible(text: str, start: int, end: int) -> bool:
    value = text[start:end]
    words = value.lower().split()
    if any(c.isdigit() for c in value) or text[end : end + 1] == ":":
        return False
    if any(w in NAME_STOPWORDS for w in words):
        return False
    if used_for_a_thing(text, start, end):
        return False  # "The Hunter theme", "Ivy and Willow themes", "Victoria Day", "... GmbH"
    return not (len(words) == 1 and words[0] in AMBIGUOUS_FIRST_NAMES)


UNUSED_COMPONENTS = ("parser", "lemmatizer", "senter")
"""spaCy components the PERSON entities do not depend on (skipped for speed)."""
