"""Scoring constants shared with the TypeScript fan-out (``scoring_constants.json``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_CONSTANTS: dict[str, Any] = json.loads(
    Path(__file__).with_name("scoring_constants.json").read_text(encoding="utf-8")
)

MCQ_LETTER = re.compile(_CONSTANTS["mcq_letter_pattern"], re.IGNORECASE)
"""A reply that is exactly an answer letter (``B``, ``(b)``, ``Answer: C.``); use ``fullmatch``."""
QA_WRONG_ANSWER: str = _CONSTANTS["qa_wrong_answer"]
"""The simulated provider's wrong QA answer."""
SUMMARY_FALLBACK_CHARS: int = _CONSTANTS["summary_fallback_chars"]
"""The simulated provider's wrong summary: the document's first characters."""
JUDGE_CANDIDATE_MAX_CHARS: int = _CONSTANTS["judge_candidate_max_chars"]
"""The judge sees at most this many code points of a candidate answer (the cut is recorded)."""
