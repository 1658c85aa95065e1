"""Stops and resumes at the edges a real run meets: before the first step, during a periodic
checkpoint, after a crash, after the config changed, a checkpoint saved again; and LoRA
checkpoints. (FSDP2 checkpoints: test_fsdp.py.)"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.distributed.checkpoint.filesystem import FileSystemReader

from conftest import BUCKET, MakeConfig
from dapt_trainer import checkpoint
from dapt_trainer.checkpoint import ResumeError, latest_complete
from dapt_trainer.model import Dist
from dapt_trainer.recipe import StageRecipe, run_experiment

CPU = torch.device("cpu")
ONE = Dist()
STAGE: dict[str, Any] = {"steps": 5, "checkpoint": {"every_steps": 2, "keep_last": 1}}
OPTIMIZER = {"lr": 3e-3, "warmup_steps": 2, "schedule": "cosine", "weight_decay": 0.01}


@pytest.fixture
def uninterrupted(make_config: MakeConfig, tmp_path: Path) -> list[float]:
    """The losses of the stage run without a stop (the reference every resume must match)."""
    config = make_config(STAGE, output=str(tmp_path / "reference"))
    return run_experiment(config, str(config.output), ONE, CPU)[0].losses


def _checkpoints(config: Any) -> Path:
    return Path(str(config.output), "exp", "dapt", "checkpoints")


def _logged_steps(output: str) -> list[int]:
    """The steps of metrics.jsonl's lines, in order (step 0: the starting weights' held-out
    loss, measured before the first step)."""
    lines = (Path(output) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x)["step"] for x in lines]


def _scalars(events: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of ``tag`` in a TensorBoard event file or folder, as TensorBoard reads them."""
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def _events(out: str, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in out.splitlines() if x.startswith('{"event"')]
    return [e for e in lines if e["event"] == name]


def test_a_stop_before_the_first_step_writes_no_checkpoint(
    make_config: MakeConfig, uninterrupted: list[float]
) -> None:
    """A step-0 checkpoint would initialise the optimizer state (a fake step with lr 0): the
    resumed run's Adam bias correction would be one step ahead from step 2 on."""
    config = make_config(STAGE)
    first = run_experiment(config, str(config.output), ONE, CPU, stop=lambda s: s == 0)[0]
    assert first.status == "interrupted" and first.step == 0
    assert latest_complete(str(_checkpoints(config))) is None
    second = run_experiment(config, str(config.output), ONE, CPU)[0]
    assert second.losses == pytest.approx(uninterrupted, rel=1e-5)
    # The baseline held-out loss (step 0) was logged by both attempts, kept once.
    assert _logged_steps(second.output) == [0, 1, 2, 3, 4, 5]


def test_a_stop_during_a_periodic_checkpoint_saves_that_step_once(
    make_config: MakeConfig, uninterrupted: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a SIGTERM that arrives while step 2's periodic checkpoint is written (seen at the
    # next step boundary, still step 2)
    config = make_config(STAGE)
    first = run_experiment(config, str(config.output), ONE, CPU, stop=lambda s: s == 2)[0]
    # THEN step 2 is saved once, and the run resumes from it exactly
    assert first.status == "interrupted" and first.step == 2
    saves = _events(capsys.readouterr().out, "checkpoint")
    assert [e["step"] for e in saves] == [2]
    second = run_experiment(config, str(config.output), ONE, CPU)[0]
    assert first.losses + second.losses == pytest.approx(uninterrupted, rel=1e-5)


def test_resuming_after_the_config_changed_says_what_changed(
    make_config: MakeConfig, corpus_dir: Path, uninterrupted: list[float]
) -> None:
    config = make_config(STAGE)
    run_experiment(config, str(config.output), ONE, CPU, stop=lambda s: s == 3)
    # GIVEN a third source added and the seq_len changed before the resume
    data = config.stages[0].data.model_dump(mode="json")
    extra = {**data["sources"][1], "name": "more", "paths": [str(corpus_dir / "domain.jsonl")]}
    changed = make_config(
        {**STAGE, "data": {**data, "seq_len": 32, "sources": [*data["sources"], extra]}}
    )
    # THEN the resume names the checkpoint and each change (not "zip() argument 2 is longer")
    with pytest.raises(ResumeError) as err:
        run_experiment(changed, str(config.output), ONE, CPU)
    message = str(err.value)
    assert (
        f"checkpoint {_checkpoints(config) / 'step-00000003'} was saved with a different" in message
    )
    assert "stage dapt.data.seq_len: 64 -> 32" in message
    assert "stage dapt.data.sources.2.name: '(unset)' -> 'more'" in message
    # The batch may be split otherwise (another world size), but not grow: rows per step count.
    bigger = make_config({**STAGE, "micro_batch_size": 4})
    with pytest.raises(ResumeError, match=r"saved with 2 rows per step .*, this run has 4"):
        run_experiment(bigger, str(config.output), ONE, CPU)
    # How often it logs and checkpoints may change; the resumed losses are the same.
    relaxed = make_config({**STAGE, "log_every": 2, "checkpoint": {"every_steps": 100}})
    second = run_experiment(relaxed, str(config.output), ONE, CPU)[0]
    assert second.status == "complete"
    assert second.losses == pytest.approx(uninterrupted[3:], rel=1e-5)


def test_saving_a_step_again_never_leaves_it_without_a_complete_checkpoint(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(STAGE)
    run_experiment(config, str(config.output), ONE, CPU, stop=lambda s: s == 3)
    root = _checkpoints(config)
    recipe = StageRecipe(config, config.stages[0], str(config.output), ONE, CPU)
    recipe.setup()  # resumed at step 3
    # GIVEN a second save of step 3, killed if it deletes a complete checkpoint
    real_rmtree = shutil.rmtree

    def killed(path: Any, *args: Any, **kwargs: Any) -> None:
        if (Path(path) / checkpoint.MARKER).exists() and not Path(path).name.endswith(".partial"):
            (Path(path) / checkpoint.MARKER).unlink()
            raise KeyboardInterrupt("killed mid-delete")
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed)
    with contextlib.suppress(KeyboardInterrupt):  # the kill, before the fix
        recipe.save_checkpoint()
    # THEN a complete checkpoint of step 3 is still there
    assert latest_complete(str(root)) == str(root / "step-00000003")


def test_metrics_are_logged_once_per_step_after_a_crash_and_resume(
    make_config: MakeConfig, uninterrupted: list[float]
) -> None:
    # GIVEN a process that dies after step 3 (no SIGTERM checkpoint: OOM, torchrun's kill), its
    # last checkpoint at step 2
    config = make_config(STAGE)

    def crash(step: int) -> bool:
        if step == 3:
            raise KeyboardInterrupt("killed")
        return False

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, str(config.output), ONE, CPU, stop=crash)
    # WHEN it resumes from step 2 THEN metrics.jsonl has each step once, with the resumed losses
    second = run_experiment(config, str(config.output), ONE, CPU)[0]
    metrics = Path(second.output) / "metrics.jsonl"
    records = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in records if "loss" in r] == pytest.approx(uninterrupted, rel=1e-5)
    assert _logged_steps(second.output) == [0, 1, 2, 3, 4, 5]  # no second baseline on resume
    # ... and so has TensorBoard's copy, rebuilt from it (the dead process's step 3 is gone)
    logged = Path(second.output) / "tensorboard"
    assert len(list(logged.glob("events.out.tfevents.*"))) == 1
    scalars = _scalars(logged, "loss")
    assert [s for s, _ in scalars] == [1, 2, 3, 4, 5]
    assert [v for _, v in scalars] == pytest.approx([r["loss"] for r in records if "loss" in r])


