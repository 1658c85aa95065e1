"""The GPU batch job on CPU with a tiny random Llama and a tokenizer built here (no downloads)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
# Untyped constructors, used as Any so the module type-checks with or without the gpu extra.
LlamaConfig: Any = transformers.LlamaConfig
LlamaForCausalLM: Any = transformers.LlamaForCausalLM
PreTrainedTokenizerFast: Any = transformers.PreTrainedTokenizerFast

from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers  # noqa: E402

from conftest import BUCKET, MakeBenchmark, cls_row, mcq_row  # noqa: E402
from dapt_eval.batch.config import BatchConfig, BatchConfigError  # noqa: E402
from dapt_eval.batch.engine import HFEngine  # noqa: E402
from dapt_eval.batch.files import content_revision  # noqa: E402
from dapt_eval.batch.job import run_batch_job  # noqa: E402
from dapt_eval.benchmark import load_benchmark  # noqa: E402
from dapt_eval.cli import main  # noqa: E402
from dapt_eval.providers.base import DecodingParams  # noqa: E402
from dapt_eval.results import ItemResult, ResultStore  # noqa: E402
from dapt_eval.runner import unit_prompt  # noqa: E402
from dapt_eval.s3store import S3ResultStore  # noqa: E402
from dapt_eval.schemas import Task  # noqa: E402

CORPUS = [
    "Answer with the letter of the correct choice .",
    "Question : Which value is correct for case 1 ?",
    "A . value 1 B . value 2 C . banana D . the moon",
    "Classify the message into one of billing , domains , editor .",
    "message 1 message 2 Label : billing domains editor Answer :",
]
LABELS = ["billing", "domains", "editor"]
FAST = DecodingParams(max_tokens=6)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (hidden 32) with random weights and a word-level tokenizer, saved."""
    specials = ["[UNK]", "[PAD]", "<s>", "</s>"]
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=specials))
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", raw.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="<s>",
        eos_token="</s>",
    )
    config = LlamaConfig(
        vocab_size=raw.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=raw.token_to_id("<s>"),
        eos_token_id=raw.token_to_id("</s>"),
        pad_token_id=raw.token_to_id("[PAD]"),
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    root = tmp_path_factory.mktemp("models") / "tiny-llama"
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> HFEngine:
    return HFEngine.load(model_dir, device="cpu", batch_size=4)


def hand_loglik(engine: HFEngine, context: str, continuation: str) -> float:
    """log p(continuation | context) from one unpadded forward pass, summed token by token."""
    tok = engine.tokenizer
    context_ids = tok(context).input_ids
    whole = tok(context + continuation).input_ids
    assert whole[: len(context_ids)] == context_ids
    with torch.no_grad():
        logits = engine.model(input_ids=torch.tensor([whole])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return sum(float(logprobs[t - 1, whole[t]]) for t in range(len(context_ids), len(whole)))


def test_loglik_equals_a_hand_computed_sum_despite_padding(engine: HFEngine) -> None:
    requests = [
        ("Question : Which value is correct for case 1 ? Answer :", " A"),
        ("Answer :", " banana the moon"),
        ("Classify the message into one of billing , domains , editor . Label :", " editor"),
    ]
    scores = engine.loglik(requests)  # one padded batch of three lengths
    for (context, continuation), score in zip(requests, scores, strict=True):
        assert score == pytest.approx(hand_loglik(engine, context, continuation), abs=1e-4)
    normalized = engine.loglik(requests[1:2], normalize="tokens")[0]
    assert normalized == pytest.approx(scores[1] / 3, abs=1e-5)  # 3 continuation tokens


def test_choices_of_one_context_share_its_cache_and_score_the_same(engine: HFEngine) -> None:
    # GIVEN two contexts of different lengths, each with choices of different lengths
    long_context = "Question : Which value is correct for case 1 ? " * 3 + "Answer :"
    requests = [
        (long_context, " value 1"),
        ("Answer :", " banana the moon"),
        (long_context, " banana"),
        ("Answer :", " A"),
        (long_context, " the moon value 2 banana"),
    ]
    # WHEN they are scored together (each context runs once, its cache copied per choice)
    scores = engine.loglik(requests)
    # THEN every score is the one a single unpadded pass gives
    for (context, continuation), score in zip(requests, scores, strict=True):
        assert score == pytest.approx(hand_loglik(engine, context, continuation), abs=1e-4)


def test_batched_generation_equals_unbatched(model_dir: Path, engine: HFEngine) -> None:
    prompts = [
        "Answer :",
        "Question : Which value is correct for case 1 ? Answer :",
        "message 1 Label :",
        "A . value 1 B . value 2 C . banana D . the moon Answer :",
        "billing",
    ]
    batched = engine.generate(prompts, max_new_tokens=6)
    single = HFEngine.load(model_dir, device="cpu", batch_size=1).generate(prompts, 6)
    assert batched == single
    assert all(c.output_tokens <= 6 for c in batched)
    assert batched[0].input_tokens == 3  # <s> Answer :


def test_mcq_loglik_job_picks_the_highest_loglik_and_resumes(
    make_benchmark: MakeBenchmark, model_dir: Path, engine: HFEngine, tmp_path: Path
) -> None:
    # GIVEN an MCQ benchmark and the tiny model, scored by log-likelihood of " A".." D"
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(5)])
    out = tmp_path / "run"
    config = BatchConfig(
        model_uri=str(model_dir), benchmark_uri=str(root), out_dir=out, mode="loglik", decoding=FAST
    )

    # WHEN the job runs twice
    first = run_batch_job(config)
    second = run_batch_job(config)

    # THEN every record is a valid ItemResult whose prediction is the arg-max loglik ...
    records = list(ResultStore(out))
    assert len(records) == 5 and first.summary.ok == 5
    assert first.identity == {
        "provider": "local-hf",
        "model_id": "tiny-llama",
        "revision": content_revision(model_dir),
    }
    for record in records:
        ItemResult.model_validate_json(record.model_dump_json())
        logliks = record.details["logliks"]
        assert record.prediction == "ABCD"[logliks.index(max(logliks))]
        assert record.correct == (record.prediction == record.details["answer_letter"])
    # ... equal to a hand computation from the logits for one item ...
    benchmark = load_benchmark(root)
    item = next(i for i in benchmark.items if i.id == records[0].item_id)
    prompt = unit_prompt(benchmark, item, benchmark.manifest.prompt, 0)
    expected = [hand_loglik(engine, prompt, f" {letter}") for letter in "ABCD"]
    assert records[0].details["logliks"] == pytest.approx(expected, abs=1e-4)
    # ... and the second run computes nothing
    assert second.summary.skipped == 5 and second.summary.total == 5
    assert json.loads((out / "report.json").read_text())["mode"] == "loglik"


