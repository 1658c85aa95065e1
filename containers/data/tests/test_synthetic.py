"""Synthetic Q&A and reading comprehension: strict parsing, grounding, dedup, lineage."""

from __future__ import annotations

import json
from pathlib import Path

from dapt_eval.providers import (
    DecodingParams,
    Generation,
    Oracle,
    PermanentError,
    Provider,
    Usage,
)
from dapt_eval.providers.offline import OfflineProvider
from dapt_eval.providers.retry import RetryPolicy

from dapt_data.synthetic import (
    SourceDocument,
    SynthesisConfig,
    SyntheticTask,
    generate_synthetic,
    grounding,
    parse_generation,
    split_passages,
)

KB = Path(__file__).parents[3] / "examples" / "website-builder" / "kb"
NO_SLEEP = RetryPolicy(max_attempts=2, sleep=lambda _: None)

REFUNDS = (
    "# Refunds\n\nNew annual plans can be refunded in full within 14 days of purchase. "
    "Request the refund under Settings > Billing > Invoices. Refunds reach the original card "
    "within 5 to 10 business days."
)
DOMAINS = (
    "# Domains\n\nConnecting a custom domain needs the Starter plan or higher. DNS changes "
    "can take up to 48 hours to propagate, and the domain shows Pending until then."
)


class ScriptedTeacher(Provider):
    """A test double for a model: canned output chosen by a phrase in the prompt."""

    name = "scripted"
    model_id = "teacher-1"
    revision = "r7"

    def __init__(self, script: dict[str, str]) -> None:
        self.script = script
        self.prompts: list[str] = []

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        self.prompts.append(prompt)
        for phrase, output in self.script.items():
            if phrase in prompt:
                if output == "ERROR":
                    raise PermanentError("scripted: access denied")
                return Generation(output, Usage(), 0.0, self.name, self.model_id, self.revision)
        raise AssertionError(f"no script for prompt {prompt[:80]!r}")


def _items(*pairs: tuple[str, str]) -> str:
    return json.dumps({"items": [{"question": q, "answer": a} for q, a in pairs]})


def test_strict_parsing_names_the_rule() -> None:
    assert parse_generation(_items(("Q?", "A"))) == ([("Q?", "A")], "", "")
    assert parse_generation("Sure! " + _items(("Q?", "A")))[1] == "invalid_json"
    _, reason, detail = parse_generation(json.dumps({"items": [{"question": "Q?", "answer": ""}]}))
    assert reason == "bad_schema"
    assert "items.0.answer" in detail
    _, reason, detail = parse_generation(json.dumps({"items": [], "note": "x"}))
    assert reason == "bad_schema"
    assert "note" in detail


def test_grounding_is_the_share_of_answer_content_tokens_in_the_passage() -> None:
    assert grounding("Within 14 days of purchase.", REFUNDS) == 1.0
    assert grounding("Within 30 days, by phone.", REFUNDS) < 0.5
    assert grounding("the", REFUNDS) == 0.0


def test_generate_keeps_grounded_unique_items_with_lineage_and_counts_the_rest() -> None:
    # GIVEN a teacher that answers well, hallucinates once, repeats itself and breaks once
    teacher = ScriptedTeacher(
        {
            "customer-support assistant.\nFrom the passage below, write 2 questions a customer "
            "might ask that the passage answers, each with a short answer using only facts "
            "stated in the passage. The question must make sense without seeing the passage.\n"
            'Reply with JSON only, exactly: {"items": [{"question": "...", "answer": "..."}]}'
            "\n\nPassage:\n# Refunds": _items(
                ("How long do I have to get a refund on an annual plan?", "14 days of purchase"),
                ("How long do I have to get a refund on an annual plan", "Within 14 days."),
                ("Can I get a refund by phone?", "Yes, call us at any time on weekends."),
            ),
            "reading-comprehension exercises.\nWrite 2 questions about the passage below whose "
            "answers are stated in it; answer each with words copied from the passage where "
            'possible.\nReply with JSON only, exactly: {"items": [{"question": "...", '
            '"answer": "..."}]}\n\nPassage:\n# Refunds': _items(
                ("Where do you request the refund?", "Settings > Billing > Invoices"),
                (
                    "Where do you request the refund, exactly?",
                    "Under Settings > Billing > Invoices",
                ),
            ),
            "customer-support assistant.\nFrom the passage below, write 2 questions a customer "
            "might ask that the passage answers, each with a short answer using only facts "
            "stated in the passage. The question must make sense without seeing the passage.\n"
            'Reply with JSON only, exactly: {"items": [{"question": "...", "answer": "..."}]}'
            "\n\nPassage:\n# Domains": "Here are your questions: 1. ...",
            "Passage:\n# Domains": "ERROR",
        }
    )
    docs = [
        SourceDocument(source_id="kb-005", text=REFUNDS),
        SourceDocument(source_id="kb-007", text=DOMAINS),
    ]
    config = SynthesisConfig(questions_per_passage=2, min_passage_chars=50)
    # WHEN synthesis runs
    kept, quarantined, report = generate_synthetic(docs, teacher, config, NO_SLEEP)
    # THEN grounded, unique items remain, each traceable to its source and generator
    assert [(e.task, e.question) for e in kept] == [
        (SyntheticTask.QA, "How long do I have to get a refund on an annual plan?"),
        (SyntheticTask.READING_COMPREHENSION, "Where do you request the refund?"),
    ]
    assert all(e.source_id == "kb-005" for e in kept)
    assert kept[1].passage is not None
    assert kept[1].passage.startswith("# Refunds")
    assert kept[0].passage is None
    assert kept[0].generator.model_dump() == {
        "provider": "scripted",
        "model_id": "teacher-1",
        "revision": "r7",
        "prompt_id": "synth-qa",
        "prompt_version": "1",
    }
    # AND every other item is accounted for
    assert sorted((q.source_id, q.task, q.reason) for q in quarantined) == [
        ("kb-007", SyntheticTask.QA, "invalid_json"),
        ("kb-007", SyntheticTask.READING_COMPREHENSION, "provider_error"),
    ]
    assert report.generations == 4
    assert report.items_parsed == 5
    assert report.ungrounded == 1
    assert report.duplicates_exact == 1
    assert report.duplicates_near == 1
    assert report.kept == {"qa": 1, "reading_comprehension": 1}
    assert report.quarantined == {"invalid_json": 1, "provider_error": 1}


def test_offline_provider_output_is_quarantined_not_kept() -> None:
    # The offline provider answers with a hash-derived text, which is not the JSON we demand.
    doc = SourceDocument(source_id="kb-001", text=(KB / "kb-001-plans-and-pricing.md").read_text())
    kept, quarantined, report = generate_synthetic([doc], OfflineProvider("teacher"))
    assert kept == []
    assert report.passages >= 3
    assert report.quarantined == {"invalid_json": report.generations}
    assert {q.reason for q in quarantined} == {"invalid_json"}


def test_split_passages_starts_a_passage_at_each_heading_and_respects_the_limit() -> None:
    text = "# A\n\n" + "word " * 30 + "\n\n# B\n\n" + ("more text here. " * 20 + "\n\n") * 3
    passages = split_passages(text, max_chars=400, min_chars=20)
    assert passages[0].startswith("# A")
    assert passages[1].startswith("# B")
    assert all(len(p) <= 400 for p in passages)


def test_deeply_nested_teacher_output_is_invalid_json_not_a_crash() -> None:
    items, reason, detail = parse_generation("[" * 100_000)
    assert (items, reason) == ([], "invalid_json")
    assert "nested" in detail
