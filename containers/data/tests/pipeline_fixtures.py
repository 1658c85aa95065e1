"""Shared builders for the pipeline tests: configs, records and a small public-data corpus."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from dapt_data.config import PipelineConfig, parse_config
from dapt_data.records import Kind, Origin, Record

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "website-builder"
BENCHMARKS = sorted(p.parent for p in (EXAMPLE / "benchmarks").glob("*/benchmark.json"))


def record(text: str, location: str = "f.txt:1", source: str = "s") -> Record:
    """A domain completion record."""
    return Record.make(source, location, Kind.COMPLETION, Origin.DOMAIN, text)


def config(output: Path, sources: list[dict[str, Any]], **sections: Any) -> PipelineConfig:
    """A validated config from plain dicts."""
    return parse_config({"output": str(output), "sources": sources, **sections}, "test")


def english_paragraph(rng: random.Random, sentences: int = 8) -> str:
    """Grammatical English from a small grammar: passes the quality and language filters."""
    return " ".join(
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}."
        for _ in range(sentences)
    )


def write_public_corpus(path: Path, docs: int = 60, seed: int = 7) -> Path:
    """A public-data JSONL (`{"text": ...}` a line), the stand-in for a downloaded corpus."""
    rng = random.Random(seed)
    lines = [json.dumps({"text": english_paragraph(rng)}) for _ in range(docs)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


SUBJECTS = [
    "The river",
    "A small village",
    "The old library",
    "Every farmer",
    "The committee",
    "Our neighbour",
    "The museum",
    "A young scientist",
    "The orchestra",
    "The council",
    "A travelling merchant",
    "The lighthouse keeper",
    "My grandmother",
    "The ferry crew",
]
VERBS = [
    "described",
    "repaired",
    "studied",
    "painted",
    "visited",
    "measured",
    "celebrated",
    "photographed",
    "questioned",
    "restored",
    "mapped",
    "admired",
    "guarded",
    "explored",
]
OBJECTS = [
    "the ancient bridge",
    "a quiet meadow",
    "the northern coast",
    "several wooden boats",
    "the winter market",
    "a famous garden",
    "the stone tower",
    "the local bakery",
    "a forgotten railway",
    "the autumn harvest",
    "the mountain pass",
    "a crowded harbour",
]
TAILS = [
    "before sunrise",
    "during the long summer",
    "with great patience",
    "after the storm had passed",
    "for the first time in years",
    "while the children watched",
    "despite the cold weather",
    "as the bells rang",
    "near the end of the season",
    "without telling anyone",
    "on a windy afternoon",
    "under a grey sky",
]
