"""Score the redactor on a labeled set: recall and precision per type.

Labeled rows are JSON lines `{"id", "text", "spans": [{"start", "end", "type"}],
"known_names": [...]}` (`known_names` optional: participant names the record's metadata
would carry).

Matching rule, on alphanumeric characters only (so a span that differs by a bracket or a
trailing full stop still matches):
- a gold span is *found* when every one of its alphanumeric characters lies inside a
  predicted span of the same type (partial coverage leaks part of the value, so it is a miss);
- a predicted span is *correct* when at least half of its alphanumeric characters lie inside
  gold spans of the same type.
`leaked` counts gold spans with an alphanumeric character not covered by a predicted span of
any type (the privacy view: a phone redacted as `[CARD]` is a type error, not a leak).

Run `python -m dapt_data.pii.evaluate tests/data/pii/labeled.jsonl` for the table.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dapt_data.pii.types import PiiType, Span
from dapt_data.redact import RedactionConfig, detect, resolve


@dataclass(frozen=True)
class LabeledExample:
    """One row of the labeled set."""

    id: str
    text: str
    gold: tuple[Span, ...]
    known_names: tuple[str, ...] = ()


@dataclass
class TypeScore:
    """Counts for one type; rates are None when there is nothing to divide by."""

    gold: int = 0
    found: int = 0
    predicted: int = 0
    correct: int = 0
    leaked: int = 0
    missed_ids: list[str] = field(default_factory=list)
    false_alarm_ids: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.found / self.gold if self.gold else None

    @property
    def precision(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None


def load_labeled(path: Path) -> list[LabeledExample]:
    """Parse the labeled set; a malformed row is an error naming the line and field."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            gold = tuple(
                Span(int(s["start"]), int(s["end"]), PiiType(s["type"]), "gold")
                for s in row["spans"]
            )
            examples.append(
                LabeledExample(
                    str(row["id"]), str(row["text"]), gold, tuple(row.get("known_names", ()))
                )
            )
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: line {number}: bad labeled row: {err!r}") from err
    return examples


Predictor = Callable[[LabeledExample], Sequence[Span]]
"""A detector under test: the spans it would replace in an example's text."""


def load_marked(path: Path) -> list[LabeledExample]:
    """A file of inline-marked lines (`{NAME:value}`, `{ADDRESS:value}`, any type; `#` starts a
    comment line; a line without a mark is a look-alike), as labeled examples."""
    examples = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, marked in enumerate(lines, start=1):
        if not marked.strip() or marked.startswith("#"):
            continue
        gold, shift = [], 0
        for m in _MARK.finditer(marked):
            start = m.start() - shift
            value = m.group("value")
            gold.append(Span(start, start + len(value), PiiType(m.group("type")), "gold"))
            shift += len(m.group()) - len(value)
        text = _MARK.sub(lambda m: m.group("value"), marked)
        examples.append(LabeledExample(f"{path.stem}-{number:03d}", text, tuple(gold)))
    return examples


_MARK = re.compile(rf"\{{(?P<type>{'|'.join(t.value for t in PiiType)}):(?P<value>[^{{}}]+)\}}")


def redactor(config: RedactionConfig | None = None) -> Predictor:
    """`dapt_data.redact` as a predictor: its detectors, overlaps resolved as it redacts."""
    config = config or RedactionConfig()

    def predict(example: LabeledExample) -> list[Span]:
        return resolve(detect(example.text, config, example.known_names))

    return predict


def score(
    examples: Sequence[LabeledExample],
    config: RedactionConfig | None = None,
    predict: Predictor | None = None,
) -> dict[PiiType, TypeScore]:
    """Per-type scores on `examples` (see the module docstring) of `predict`, by default the
    redactor with `config`."""
    predict = predict or redactor(config)
    scores = {kind: TypeScore() for kind in PiiType}
    for example in examples:
        predicted = list(predict(example))
        alnum = [c.isalnum() for c in example.text]
        for gold in example.gold:
            chars = [i for i in range(gold.start, gold.end) if alnum[i]]
            entry = scores[gold.type]
            entry.gold += 1
            if all(_inside(i, predicted, gold.type) for i in chars):
                entry.found += 1
            else:
                entry.missed_ids.append(example.id)
            if not all(_inside(i, predicted, None) for i in chars):
                entry.leaked += 1
        for span in predicted:
            chars = [i for i in range(span.start, span.end) if alnum[i]]
            inside = sum(_inside(i, example.gold, span.type) for i in chars)
            entry = scores[span.type]
            entry.predicted += 1
            if chars and inside * 2 >= len(chars):
                entry.correct += 1
            else:
                entry.false_alarm_ids.append(example.id)
    return scores


def lookalikes_rewritten(examples: Sequence[LabeledExample], predict: Predictor) -> int:
    """Spans predicted in the hard negatives (examples without a gold span): look-alike text
    (order numbers, versions, brand names) that would be rewritten."""
    return sum(len(predict(example)) for example in examples if not example.gold)


def format_table(scores: dict[PiiType, TypeScore]) -> str:
    """A Markdown table: type, gold, found, recall, predicted, precision, leaked."""
    lines = [
        "| type | gold spans | found | recall | predicted | precision | leaked |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, entry in scores.items():
        if entry.gold == 0 and entry.predicted == 0:
            continue
        lines.append(
            f"| {kind.value} | {entry.gold} | {entry.found} | {_pct(entry.recall)} | "
            f"{entry.predicted} | {_pct(entry.precision)} | {entry.leaked} |"
        )
    return "\n".join(lines)


def _inside(index: int, spans: Sequence[Span], kind: PiiType | None) -> bool:
    return any(s.start <= index < s.end and (kind is None or s.type == kind) for s in spans)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table (and the ids of misses and false alarms) for a labeled file."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m dapt_data.pii.evaluate LABELED.jsonl", file=sys.stderr)
        return 2
    scores = score(load_labeled(Path(args[0])))
    print(format_table(scores))
    for kind, entry in scores.items():
        if entry.missed_ids or entry.false_alarm_ids:
            print(
                f"{kind.value}: missed in {entry.missed_ids}; false alarms in "
                f"{entry.false_alarm_ids}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
