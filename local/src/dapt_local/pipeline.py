"""The method end to end on this machine: model -> data -> train -> evaluate -> report.

Each stage is content-addressed, so a rerun skips what is done and redoes only what its inputs
changed: the model import is keyed by its source artifact, the data steps by their inputs
(`dapt-data`'s step markers), the training run by its config, data manifest and base model,
every evaluation unit by its cache key. Each stage shows a progress bar of its own units and
its wall time; the report records them.

The stages call the packages' own entry points: `dapt_data.pipeline` in this process,
`dapt-train` as a subprocess (the same command the AWS Batch job runs), `transformers serve`
for the served models, `dapt_eval` for every score, `dapt_eval.gate.decide` for the decision.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dapt_data.config import ConfigError as DataConfigError
from dapt_data.config import Format, SourceConfig, cross_problems
from dapt_data.config import load_config as load_data_config
from dapt_data.manifest import DatasetManifest, read_manifest
from dapt_data.pipeline import configured_steps
from dapt_data.public import export as export_public
from dapt_data.records import Origin, records_from_jsonl
from dapt_eval.batch.files import content_revision
from dapt_eval.providers.retrieval import PassageIndex, split_passages
from dapt_trainer.config import ConfigError as TrainerConfigError
from dapt_trainer.config import dump_config, parse_config
from tqdm import tqdm

from dapt_local.config import AdaptConfig
from dapt_local.evaluate import EvalRun, Variant, evaluate_variants
from dapt_local.model_import import ImportedModel, import_model
from dapt_local.report import save_report, write_report

STAGES = ("model", "data", "train", "evaluate", "report")


class PipelineError(RuntimeError):
    """A stage failed; the message names the stage and where its log is."""


@dataclass
class Timings:
    """Wall seconds per stage and whether it found its work already done."""

    seconds: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainedModel:
    """The training stage's output."""

    final: Path
    """`<run>/<experiment>/<stage>/final`: model/, adapter/ (LoRA), lineage.json, ..."""
    config_path: Path
    reused: bool

    @property
    def model_dir(self) -> Path:
        return self.final / "model"


def run(config: AdaptConfig, show_progress: bool = True) -> dict[str, Any]:
    """Every stage in order; returns the report (also written under `<output>/report/`)."""
    out = Path(config.output)
    timings = Timings()
    total = len(STAGES)

    def bar(index: int, name: str, units: int | None, unit: str) -> Any:
        return tqdm(
            total=units,
            desc=f"[{index}/{total}] {name:<8}",
            unit=unit,
            disable=not show_progress,
            dynamic_ncols=True,
            leave=True,
        )

    with _stage(timings, "model") as done, bar(1, "model", 1, "model") as progress:
        imported = import_model(config.base_model, Path(config.cache))
        progress.set_postfix_str(
            ("reused " if imported.reused else "imported ") + imported.revision
        )
        progress.update(1)
        done(imported.reused)
    with _stage(timings, "data") as done:
        manifest_uri, data_skipped = run_data(config, imported, out / "data", bar)
        done(data_skipped)
    manifest = read_manifest(manifest_uri)
    with _stage(timings, "train") as done:
        trained = run_train(
            config,
            imported=imported,
            manifest_uri=manifest_uri,
            manifest=manifest,
            out=out / "train",
            bar=bar,
        )
        done(trained.reused)
    with _stage(timings, "evaluate") as done:
        runs, computed = run_evaluate(config, imported, trained, out, bar)
        done(computed == 0)
    with _stage(timings, "report") as done, bar(5, "report", 1, "report") as progress:
        report = write_report(
            config,
            imported=imported,
            trained=trained,
            manifest_uri=manifest_uri,
            manifest=manifest,
            runs=runs,
            timings=timings,
            out=out / "report",
        )
        progress.set_postfix_str("PASS" if report["decision"]["passed"] else "FAIL")
        progress.update(1)
        done(False)
    # The report stage's own time, now that it is known.
    report["timings_s"] = dict(timings.seconds)
    report["stages_skipped"] = dict(timings.skipped)
    save_report(report, out / "report")
    return report


@contextmanager
def _stage(timings: Timings, name: str) -> Iterator[Callable[[bool], None]]:
    started = time.monotonic()

    def done(skipped: bool) -> None:
        timings.skipped[name] = skipped

    try:
        yield done
    except PipelineError:
        raise
    except Exception as err:
        raise PipelineError(f"stage '{name}' failed: {type(err).__name__}: {err}") from err
    finally:
        timings.seconds[name] = round(time.monotonic() - started, 1)


# --- data ----------------------------------------------------------------------------------


def run_data(
    config: AdaptConfig, imported: ImportedModel, out: Path, bar: Callable[..., Any]
) -> tuple[str, bool]:
    """The data pipeline with the public text added and exact token counts; returns the
    manifest URI and whether every step was already done."""
    data = load_data_config(Path(config.data.pipeline))
    public = config.data.public
    public_file = out / "public" / f"{public.name}.jsonl"
    export_public(public_file, public.max_words)
    sources = [
        *data.sources,
        SourceConfig(
            name=public.name, path=str(public_file), format=Format.JSONL, origin=Origin.PUBLIC
        ),
    ]
    data = data.model_copy(
        update={
            "output": str(out),
            "sources": sources,
            "manifest": data.manifest.model_copy(
                update={"tokenizer": str(imported.path / "tokenizer.json")}
            ),
        }
    )
    problems = cross_problems(data)  # the public source added here is checked with the rest
    if problems:
        raise PipelineError(str(DataConfigError(config.data.pipeline, problems)))
    steps = configured_steps(data)
    skipped = True
    manifest_uri = ""
    with bar(2, "data", len(steps), "step") as progress:
        for name, step in steps:
            progress.set_postfix_str(name)
            result = step(data)
            skipped = skipped and result.skipped
            if name == "manifest":
                manifest_uri = str(result.counts["manifest"])
            progress.update(1)
    return manifest_uri, skipped


