"""Evaluation by generation: greedy answers to benchmark-format items, scored at step 0, at the
eval steps and after the last step; bad item rows are quarantined."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from dapt_eval import mcq as dapt_eval_mcq
from dapt_eval.constants import MCQ_LETTER as DAPT_EVAL_MCQ_LETTER
from dapt_eval.prompts import DEFAULT_PROMPTS
from dapt_eval.runner import unit_prompt
from dapt_eval.schemas import McqItem, Task

from conftest import MakeConfig, write_jsonl
from dapt_trainer import generation_eval
from dapt_trainer.cli import main
from dapt_trainer.config import GenerationEvalConfig
from dapt_trainer.generation_eval import (
    MCQ_LETTER,
    evaluate_generation,
    load_task,
    parse_letter,
    score,
    score_choice,
)
from dapt_trainer.model import Dist, load_base, load_tokenizer
from dapt_trainer.recipe import run_experiment

CPU = torch.device("cpu")
NEW_TOKENS = 4
LETTER_VECTORS = Path(__file__).parents[2] / "eval" / "conformance" / "letters.json"
MCQ_ROWS = [
    {
        "id": f"q{i}",
        "question": f"which step {i}",
        "answer": "publish the draft",
        "distractors": {"near_miss": "save the draft", "wrong": ["delete it", "log out"]},
    }
    for i in range(4)
]


def test_answers_are_scored_by_exact_match_and_contains() -> None:
    assert score("  The Blog post.", "the blog post") == (True, True)
    assert score("publish the blog post now", "Blog Post") == (False, True)
    assert score("a page", "the blog") == (False, False)


def test_greedy_answers_are_the_models_own(model_dir: Path, tmp_path: Path) -> None:
    """References taken from transformers' own greedy ``generate``: the first item's whole
    answer (exact match), the second's last word (contained), the third's unrelated."""
    tokenizer = load_tokenizer(model_dir)
    model = load_base(model_dir, CPU).eval()
    questions = ["add a page", "the site builder", "refund the payment"]
    answers = []
    for q in questions:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=True, add_generation_prompt=True
        )
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        out = model.generate(
            torch.tensor([ids]),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        answers.append(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True))
    assert all(a.strip() for a in answers), answers
    references = [answers[0], answers[1].split()[-1], "zzz nothing like it"]
    rows: list[Any] = [
        {"id": str(i), "question": q, "reference_answer": r}
        for i, (q, r) in enumerate(zip(questions, references, strict=True))
    ]
    path = write_jsonl(tmp_path / "items.jsonl", [*rows, "{not json", {"question": "no ref"}])
    config = GenerationEvalConfig(name="qa", path=str(path), max_new_tokens=NEW_TOKENS)
    task = load_task(config, tokenizer)
    assert [(q.line, q.reason[:12]) for q in task.quarantined] == [
        (4, "invalid JSON"),
        (5, "missing or e"),
    ]
    scores = evaluate_generation(model, tokenizer, [task], Dist(), CPU, autocast=False)
    assert scores == pytest.approx(
        {"generation/qa/exact_match": 1 / 3, "generation/qa/contains": 2 / 3}
    )


def test_generation_is_logged_at_step_0_the_eval_steps_and_the_end(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    items = [{"id": "1", "question": "add a page", "reference_answer": "publish the draft"}]
    path = write_jsonl(tmp_path / "items.jsonl", [*items, "[1, 2]"])
    task = {"name": "qa", "path": str(path), "max_new_tokens": NEW_TOKENS}
    config = make_config({"steps": 3, "eval_every": 2, "eval_generation": [task]})
    [result] = run_experiment(config, str(config.output), Dist(), CPU)
    out = Path(result.output)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    scored = [r["step"] for r in records if "generation/qa/contains" in r]
    assert scored == [0, 2, 3]
    assert "heldout_loss/domain" in records[0]  # beside the baseline held-out loss
    quarantine = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert [(q["source"], q["line"]) for q in quarantine] == [("qa", 2)]
    # and the last evaluation's scores are in final/, beside the held-out loss, and the lineage
    last = {k.removeprefix("generation/qa/"): v for k, v in records[-1].items() if "/qa/" in k}
    expected = {"step": 3, "tasks": {"qa": {"items": 1, **last}}}
    assert json.loads((out / "final" / "generation_eval.json").read_text()) == expected
    lineage = json.loads((out / "final" / "lineage.json").read_text())
    assert lineage["evaluation"]["generation"] == expected


def test_a_missing_items_file_is_a_check_error(
    make_config: MakeConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope.jsonl")
    config = make_config({"eval_generation": [{"name": "qa", "path": missing}]})
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json")), encoding="utf-8")
    assert main(["--config", str(path), "--check"]) == 2
    assert f"stages.0.eval_generation.0.path = '{missing}': the items file does not exist" in (
        capsys.readouterr().err
    )


class _Recorded:
    """A tokenizer that keeps the prompts it is given."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, text: str, add_special_tokens: bool) -> dict[str, list[int]]:
        self.prompts.append(text)
        return {"input_ids": [1]}


