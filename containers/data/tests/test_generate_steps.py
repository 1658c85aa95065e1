"""The synthesize and instructions steps: config, pipeline, resume, CLI, and the trainer reading
their output back through the manifest."""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from dapt_eval.benchmark import build_benchmark
from dapt_eval.providers import DecodingParams, Provider
from dapt_eval.providers.base import Generation, Oracle, Usage
from dapt_trainer.config import SourceConfig as TrainerSource
from dapt_trainer.data.readers import read_source
from moto import mock_aws

from dapt_data.cli import batch_settings, main
from dapt_data.config import ConfigError, load_config
from dapt_data.generated import CachedTeacher
from dapt_data.manifest import read_manifest
from dapt_data.pipeline import StepError, run_all, run_instructions, run_synthesize
from dapt_data.synthetic import SourceDocument, SynthesisConfig, generate_synthetic
from pipeline_fixtures import english_paragraph, write_public_corpus


class ScriptedTeacher(Provider):
    """Answers every synthesis prompt with one grounded item about the passage; counts calls."""

    name = "scripted"
    model_id = "teacher-test"
    revision = "1"

    def __init__(self) -> None:
        self.calls = 0
        self.prompts: list[str] = []
        self.lock = threading.Lock()  # synthesis calls from several threads

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        with self.lock:
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


def test_a_teacher_whose_every_output_is_quarantined_fails_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the offline provider from the config, which answers with plain text, not JSON
    path = _write_fixture(tmp_path)
    config = load_config(path)
    run_all(config.model_copy(update={"synthesize": None, "instructions": None}))
    # WHEN synthesizing with it, THEN the step fails naming the count and the teacher
    with pytest.raises(StepError, match=r"all 6 teacher outputs were quarantined"):
        run_synthesize(config)
    # AND every generation is quarantined with its reason, and no marker says it is done
    lines = (tmp_path / "out" / "synthesize" / "quarantine.jsonl").read_text().splitlines()
    assert len(lines) == 6
    assert all(json.loads(x)["reason"] == "invalid_json" for x in lines)
    assert all(json.loads(x)["source_id"].startswith("kb:") for x in lines)
    assert not (tmp_path / "out" / "synthesize" / "_step.json").exists()
    # AND the command exits 1
    assert main(["synthesize", "--config", str(path)]) == 1
    assert "teacher outputs were quarantined" in capsys.readouterr().err


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
    assert "synthesize.sources.0 = 'nope': not a source name" in message
    assert "instructions.output = 'public': already a source name" in message
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


