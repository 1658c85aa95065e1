"""Decontaminate: training text that overlaps benchmark items is dropped and names the item."""

from __future__ import annotations

import json
import random
from pathlib import Path

from dapt_eval.benchmark import build_benchmark

from dapt_data.config import DecontaminateConfig
from dapt_data.decontaminate import decontaminate_records, load_index
from pipeline_fixtures import BENCHMARKS, english_paragraph, record

QUESTION = (
    "How many days after purchase can a customer on the annual Starter plan still "
    "request a full refund of the subscription fee"
)


def _benchmark(root: Path) -> Path:
    root.mkdir()
    manifest = {
        "name": "tiny-qa",
        "version": "1",
        "task": "qa",
        "prompt": {"id": "p", "version": "1", "template": "{question}"},
    }
    (root / "benchmark.json").write_text(json.dumps(manifest))
    items = [
        {"id": "q1", "question": QUESTION, "reference_answer": "Within 14 days."},
        {"id": "q2", "question": "Is there a short one?", "reference_answer": "Yes."},
    ]
    (root / "items.jsonl").write_text("\n".join(json.dumps(i) for i in items) + "\n")
    build_benchmark(root)
    return root


def test_overlap_with_a_benchmark_item_is_dropped(tmp_path: Path) -> None:
    # GIVEN a benchmark and training texts: one quoting its question inside other text
    bench = _benchmark(tmp_path / "bench")
    rng = random.Random(2)
    leaked = f"{english_paragraph(rng, 3)} FAQ: {QUESTION.upper()}? {english_paragraph(rng, 3)}"
    clean = english_paragraph(rng)
    index = load_index(DecontaminateConfig(benchmarks=[str(bench)]))
    # WHEN decontaminating
    kept, dropped = decontaminate_records(
        [record(leaked, "a:1"), record(clean, "a:2")], index, threshold=0.0
    )
    # THEN the leaked text is dropped, naming benchmark, version and item; the short item is
    # listed as checked by exact match only
    assert [r.source_id for r in kept] == ["s:a:2"]
    assert [(d.reason, d.matched, d.score) for d in dropped] == [
        ("benchmark_overlap", "tiny-qa@1/q1", 1.0)
    ]
    assert sorted(index.skipped) == ["tiny-qa@1/q2"]


def test_reference_answers_are_checked_only_when_asked(tmp_path: Path) -> None:
    # GIVEN a KB-like text that states a reference answer but not the question
    bench = _benchmark(tmp_path / "bench")
    answer = "Within 14 days customers on the annual Starter plan get a full refund of the fee."
    (bench / "items.jsonl").write_text(
        json.dumps({"id": "q1", "question": QUESTION, "reference_answer": answer}) + "\n"
    )
    build_benchmark(bench)
    kb = f"Refunds. {answer} Monthly plans are not refunded."
    # WHEN decontaminating with the default, then with check_references
    by_default = load_index(DecontaminateConfig(benchmarks=[str(bench)]))
    strict = load_index(DecontaminateConfig(benchmarks=[str(bench)], check_references=True))
    # THEN the knowledge stays by default and is dropped when references are checked
    assert decontaminate_records([record(kb, "kb:1")], by_default, 0.0)[1] == []
    assert len(decontaminate_records([record(kb, "kb:1")], strict, 0.0)[1]) == 1


def test_threshold_keeps_small_overlaps(tmp_path: Path) -> None:
    # GIVEN text sharing one 13-gram (a fraction) of the item's n-grams
    bench = _benchmark(tmp_path / "bench")
    index = load_index(DecontaminateConfig(benchmarks=[str(bench)]))
    partial = " ".join(QUESTION.split()[:14]) + " is answered in the billing article."
    # WHEN the threshold is above that fraction, THEN it is kept; at 0 it is dropped
    assert len(decontaminate_records([record(partial)], index, threshold=0.5)[0]) == 1
    assert len(decontaminate_records([record(partial)], index, threshold=0.0)[1]) == 1