def test_mcq_items_are_asked_and_parsed_as_dapt_eval_does(tmp_path: Path) -> None:
    bad = {"id": "x", "question": "q", "answer": "a", "distractors": {"near_miss": "b"}}
    path = write_jsonl(tmp_path / "mcq.jsonl", [*MCQ_ROWS, bad])
    config = GenerationEvalConfig(
        name="mcq", path=str(path), format="mcq", chat=False, shuffle_seed=7
    )
    tokenizer = _Recorded()
    task = load_task(config, tokenizer)
    # the exact text dapt-eval sends, choices shuffled per item by the seed, and its letter
    items = [McqItem.model_validate(row) for row in MCQ_ROWS]
    prompt = DEFAULT_PROMPTS[Task.MCQ]
    assert tokenizer.prompts == [unit_prompt(None, i, prompt, 7) for i in items]  # type: ignore[arg-type]
    letters = [dapt_eval_mcq.shuffle_choices(i, 7).answer_letter for i in items]
    assert [i.letter for i in task.items] == letters and len(set(letters)) > 1
    assert [(q.line, q.reason[:11]) for q in task.quarantined] == [(5, "distractors")]
    # a reply is its letter by dapt-eval's strict parse (the same pattern, its vectors) ...
    assert MCQ_LETTER.pattern == DAPT_EVAL_MCQ_LETTER.pattern
    for case in json.loads(LETTER_VECTORS.read_text(encoding="utf-8"))["cases"]:
        assert parse_letter(case["reply"]) == case["letter"], case["name"]
        assert dapt_eval_mcq.parse_letter(case["reply"]) == case["letter"], case["name"]
    # ... or the answer's text
    assert score_choice("(b)", "B", "publish the draft")
    assert score_choice("Publish the draft.", "B", "publish the draft")
    assert not score_choice("A", "B", "publish the draft")
    assert not score_choice("B: publish", "B", "publish the draft")


def test_mcq_scores_are_an_accuracy(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fraction of items answered right: the model's reply is fixed here (the random tiny
    model answers nothing right; its word-level vocabulary has no letters): the first item's
    answer text, then a distractor's words for the second, so the accuracy is 1/2."""
    path = write_jsonl(tmp_path / "mcq.jsonl", MCQ_ROWS[:2])
    config = GenerationEvalConfig(name="mcq", path=str(path), format="mcq", max_new_tokens=2)
    tokenizer = load_tokenizer(model_dir)
    task = load_task(config, tokenizer)
    replies = iter([task.items[0].reference, "the draft"])
    monkeypatch.setattr(
        generation_eval,
        "greedy_answer",
        lambda *args, **kwargs: tokenizer.encode(next(replies), add_special_tokens=False),
    )
    model = load_base(model_dir, CPU).eval()
    scores = evaluate_generation(model, tokenizer, [task], Dist(), CPU, autocast=False)
    assert scores == {"generation/mcq/accuracy": 0.5}
