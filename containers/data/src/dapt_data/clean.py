"""Clean: normalise text, then apply quality filters; every drop is kept with its reason.

Normalisation: ftfy (mojibake, bad escapes) with NFKC, then whitespace (runs of spaces and tabs
to one space, lines stripped, at most one blank line in a row). Filters, first failure wins
(the `reason` counted in the summary and written to `dropped.jsonl`):

- `too_short` / `too_long`: characters outside [`clean.min_chars`, `clean.max_chars`];
- `symbol_ratio`: share of visible characters that are not letters or digits;
- `repeated_lines`: share of non-blank lines repeating an earlier line;
- `repeated_ngrams`: share of word n-grams (n = `clean.repeated_ngram_words`) occurring twice+;
- `language`: lingua's language not in `clean.languages` (or undetermined).

A source may set its own bounds (`sources[].clean`, only the keys it gives); its records are then
checked against those, and the drop detail names `sources[<name>].clean.<key>`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import ftfy
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

from dapt_data.config import CleanConfig
from dapt_data.records import Dropped, Record


def normalise(text: str) -> str:
    """ftfy + NFKC + whitespace; idempotent."""
    fixed = ftfy.fix_text(text, normalization="NFKC")
    lines = [_SPACES.sub(" ", line).strip() for line in fixed.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def symbol_ratio(text: str) -> float:
    """Share of non-whitespace characters that are not letters or digits."""
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return 0.0
    return sum(1 for c in visible if not c.isalnum()) / len(visible)


def repeated_line_ratio(text: str) -> float:
    """Share of non-blank lines that repeat an earlier line."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return 0.0
    return (len(lines) - len(set(lines))) / len(lines)


def repeated_ngram_ratio(text: str, n: int) -> float:
    """Share of word n-gram occurrences whose n-gram occurs more than once (Gopher-style)."""
    words = text.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(c for c in counts.values() if c > 1) / len(grams)


def build_detector(config: CleanConfig) -> LanguageDetector | None:
    """A lingua detector over the candidates plus the allow-list; None when no filter."""
    if not config.languages:
        return None
    codes = sorted(set(config.language_candidates) | set(config.languages))
    languages = [Language.from_iso_code_639_1(IsoCode639_1.from_str(c)) for c in codes]
    if len(languages) == 1:
        # lingua needs two languages to choose between; a one-language allow-list would
        # accept everything, so English (or German) is added as the alternative.
        extra = "de" if codes == ["en"] else "en"
        languages.append(Language.from_iso_code_639_1(IsoCode639_1.from_str(extra)))
    return LanguageDetectorBuilder.from_languages(*languages).build()


Check = Callable[[str], str | None]


def make_checks(config: CleanConfig, key: str = "clean") -> list[tuple[str, Check]]:
    """The filters in order, each returning a detail message (naming `key`.<bound>) when the
    text fails."""
    detector = build_detector(config)
    checks: list[tuple[str, Check]] = [
        ("too_short", lambda t: _limit(len(t), config.min_chars, "<", f"{key}.min_chars")),
        ("too_long", lambda t: _limit(len(t), config.max_chars, ">", f"{key}.max_chars")),
        (
            "symbol_ratio",
            lambda t: _ratio(symbol_ratio(t), config.max_symbol_ratio, f"{key}.max_symbol_ratio"),
        ),
        (
            "repeated_lines",
            lambda t: _ratio(
                repeated_line_ratio(t),
                config.max_repeated_line_ratio,
                f"{key}.max_repeated_line_ratio",
            ),
        ),
        (
            "repeated_ngrams",
            lambda t: _ratio(
                repeated_ngram_ratio(t, config.repeated_ngram_words),
                config.max_repeated_ngram_ratio,
                f"{key}.max_repeated_ngram_ratio",
            ),
        ),
    ]
    if detector is not None:
        allowed = set(config.languages)
        sample = config.language_sample_chars
        checks.append(("language", lambda t: _language(detector, t[:sample], allowed, key)))
    return checks


def _limit(value: int, bound: int, op: str, key: str) -> str | None:
    failed = value < bound if op == "<" else value > bound
    return f"{value} chars {op} {key} {bound}" if failed else None


def _ratio(value: float, bound: float, key: str) -> str | None:
    return f"{value:.3f} > {key} {bound}" if value > bound else None


def _language(detector: LanguageDetector, text: str, allowed: set[str], key: str) -> str | None:
    language = detector.detect_language_of(text)
    if language is None:
        return f"language undetermined; {key}.languages {sorted(allowed)}"
    code = language.iso_code_639_1.name.lower()
    return (
        None if code in allowed else f"language '{code}' not in {key}.languages {sorted(allowed)}"
    )


def clean_records(
    records: Iterable[Record],
    config: CleanConfig,
    per_source: Mapping[str, CleanConfig] | None = None,
) -> tuple[list[Record], list[Dropped]]:
    """Normalise every record and split into kept and dropped (with reason and detail).

    `per_source` gives the bounds of sources that set their own (records of other sources use
    `config`)."""
    default = make_checks(config)
    own = {
        name: make_checks(bounds, f"sources[{name}].clean")
        for name, bounds in (per_source or {}).items()
    }
    kept: list[Record] = []
    dropped: list[Dropped] = []
    for record in records:
        cleaned = record.model_copy(update={"text": normalise(record.text)})
        failure = _first_failure(cleaned.text, own.get(record.source, default))
        if failure is None:
            kept.append(cleaned)
        else:
            reason, detail = failure
            dropped.append(Dropped(step="clean", reason=reason, detail=detail, record=cleaned))
    return kept, dropped


def _first_failure(text: str, checks: list[tuple[str, Check]]) -> tuple[str, str] | None:
    for reason, check in checks:
        detail = check(text)
        if detail is not None:
            return reason, detail
    return None


_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")
