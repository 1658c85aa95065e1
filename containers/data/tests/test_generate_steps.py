"""The synthesize and instructions steps: config, pipeline, resume, CLI, and the trainer reading
their output back through the manifest."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dapt_eval.providers import DecodingParams, Provider
from dapt_eval.providers.base import Generation, Oracle, Usage
from dapt_trainer.config import SourceConfig as TrainerSource
from dapt_trainer.data.readers import read_source

from dapt_data.cli import batch_settings, main
from dapt_data.config import ConfigError, load_config
from dapt_data.manifest import read_manifest
from dapt_data.pipeline import run_all, run_synthesize
from pipeline_fixtures import english_paragraph, write_public_corpus


class ScriptedTeacher(Provider):
    """Answers every synthesis prompt with one grounded item about the passage; counts calls."""

    name = "scripted"
    model_id = "teacher-test"
    revision = "1"

    def __init__(self) -> None:
        self.calls = 0
        self.prompts: list[str] = []

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        self.calls += 1
        self.prompts.append(prompt)
        passage = prompt.split("Passage:\n", 1)[1]
        first = re.split(r"(?<=\.)\s", passage, maxsplit=1)[0]
        item = {"question": f"What happened: {first[:-1].lower()}?", "answer": first}
        text = json.dumps({"items": [item]})
        return Generation(text, Usage(), 0.0, self.name, self.model_id, self.revision)


def _write_fixture(tmp_path: Path, **overrides: Any) -> Path:
    rng = random.Random(3)
    kb = tmp_path / "kb"
    kb.mkdir()
    for index in range(3):
        body = f"# Article {index}\n\n{english_paragraph(rng)}\n\nWrite to jane.doe@example.com."
        (kb / f"a{index}.md").write_text(body, encoding="utf-8")
    labelled = tmp_path / "intents"
    labelled.mkdir()
    (labelled / "benchmark.json").write_text(
        json.dumps({"name": "tiny-intent", "labels": ["billing", "domain"]})
    )
    items = [
        {"id": "i1", "text": "Why was my card charged twice?", "label": "billing"},
        {"id": "i2", "text": "How do I connect my own domain?", "label": "domain"},
        {"id": "i3", "text": "Refund the last invoice please.", "label": "billing"},
    ]
    (labelled / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    write_public_corpus(tmp_path / "public.jsonl", docs=10)
    data: dict[str, Any] = {
        "output": "out",
        "sources": [
            {"name": "kb", "path": "kb", "format": "markdown"},
            {"name": "public", "path": "public.jsonl", "format": "jsonl", "origin": "public"},
        ],
        "manifest": {"name": "mix", "target_domain_share": None},
        "synthesize": {
            "teacher": {"kind": "offline", "model_id": "teacher"},
            "questions_per_passage": 1,
            "min_passage_chars": 50,
        },
        "instructions": {"sets": [{"path": "intents", "task": "intent"}], "paraphrases": 3},
        **overrides,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_pipeline_feeds_synthetic_and_instruction_sources_to_the_trainer(tmp_path: Path) -> None:
    # GIVEN KB articles with an e-mail address, a labelled set and a scripted teacher
    config = load_config(_write_fixture(tmp_path))
    teacher = ScriptedTeacher()
    # WHEN the whole pipeline runs
    results = run_all(config, teacher)
    # THEN both generating steps ran, after redact and before the manifest
    assert [r.step for r in results][-3:] == ["synthesize", "instructions", "manifest"]
    synth = results[-3].counts
    assert synth["documents"] == 3
    assert teacher.calls == synth["teacher_calls"] == 6  # 3 passages x 2 tasks
    assert synth["out"] == 6
    assert synth["report"]["quarantined"] == {}
    # the teacher never saw PII: it read the redacted records
    assert not any("jane.doe@example.com" in p for p in teacher.prompts)
    assert sum("Write to" in p for p in teacher.prompts) == 6
    assert results[-2].counts["out"] >= 3
    # the manifest lists both as instruction sources of domain origin
    manifest = read_manifest(str(tmp_path / "out" / "manifests" / "mix" / "v1.json"))
    kinds = {s.name: (s.kind, s.origin.value) for s in manifest.sources}
    assert kinds["synthetic"] == ("instruction", "domain")
    assert kinds["instructions"] == ("instruction", "domain")
    # and the trainer reads every row back without quarantining any
    uri = str(tmp_path / "out" / "manifests" / "mix" / "v1.json")
    for name in ("synthetic", "instructions"):
        rows = read_source(TrainerSource(name=name, kind="instruction", manifest=uri))
        assert rows.quarantined == []
        expected = next(s.records for s in manifest.sources if s.name == name)
        assert len(rows.rows) == expected > 0
        assert all(r["source_id"] for r in rows.rows)
    synthetic_rows = read_source(
        TrainerSource(name="synthetic", kind="instruction", manifest=uri)
    ).rows
    assert {r["source_id"].split(":")[0] for r in synthetic_rows} == {"kb"}


def test_resume_makes_no_second_teacher_call(tmp_path: Path) -> None:
    # GIVEN a finished run
    config = load_config(_write_fixture(tmp_path))
    teacher = ScriptedTeacher()
    first = run_all(config, teacher)
    calls = teacher.calls
    # WHEN running again
    second = run_all(config, teacher)
    # THEN every step is skipped, counts are unchanged and the teacher is not called
    assert all(r.skipped for r in second)
    assert teacher.calls == calls
    assert [r.counts for r in second[:-1]] == [r.counts for r in first[:-1]]
    # WHEN the synthesize step crashed before its marker (the teacher cache was written)
    (tmp_path / "out" / "synthesize" / "_step.json").unlink()
    again = run_synthesize(config, teacher)
    # THEN it reruns from the cache with zero teacher calls and the same examples
    assert not again.skipped
    assert teacher.calls == calls
    assert again.counts["cache_hits"] == calls
    assert again.counts["out"] == first[-3].counts["out"]


def test_offline_teacher_output_is_quarantined_not_dropped(tmp_path: Path) -> None:
    # GIVEN the offline provider from the config, which answers with plain text, not JSON
    config = load_config(_write_fixture(tmp_path))
    run_all(config.model_copy(update={"synthesize": None, "instructions": None}))
    # WHEN synthesizing with it
    result = run_synthesize(config)
    # THEN every generation is quarantined with its reason, in the file and the counts
    assert result.counts["out"] == 0
    assert result.counts["report"]["quarantined"] == {"invalid_json": 6}
    lines = (tmp_path / "out" / "synthesize" / "quarantine.jsonl").read_text().splitlines()
    assert len(lines) == 6
    assert all(json.loads(x)["source_id"].startswith("kb:") for x in lines)


def test_max_examples_keeps_the_first_and_records_the_rest(tmp_path: Path) -> None:
    config = load_config(_write_fixture(tmp_path))
    assert config.synthesize is not None
    config = config.model_copy(
        update={"synthesize": config.synthesize.model_copy(update={"max_examples": 4})}
    )
    result = run_all(config, ScriptedTeacher())[-3]
    assert result.counts["out"] == 4
    assert result.counts["dropped"] == {"max_examples": 2}
    dropped = (tmp_path / "out" / "synthesize" / "dropped.jsonl").read_text().splitlines()
    assert [json.loads(x)["reason"] for x in dropped] == ["max_examples"] * 2


def test_a_broken_labelled_set_is_quarantined(tmp_path: Path) -> None:
    config = load_config(_write_fixture(tmp_path))
    (tmp_path / "intents" / "items.jsonl").write_text('{"id": "x"}\n')
    result = run_all(config, ScriptedTeacher())[-2]
    assert result.counts["out"] == 0
    assert result.counts["quarantined"] == {"bad_set": 1}
    row = json.loads((tmp_path / "out" / "instructions" / "quarantine.jsonl").read_text())
    assert "line 1" in row["detail"]


def test_config_errors_name_the_keys(tmp_path: Path) -> None:
    path = _write_fixture(
        tmp_path,
        synthesize={
            "teacher": {"kind": "openai", "model_id": "t"},
            "sources": ["nope"],
            "tasks": ["essay"],
            "output": "kb",
        },
        instructions={"sets": [{"path": "intents", "task": "poetry"}], "paraphrases": 0},
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    for key in (
        "synthesize.teacher",
        "synthesize.tasks.0",
        "instructions.sets.0.task",
        "instructions.paraphrases",
    ):
        assert key in message
    # cross-key rules, reported together once the schema is valid
    other = tmp_path / "cross"
    other.mkdir()
    path = _write_fixture(
        other,
        synthesize={"teacher": {"kind": "offline", "model_id": "t"}, "sources": ["nope"]},
        instructions={"sets": [{"path": "intents", "task": "intent"}], "output": "public"},
        decontaminate={"benchmarks": ["intents"]},
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "synthesize.sources.0: 'nope'" in message
    assert "instructions.output: 'public'" in message
    assert "instructions.sets.0.path" in message


def test_cli_runs_the_new_steps_and_batch_accepts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_fixture(tmp_path)
    data = yaml.safe_load(path.read_text())
    # the instructions step needs no earlier step
    assert main(["instructions", "--config", str(path)]) == 0
    assert "instructions: ran" in capsys.readouterr().out
    # a step without its section is a config error (exit 2) naming the section
    del data["synthesize"]
    path.write_text(yaml.safe_dump(data))
    assert main(["synthesize", "--config", str(path)]) == 2
    assert "synthesize" in capsys.readouterr().err
    env = {"PIPELINE_CONFIG": "c.yaml", "STEPS": "redact,synthesize,instructions,manifest"}
    assert batch_settings(env)[2] == ["redact", "synthesize", "instructions", "manifest"]