def test_example_benchmarks_load_and_catch_a_copied_chat() -> None:
    # GIVEN the example benchmarks (loaded with dapt_eval, hash-verified)
    index = load_index(DecontaminateConfig(benchmarks=[str(b) for b in BENCHMARKS]))
    summarization = BENCHMARKS[[b.name for b in BENCHMARKS].index("summarization")]
    document = json.loads((summarization / "items.jsonl").read_text().splitlines()[0])["document"]
    # WHEN a training record contains a benchmark document
    _, dropped = decontaminate_records([record(document)], index, threshold=0.0)
    # THEN it is dropped and matched to that item
    assert dropped[0].matched is not None
    assert dropped[0].matched.startswith("quillsite-summarization@")


def test_a_references_only_benchmark_keeps_its_documents_and_drops_its_summaries(
    tmp_path: Path,
) -> None:
    # GIVEN a summarization benchmark made from a KB section, listed as references only
    root = tmp_path / "summ"
    root.mkdir()
    rng = random.Random(5)
    section, summary = english_paragraph(rng, 6), english_paragraph(rng, 2)
    manifest = {
        "name": "tiny-summ",
        "version": "1",
        "task": "summarization",
        "prompt": {"id": "p", "version": "1", "template": "{document}"},
    }
    (root / "benchmark.json").write_text(json.dumps(manifest))
    item = {"id": "s1", "document": section, "reference_summary": summary}
    (root / "items.jsonl").write_text(json.dumps(item) + "\n")
    build_benchmark(root)
    config = DecontaminateConfig(benchmarks=[str(root)], references_only=[str(root)])
    # WHEN the KB article holding the section and a text quoting the summary are checked
    kept, dropped = decontaminate_records(
        [record(f"Title\n\n{section}", "kb:1"), record(f"Note: {summary}", "x:1")],
        load_index(config),
        threshold=0.0,
    )
    # THEN the article stays (the model is meant to read it) and the summary is dropped
    assert [r.source_id for r in kept] == ["s:kb:1"]
    assert [d.matched for d in dropped] == ["tiny-summ@1/s1"]


def test_short_items_are_caught_by_exact_normalised_match(tmp_path: Path) -> None:
    # GIVEN a benchmark whose second item is under min_item_words (8) words
    index = load_index(DecontaminateConfig(benchmarks=[str(_benchmark(tmp_path / "bench"))]))
    copied = "Customer: hi. IS there a  SHORT one ?\nAgent: yes"
    mentioned = "There is a short one for most sites."
    # WHEN a chat line is the item verbatim (case and spacing aside) and a KB line mentions it
    kept, dropped = decontaminate_records(
        [record(copied, "c:1"), record(mentioned, "kb:1")], index, threshold=0.0
    )
    # THEN the copy is dropped, naming the rule, and the mention stays
    assert [r.source_id for r in kept] == ["s:kb:1"]
    assert [(d.matched, d.score) for d in dropped] == [("tiny-qa@1/q2", 1.0)]
    assert "exactly" in dropped[0].detail


def test_a_paraphrased_benchmark_question_is_dropped_but_the_kb_answer_stays() -> None:
    # GIVEN the example benchmarks, a chat asking a QA question in other words, and the KB
    # sentence answering it
    index = load_index(DecontaminateConfig(benchmarks=[str(b) for b in BENCHMARKS]))
    asked = "Customer: hello. Is there a fee from Quillsite for transferring a domain out?"
    answer = "Quillsite does not charge a fee for transferring a domain out to another registrar."
    # WHEN decontaminating
    kept, dropped = decontaminate_records(
        [record(asked, "c:1"), record(answer, "kb:1")], index, threshold=0.0
    )
    # THEN the question is dropped as a paraphrase (13-grams alone would miss it; the QA item
    # and an intent item both ask it); the answer stays
    assert [d.record.source_id for d in dropped] == ["s:c:1"]
    assert "paraphrase" in dropped[0].detail
    assert [r.source_id for r in kept] == ["s:kb:1"]
    no_paraphrase = DecontaminateConfig(
        benchmarks=[str(b) for b in BENCHMARKS], paraphrase_threshold=None
    )
    assert decontaminate_records([record(asked, "c:1")], load_index(no_paraphrase), 0.0)[1] == []