def _write_labelled_csv(tmp_path: Path, rows: list[tuple[str, str]], **instructions: Any) -> Path:
    """A pipeline whose only labelled data is a CSV source the pipeline ingests itself."""
    with (tmp_path / "tickets.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["message", "intent"])
        writer.writerows(rows)
    write_public_corpus(tmp_path / "public.jsonl", docs=10)
    data: dict[str, Any] = {
        "output": "out",
        "sources": [
            {
                "name": "tickets",
                "path": "tickets.csv",
                "format": "csv",
                "text_field": "message",
                "label_field": "intent",
            },
            {"name": "public", "path": "public.jsonl", "format": "jsonl", "origin": "public"},
        ],
        "clean": {"min_chars": 10, "languages": []},
        "manifest": {"name": "mix", "target_domain_share": None},
        "instructions": {"sources": [{"source": "tickets", "task": "intent"}], **instructions},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


TICKETS = [
    ("Why was my card charged twice this month? Mail me at jane.doe@example.com", "billing"),
    ("How do I connect my own domain to the site I built?", "domain"),
    ("Please refund the last invoice, I cancelled the plan already.", "billing"),
]


def test_a_labelled_pipeline_source_becomes_instruction_rows_the_trainer_reads(
    tmp_path: Path,
) -> None:
    # GIVEN a labelled CSV source (one message holds an e-mail address) and two phrasings each
    config = load_config(_write_labelled_csv(tmp_path, TICKETS, paraphrases=2))
    # WHEN the whole pipeline runs
    results = run_all(config)
    # THEN the instructions step made rows from the redacted records, nothing quarantined
    step = results[-2]
    assert step.step == "instructions"
    assert step.counts["quarantined"] == {}
    assert step.counts["generated_from_sources"] == {"tickets": 6}
    assert step.counts["out"] == 6 - step.counts["repeated_phrasing"] >= 3
    uri = str(tmp_path / "out" / "manifests" / "mix" / "v1.json")
    rows = read_source(TrainerSource(name="instructions", kind="instruction", manifest=uri))
    assert rows.quarantined == []
    assert len(rows.rows) == step.counts["out"]
    assert {r["source_id"].split(":")[0] for r in rows.rows} == {"tickets"}
    assert {r["response"] for r in rows.rows} == {"billing", "domain"}
    prompts = [r["prompt"] for r in rows.rows]
    assert all("billing, domain" in p for p in prompts)  # the labels seen, sorted
    assert not any("jane.doe@example.com" in p for p in prompts)
    assert any("Why was my card charged twice" in p for p in prompts)
    # AND a rerun is skipped with the same output; a changed seed reruns and rephrases
    assert run_all(config)[-2].skipped
    assert config.instructions is not None
    reseeded = config.model_copy(
        update={"instructions": config.instructions.model_copy(update={"seed": 5})}
    )
    again = run_instructions(reseeded)
    assert not again.skipped
    assert again.counts["generated_from_sources"] == {"tickets": 6}


def test_records_without_a_listed_label_are_quarantined_with_the_reason(tmp_path: Path) -> None:
    # GIVEN a source with an empty label and a label outside the configured list
    rows = [*TICKETS, ("My site shows a blank page since this morning.", "")]
    path = _write_labelled_csv(tmp_path, rows)
    data = yaml.safe_load(path.read_text())
    data["instructions"]["sources"][0]["labels"] = ["billing", "refund"]
    path.write_text(yaml.safe_dump(data))
    # WHEN the pipeline runs
    step = run_all(load_config(path))[-2]
    # THEN only the billing records become rows; the others are quarantined and counted
    assert step.counts["out"] == 2
    assert step.counts["quarantined"] == {"missing_label": 1, "unknown_label": 1}
    quarantine = (tmp_path / "out" / "instructions" / "quarantine.jsonl").read_text()
    reasons = {json.loads(x)["reason"]: json.loads(x) for x in quarantine.splitlines()}
    assert "'domain'" in reasons["unknown_label"]["detail"]
    assert reasons["unknown_label"]["source_id"].startswith("tickets:")
    rows_file = (tmp_path / "out" / "instructions" / "records.jsonl").read_text()
    assert all("billing, refund" in json.loads(x)["prompt"] for x in rows_file.splitlines())


def test_instructions_from_sources_need_the_redacted_records(tmp_path: Path) -> None:
    config = load_config(_write_labelled_csv(tmp_path, TICKETS))
    with pytest.raises(FileNotFoundError, match="run the 'redact' step"):
        run_instructions(config)


def test_instruction_source_config_errors_are_reported_together(tmp_path: Path) -> None:
    path = _write_labelled_csv(tmp_path, TICKETS)
    data = yaml.safe_load(path.read_text())
    data["instructions"]["sources"] = [
        {"source": "nope", "task": "intent"},
        {"source": "public", "task": "summarization"},
        {"source": "tickets", "task": "poetry"},
    ]
    path.write_text(yaml.safe_dump(data))
    # the schema error (unknown task) comes first ...
    with pytest.raises(ConfigError, match=r"instructions\.sources\.2\.task"):
        load_config(path)
    # ... then the cross-key rules, all in one message
    data["instructions"]["sources"][2]["task"] = "intent"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "instructions.sources.0.source = 'nope': not a source name" in message
    assert "instructions.sources.1.source = 'public': not a labelled dataset" in message
    assert "instructions.sources.1.task = 'summarization': not a labelled task" in message
    # and a section with neither sets nor sources is refused
    data["instructions"] = {"seed": 1}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"instructions = .*: give at least one of 'sets' or"):
        load_config(path)


def test_an_output_outside_the_runs_writable_prefix_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run's data-prep job may write only under runs/<run>/ (its role says so; the job sets
    # DAPT_WRITE_PREFIX): a config pointing elsewhere fails at load, not at the first write.
    monkeypatch.setenv("DAPT_WRITE_PREFIX", "runs/lora7b/")
    inside = "s3://lake-curated/runs/lora7b/kb"
    assert load_config(_write_fixture(tmp_path, output=inside)).output == inside
    other = tmp_path / "other"
    other.mkdir()
    refused = r"output = 's3://lake-curated/shared/kb': outside 'runs/lora7b/'"
    with pytest.raises(ConfigError, match=refused):
        load_config(_write_fixture(other, output="s3://lake-curated/shared/kb"))


@pytest.mark.parametrize("spelling", ["symlink", "absolute via a symlinked parent", "copy"])
def test_a_labelled_set_that_is_a_benchmark_is_refused_however_it_is_spelled(
    tmp_path: Path, spelling: str
) -> None:
    # GIVEN the labelled set also listed as a benchmark, spelled another way
    root = tmp_path / "real"
    root.mkdir()
    path = _write_fixture(root)
    if spelling == "symlink":
        (root / "eval").symlink_to(root / "intents")
        bench = "eval"
    elif spelling == "copy":
        shutil.copytree(root / "intents", root / "eval-copy")
        bench = "eval-copy"
    else:
        (tmp_path / "link").symlink_to(root)
        bench = str(tmp_path / "link" / "intents")
    data = yaml.safe_load(path.read_text())
    data["decontaminate"] = {"benchmarks": [bench]}
    path.write_text(yaml.safe_dump(data))
    # WHEN the config is loaded, THEN it is refused, naming both keys
    with pytest.raises(ConfigError, match=r"instructions.sets.0.path = .*decontaminate.benchmarks"):
        load_config(path)


def test_a_source_reading_a_benchmarks_items_is_refused(tmp_path: Path) -> None:
    source = {"name": "evalcopy", "path": "intents/items.jsonl", "format": "jsonl"}
    path = _write_fixture(tmp_path, decontaminate={"benchmarks": ["intents"]}, instructions=None)
    data = yaml.safe_load(path.read_text())
    data["sources"].append(source)
    del data["instructions"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(
        ConfigError, match=r"sources.2.path = '\S*intents/items.jsonl': reads the items"
    ):
        load_config(path)


class EchoingTeacher(ScriptedTeacher):
    """Asks a benchmark's question back about every passage (a teacher remembering it)."""

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        generation = super().generate(prompt, params, oracle)
        item = json.loads(generation.text)["items"][0]
        item["question"] = "Hey, how can I connect my own domain?"
        text = json.dumps({"items": [item]})
        return Generation(text, Usage(), 0.0, self.name, self.model_id, self.revision)


def test_synthetic_rows_are_decontaminated(tmp_path: Path) -> None:
    # GIVEN a QA benchmark asking what the teacher will write back, lightly reworded
    bench = tmp_path / "qa"
    bench.mkdir()
    manifest = {
        "name": "tiny-qa",
        "version": "1",
        "task": "qa",
        "prompt": {"id": "p", "version": "1", "template": "{question}"},
    }
    (bench / "benchmark.json").write_text(json.dumps(manifest))
    item = {"id": "q1", "question": "How do I connect my own domain?", "reference_answer": "."}
    (bench / "items.jsonl").write_text(json.dumps(item) + "\n")
    build_benchmark(bench)
    config = load_config(_write_fixture(tmp_path, decontaminate={"benchmarks": ["qa"]}))
    config = config.model_copy(update={"instructions": None})
    # WHEN the pipeline runs
    result = run_all(config, EchoingTeacher())[-2]
    # THEN every synthetic row asking it (one per task, the repeats being duplicates) is
    # dropped and recorded, none kept
    assert result.step == "synthesize"
    assert result.counts["out"] == 0
    assert result.counts["dropped"] == {"benchmark_overlap": 2}
    dropped = (tmp_path / "out" / "synthesize" / "dropped.jsonl").read_text().splitlines()
    assert {json.loads(x)["matched"] for x in dropped} == {"tiny-qa@1/q1"}


def test_the_teacher_cache_appends_instead_of_rewriting(tmp_path: Path) -> None:
    # GIVEN a cached teacher flushing every 5 calls, after its first flush
    cache = tmp_path / "cache.jsonl"
    teacher = CachedTeacher(ScriptedTeacher(), str(cache), flush_every=5)
    params = SynthesisConfig().decoding
    prompts = [f"Passage:\nSentence number {n} is here." for n in range(23)]
    for prompt in prompts[:5]:
        teacher.generate(prompt, params)
    first = cache.read_bytes()
    # WHEN a line is added behind its back and 18 more calls are made
    sentinel = b'{"key": "written-by-someone-else", "text": "x"}\n'
    cache.write_bytes(first + sentinel)
    for prompt in prompts[5:]:
        teacher.generate(prompt, params)
    teacher.flush()
    # THEN the earlier bytes were never rewritten: the file only grew at its end
    assert cache.read_bytes().startswith(first + sentinel)
    assert len(cache.read_bytes().splitlines()) == 24
    # AND a new session replays all 23 without calling the teacher
    again = CachedTeacher(ScriptedTeacher(), str(cache))
    for prompt in prompts:
        again.generate(prompt, params)
    assert (again.hits, again.calls) == (23, 0)


@pytest.mark.usefixtures("s3_bucket")
def test_the_teacher_cache_on_s3_is_written_in_parts() -> None:
    uri = "s3://lake/run/synthesize/teacher_cache.jsonl"
    params = SynthesisConfig().decoding
    first = CachedTeacher(ScriptedTeacher(), uri, flush_every=2)
    for n in range(3):
        first.generate(f"Passage:\nSentence {n} here.", params)
    first.flush()
    # a retried step adds its own part and replays the earlier ones
    second = CachedTeacher(ScriptedTeacher(), uri, flush_every=2)
    for n in range(4):
        second.generate(f"Passage:\nSentence {n} here.", params)
    second.flush()
    assert (second.hits, second.calls) == (3, 1)
    client = boto3.client("s3", region_name="us-east-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="lake")["Contents"]]
    assert keys == [f"run/synthesize/teacher_cache.jsonl.parts/{n:06d}" for n in range(3)]
    third = CachedTeacher(ScriptedTeacher(), uri)
    assert len(third.cache) == 4


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="lake")
        yield


class SlowTeacher(ScriptedTeacher):
    """ScriptedTeacher taking a while per call, recording how many calls overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0

    def generate(
        self, prompt: str, params: DecodingParams, oracle: Oracle | None = None
    ) -> Generation:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.05)
        try:
            return super().generate(prompt, params, oracle)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_teacher_calls_run_concurrently_with_the_same_output(tmp_path: Path) -> None:
    # GIVEN 6 documents (12 calls) and a slow teacher, one call at a time and 4 at a time
    rng = random.Random(4)
    documents = [SourceDocument(source_id=f"kb:{i}", text=english_paragraph(rng)) for i in range(6)]
    outputs = []
    for concurrency in (1, 4):
        teacher = SlowTeacher()
        settings = SynthesisConfig(questions_per_passage=1, concurrency=concurrency)
        examples, _, report = generate_synthetic(documents, teacher, settings)
        outputs.append(([e.model_dump() for e in examples], report))
        assert teacher.most_in_flight == concurrency
    # THEN the examples, their order and the report are identical
    assert outputs[0] == outputs[1]
    assert len(outputs[0][0]) == 12
