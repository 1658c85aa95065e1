"""Reading-comprehension mining (no teacher), public text from the standard library, and the
decontamination guard on rows made from labelled sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from dapt_eval.benchmark import build_benchmark
from dapt_trainer.config import SourceConfig as TrainerSource
from dapt_trainer.data.readers import read_source

from dapt_data.cli import main
from dapt_data.comprehension import ComprehensionTask, DomainTerms, MiningConfig, mine, render
from dapt_data.config import load_config
from dapt_data.manifest import read_manifest
from dapt_data.pipeline import run_all
from dapt_data.public import LICENSE, documents, export

ARTICLE = (
    "Connecting a domain you already own\n\n"
    "If you bought your domain from another registrar, you can connect it to your "
    "site without transferring it. Connecting a custom domain requires a Starter plan"
    " or higher.\n\n"
    "How long does it take?\n\n"
    "DNS changes usually take effect within 1 to 2 hours, but can take up to 48 hours"
    " to propagate worldwide. The status changes to Connected when we detect the "
    "records.\n\n"
    "Primary domain and www\n\n"
    "You can connect up to 10 domains to one site. Delete any other A records for the"
    " apex, because conflicting records are the most common cause of a failed "
    "connection.\n\n"
    "The registrar keeps the domain registration and its renewal dates. However, the "
    "nameservers must point to our servers before the domain can be connected."
)


def _tasks(text: str, **settings: Any) -> dict[ComprehensionTask, list[tuple[str, str]]]:
    found: dict[ComprehensionTask, list[tuple[str, str]]] = {}
    for qa in mine("kb:a.md", text, MiningConfig(**settings)):
        found.setdefault(qa.task, []).append((qa.question, qa.answer))
    return found


def test_mined_tasks_are_answered_by_the_text_itself() -> None:
    tasks = _tasks(ARTICLE, max_per_task=5)
    assert tasks[ComprehensionTask.TITLE][0][1] == "Connecting a domain you already own"
    sections = dict(tasks[ComprehensionTask.SECTION])
    # A question heading is asked as it is; the answer is the first sentences under it.
    assert sections["How long does it take?"].startswith("DNS changes usually take effect")
    completion = tasks[ComprehensionTask.COMPLETION]
    assert all(a and a in ARTICLE.replace("\n", " ") for _, a in completion)
    answers = [a for _, a in tasks[ComprehensionTask.CONNECTIVE]]
    assert (
        "Because conflicting records are the most common cause of a failed connection." in answers
    )
    assert "You can connect it to your site without transferring it." in answers
    assert "However" in answers  # the relation between two sentences joined by "However,"


def test_mining_is_deterministic_and_capped_per_task() -> None:
    first = mine("kb:a.md", ARTICLE, MiningConfig(max_per_task=1))
    assert first == mine("kb:a.md", ARTICLE, MiningConfig(max_per_task=1))
    assert len({qa.task for qa in first}) == len(first)  # one of each type at most
    assert mine("kb:a.md", ARTICLE, MiningConfig(max_per_task=1, seed=5)) != first or len(first) < 3


def test_rendered_text_is_the_document_then_its_tasks() -> None:
    tasks = mine("kb:a.md", ARTICLE, MiningConfig())
    text = render(ARTICLE, tasks)
    assert text.startswith(ARTICLE.strip())
    assert text.count("\nAnswer: ") == len(tasks)


def test_domain_terms_are_words_the_domain_uses_and_public_text_does_not() -> None:
    terms = DomainTerms.count(
        ["connect the registrar and nameservers", "nameservers and registrar settings here"],
        ["the settings of the language", "connect to a socket", "settings and values"],
    )
    assert terms.is_term("registrar")
    assert terms.is_term("nameservers")
    assert not terms.is_term("settings")  # common in the public text too
    assert not terms.is_term("connect")  # in one domain document only


def test_public_text_comes_from_the_standard_library_with_its_license(tmp_path: Path) -> None:
    rows = documents(max_words=200)
    assert len(rows) > 100
    assert all(r["license"] == LICENSE == "PSF-2.0" for r in rows)
    assert all(len(r["text"].split()) <= 200 or "\n\n" not in r["text"] for r in rows)
    assert export(tmp_path / "public.jsonl") == len(
        (tmp_path / "public.jsonl").read_text().splitlines()
    )


def _pipeline(tmp_path: Path, intent_items: list[dict[str, str]]) -> Path:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# " + ARTICLE, encoding="utf-8")
    export(tmp_path / "public.jsonl", max_words=150)
    bench = tmp_path / "bench-intent"
    bench.mkdir()
    items = [
        {"id": "b1", "text": "how do i point my domain", "label": "domain"},
        {
            "id": "b2",
            "text": "Please refund my annual plan, the site was down all week.",
            "label": "billing",
        },
    ]
    (bench / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    manifest = {
        "name": "bench-intent",
        "version": "1",
        "task": "classification",
        "prompt": {"id": "p", "version": "1", "template": "{text} {labels}"},
        "labels": ["billing", "domain"],
    }
    (bench / "benchmark.json").write_text(json.dumps(manifest))
    build_benchmark(bench)
    train = tmp_path / "train-intent"
    train.mkdir()
    (train / "benchmark.json").write_text(json.dumps({**manifest, "name": "train-intent"}))
    (train / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in intent_items))
    config = {
        "output": "out",
        "sources": [
            {"name": "kb", "path": "kb", "format": "markdown"},
            {"name": "public", "path": "public.jsonl", "format": "jsonl", "origin": "public"},
        ],
        "clean": {"languages": []},
        "decontaminate": {"benchmarks": ["bench-intent"]},
        "manifest": {"name": "mix", "target_domain_share": 0.5},
        "comprehension": {"max_per_task": 2},
        "instructions": {"sets": [{"path": "train-intent", "task": "intent"}]},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_comprehension_texts_reach_the_trainer_as_domain_completion_text(tmp_path: Path) -> None:
    # GIVEN a pipeline with a comprehension section
    path = _pipeline(
        tmp_path, [{"id": "t1", "text": "my card was charged twice", "label": "billing"}]
    )
    # WHEN it runs
    results = {r.step: r for r in run_all(load_config(path))}
    # THEN the mined texts are listed as domain completion text the trainer reads back
    assert results["comprehension"].counts["out"] == 1
    manifest = read_manifest(results["manifest"].counts["manifest"])
    entry = next(s for s in manifest.sources if s.name == "comprehension")
    assert (entry.kind, entry.origin.value, entry.records) == ("completion", "domain", 1)
    rows = read_source(
        TrainerSource(
            name="comprehension", kind="completion", manifest=results["manifest"].counts["manifest"]
        )
    )
    assert "\nAnswer: " in rows.rows[0]["text"]
    # and a rerun skips the step
    assert {r.step: r for r in run_all(load_config(path))}["comprehension"].skipped


def test_rows_made_from_a_labelled_set_that_copy_a_benchmark_item_are_dropped(
    tmp_path: Path,
) -> None:
    # GIVEN a training set holding a 6-word benchmark utterance (too short for the KB's
    # 8-word rule) inside a longer message, and an unrelated one
    path = _pipeline(
        tmp_path,
        [
            {"id": "t1", "text": "hi, how do i point my domain to you?", "label": "domain"},
            {"id": "t2", "text": "my card was charged twice", "label": "billing"},
        ],
    )
    # WHEN the pipeline runs THEN the copy is dropped with what it matched, the other is kept
    results = {r.step: r for r in run_all(load_config(path))}
    assert results["instructions"].counts["out"] == 1
    assert results["instructions"].counts["dropped"] == {"benchmark_overlap": 1}
    [dropped] = [
        json.loads(line)
        for line in (tmp_path / "out" / "instructions" / "dropped.jsonl").read_text().splitlines()
    ]
    assert dropped["matched"] == "bench-intent@1/b1"
    assert dropped["step"] == "instructions"


@pytest.mark.parametrize("name", ["comprehension"])
def test_an_optional_step_without_its_section_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump({"output": "o", "sources": [{"name": "kb", "path": "kb", "format": "text"}]})
    )
    assert main([name, "--config", str(tmp_path / "p.yaml")]) == 2