def test_cli_batch_generates_scores_labels_and_skips_finished_units(
    make_benchmark: MakeBenchmark,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = make_benchmark(
        Task.CLASSIFICATION, [cls_row(i, LABELS[i % 3]) for i in range(4)], labels=LABELS
    )
    out = tmp_path / "cls"
    monkeypatch.setenv("MODEL_URI", str(model_dir))  # env vars configure the job ...
    monkeypatch.setenv("MAX_TOKENS", "4")
    argv = [
        "batch",
        "--benchmark",
        str(root),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]  # ... flags too
    assert main(argv) == 0
    assert "completion rate: 100.0% (4/4 units finished)" in capsys.readouterr().out
    records = list(ResultStore(out))
    assert {r.model.provider for r in records} == {"local-hf"}
    assert {r.mode for r in records} == {"label"} and {
        r.decoding["max_tokens"] for r in records
    } == {4}
    # a random model does not answer with a label: unparseable, counted, never guessed
    assert all(r.status in ("ok", "unparseable") for r in records)

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("a finished unit was computed again")

    monkeypatch.setattr(HFEngine, "generate", refuse)
    assert main(argv) == 0
    assert '"skipped_cached": 4' in capsys.readouterr().out


def test_batch_job_reads_the_model_from_s3_and_writes_records_to_s3(
    s3: Any, make_benchmark: MakeBenchmark, model_dir: Path, tmp_path: Path
) -> None:
    s3.create_bucket(Bucket="models")
    for path in model_dir.rglob("*"):
        if path.is_file():
            key = f"checkpoints/tiny-llama/{path.relative_to(model_dir).as_posix()}"
            s3.upload_file(str(path), "models", key)
    root = make_benchmark(Task.MCQ, [mcq_row(i) for i in range(3)])
    config = BatchConfig(
        model_uri="s3://models/checkpoints/tiny-llama/",
        benchmark_uri=str(root),
        eval_bucket=BUCKET,
        run_id="batch-1",
        scratch_dir=tmp_path / "scratch",
        decoding=FAST,
    )
    outcome = run_batch_job(config, s3_client=s3)
    assert outcome.identity["revision"] == content_revision(model_dir)  # same bytes, same hash
    assert outcome.identity["model_id"] == "tiny-llama" and outcome.summary.total == 3
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="results/items/")["Contents"]
    store = S3ResultStore(BUCKET, client=s3)
    keys = [obj["Key"].removeprefix("results/items/").removesuffix(".json") for obj in listed]
    assert all(store.is_finished(k) for k in keys) and len(keys) == 3


def test_batch_config_reports_every_problem() -> None:
    with pytest.raises(BatchConfigError) as caught:
        BatchConfig(
            model_uri="m",
            benchmark_uri="b",
            batch_size=0,
            decoding=DecodingParams(temperature=0.7),
            device="tpu",
        )
    assert caught.value.source == "<flags/env>"
    keys = [p.split(" = ")[0].split(": ")[0] for p in caught.value.problems]
    assert keys == [
        "--out (OUT_DIR)",
        "--batch-size (BATCH_SIZE)",
        "--temperature (TEMPERATURE)",
        "--device (DEVICE)",
    ]
    assert "--batch-size (BATCH_SIZE) = 0: must be >= 1" in caught.value.problems
    assert str(caught.value).startswith("Invalid batch job config '<flags/env>' (4 problem(s)):")


def test_engine_runs_hub_offline() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