# --- train ---------------------------------------------------------------------------------


def trainer_config(
    config: AdaptConfig, imported: ImportedModel, manifest_uri: str, manifest: DatasetManifest
) -> dict[str, Any]:
    """The `dapt-train` config: the train section's stage, the imported model, and one source
    per manifest entry (its group and share come from the manifest; the public source holds
    documents out for the general held-out loss)."""
    stage = dict(config.train.stage)
    data = dict(stage.pop("data", {}))
    public = config.data.public
    data["sources"] = [
        {
            "name": source.name,
            "kind": source.kind,
            "manifest": manifest_uri,
            **({"heldout_examples": public.heldout_examples} if source.name == public.name else {}),
        }
        for source in manifest.sources
    ]
    return {
        "experiment": config.name,
        "seed": config.train.seed,
        "compute": dict(config.train.compute),
        "stages": [
            {"name": TRAIN_STAGE, "model": {"path": str(imported.path)}, **stage, "data": data}
        ],
    }


def run_train(
    config: AdaptConfig,
    *,
    imported: ImportedModel,
    manifest_uri: str,
    manifest: DatasetManifest,
    out: Path,
    bar: Callable[..., Any],
) -> TrainedModel:
    """`dapt-train` on the generated config, in a folder keyed by what the model depends on."""
    raw = trainer_config(config, imported, manifest_uri, manifest)
    try:
        experiment = parse_config(raw, "the train section of " + config.name)
    except TrainerConfigError as err:
        raise PipelineError(str(err)) from None
    text = dump_config(experiment)
    manifest_sha = hashlib.sha256(Path(manifest_uri).read_bytes()).hexdigest()
    key = hashlib.sha256(f"{text}\0{manifest_sha}\0{imported.revision}".encode()).hexdigest()
    run_dir = out / key[:12]
    final = run_dir / config.name / TRAIN_STAGE / "final"
    config_path = run_dir / "config.yaml"
    steps = experiment.stages[0].steps
    if (final / "COMPLETE").exists():
        with bar(3, "train", steps, "step") as progress:
            progress.set_postfix_str("reused " + key[:12])
            progress.update(steps)
        return TrainedModel(final, config_path, reused=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(text, encoding="utf-8")
    log = run_dir / "train.log"
    metrics = run_dir / config.name / TRAIN_STAGE / "metrics.jsonl"
    env = {
        **os.environ,
        "DAPT_CACHE": str(Path(config.cache) / "trainer"),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "dapt_trainer.cli", "--config", str(config_path),
               "--output", str(run_dir)]  # fmt: skip
    with log.open("w", encoding="utf-8") as sink, bar(3, "train", steps, "step") as progress:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        shown = 0
        while process.poll() is None:
            time.sleep(POLL_S)
            shown = _follow(metrics, progress, shown)
        _follow(metrics, progress, shown)
    if process.returncode != 0 or not (final / "COMPLETE").exists():
        raise PipelineError(
            f"dapt-train exited with {process.returncode}; its log is {log}:\n{_tail(log)}"
        )
    return TrainedModel(final, config_path, reused=False)


def _follow(metrics: Path, progress: Any, shown: int) -> int:
    """Advance the bar to the last step in metrics.jsonl; show its loss."""
    if not metrics.exists():
        return shown
    last: dict[str, Any] | None = None
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if "loss" in record:
            last = record
    if last is None:
        return shown
    step = int(last["step"])
    if step > shown:
        progress.update(step - shown)
        progress.set_postfix_str(f"loss {last['loss']:.3f} {last.get('tokens_per_s', 0):.0f} tok/s")
    return max(step, shown)


def _tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


# --- evaluate ------------------------------------------------------------------------------


def variants(
    config: AdaptConfig, imported: ImportedModel, trained: TrainedModel, data_out: Path
) -> list[Variant]:
    """base, adapted, and base + retrieval over the configured source's final records."""
    base = Variant("base", imported.path, config.base_model.name, imported.revision)
    adapted = Variant(
        "adapted", trained.model_dir, f"{config.name}-adapted", content_revision(trained.model_dir)
    )
    out = [base, adapted]
    retrieval = config.evaluate.retrieval
    if retrieval is not None:
        records_file = data_out / "final" / f"{retrieval.source}.jsonl"
        records = list(records_from_jsonl(records_file.read_bytes(), str(records_file)))
        passages = [
            p for r in records for p in split_passages(r.source_id, r.text, retrieval.passage_words)
        ]
        out.append(
            Variant(
                "base+retrieval",
                imported.path,
                config.base_model.name,
                imported.revision,
                PassageIndex(passages),
                retrieval.k,
            )
        )
    return out


def run_evaluate(
    config: AdaptConfig,
    imported: ImportedModel,
    trained: TrainedModel,
    out: Path,
    bar: Callable[..., Any],
) -> tuple[list[EvalRun], int]:
    """Every benchmark for every variant; returns the runs and how many units were computed."""
    with bar(4, "evaluate", None, "unit") as progress:
        counted = [0]

        def total(n: int) -> None:
            progress.total = n
            progress.refresh()
            counted[0] = n

        runs = evaluate_variants(
            config,
            variants(config, imported, trained, out / "data"),
            out / "eval",
            progress.update,
            total,
        )
    return runs, counted[0]


TRAIN_STAGE = "adapt"
POLL_S = 1.0