def test_lora_resume_gives_the_uninterrupted_losses(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """A LoRA stage (with dropout, so the restored RNG matters) stopped at step 4 and resumed
    continues with the losses of the uninterrupted run; its checkpoint holds only the adapters."""
    stage: dict[str, Any] = {
        "steps": 7,
        "checkpoint": {"every_steps": 3, "keep_last": 2},
        "optimizer": OPTIMIZER,
        "method": {
            "name": "lora",
            "lora": {
                "rank": 4,
                "alpha": 8,
                "dropout": 0.1,
                "target_modules": ["q_proj", "v_proj", "down_proj"],
            },
        },
    }
    full = make_config(stage, output=str(tmp_path / "full"))
    expected = run_experiment(full, str(full.output), ONE, CPU)[0].losses
    assert len(expected) == 7

    stop_at = 4
    cut = make_config(stage, output=str(tmp_path / "cut"))
    [first] = run_experiment(cut, str(cut.output), ONE, CPU, stop=lambda s: s == stop_at)
    assert first.status == "interrupted" and first.step == stop_at
    ckpt = latest_complete(str(tmp_path / "cut" / "exp" / "dapt" / "checkpoints"))
    assert ckpt is not None and ckpt.endswith(f"step-{stop_at:08d}")
    saved = FileSystemReader(str(Path(ckpt) / "dcp")).read_metadata().state_dict_metadata
    weights = [k for k in saved if k.startswith("model.")]
    assert weights and all("lora_" in k for k in weights), weights

    [second] = run_experiment(cut, str(cut.output), ONE, CPU)
    assert second.status == "complete" and second.step == 7
    assert first.losses + second.losses == pytest.approx(expected, rel=1e-6)


def test_a_resume_on_a_new_instance_continues_the_uploaded_metrics(
    s3: Any, make_config: MakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = f"s3://{BUCKET}/runs"
    config = make_config(STAGE, output=output)
    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "first-instance"))
    run_experiment(config, output, ONE, CPU, stop=lambda s: s == 3)
    # WHEN another instance (an empty local disk) resumes from the S3 checkpoint
    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "second-instance"))
    run_experiment(config, output, ONE, CPU)
    # THEN the uploaded metrics hold every step once, not only those after the resume
    body = s3.get_object(Bucket=BUCKET, Key="runs/exp/dapt/metrics.jsonl")["Body"].read()
    records = [json.loads(x) for x in body.decode().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]
    # ... and so does the uploaded TensorBoard event file, under the one name that replaces it
    keys = s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/exp/dapt/tensorboard/")["Contents"]
    assert [k["Key"] for k in keys] == ["runs/exp/dapt/tensorboard/events.out.tfevents.dapt"]
    events = tmp_path / "events.out.tfevents.dapt"
    events.write_bytes(s3.get_object(Bucket=BUCKET, Key=keys[0]["Key"])["Body"].read())
    assert [step for step, _ in _scalars(events, "loss")] == [1, 2, 3, 4, 5]
