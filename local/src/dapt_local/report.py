"""The run's report: per task and per model with CIs, paired tests against the base model, the
promotion decision, the general held-out loss before and after, lineage and stage timings.

`report.json` holds everything; `report.html` is one self-contained page (no scripts, no
external resources) that a person reads: the decision first, then a table of every task.
Per benchmark the full `dapt-eval compare` output is kept under `benchmarks/<name>/`.
"""

from __future__ import annotations

import html
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dapt_data.manifest import DatasetManifest
from dapt_eval.commands import compare_dirs
from dapt_eval.compare import PAGE_CSS, bar_chart_svg
from dapt_eval.registry import GATE_INPUTS_FILE, GateInputs

from dapt_local.config import AdaptConfig
from dapt_local.evaluate import EvalRun
from dapt_local.model_import import ImportedModel

if TYPE_CHECKING:
    from dapt_local.pipeline import Timings, TrainedModel

VARIANT_ORDER = ("base", "adapted", "base+retrieval")
"""Compare order: the base model first (the baseline of every paired test)."""


def write_report(
    config: AdaptConfig,
    *,
    imported: ImportedModel,
    trained: TrainedModel,
    manifest_uri: str,
    manifest: DatasetManifest,
    runs: list[EvalRun],
    timings: Timings,
    out: Path,
) -> dict[str, Any]:
    """Compare, decide, and write `report.json` and `report.html` under `out`."""
    comparisons: dict[str, dict[str, Any]] = {}
    for name in config.evaluate.benchmarks:
        ordered = sorted(
            (r for r in runs if r.benchmark == name), key=lambda r: VARIANT_ORDER.index(r.variant)
        )
        comparisons[name] = compare_dirs([r.out_dir for r in ordered], out / "benchmarks" / name)
    candidate = {r.benchmark: r.label for r in runs if r.variant == "adapted"}
    before = _read_json(trained.final / "heldout_before.json") or {}
    after = _read_json(trained.final / "heldout.json") or {}
    public = [s.name for s in manifest.sources if s.origin.value == "public"]
    # The gate's inputs are written beside the report: the AWS registry step decides again on
    # this file (`dapt_eval.registry`), with the same function, and so makes the same decision.
    inputs = GateInputs(
        comparisons=comparisons,
        candidate=candidate,
        policy=config.gate,
        heldout_before=before,
        heldout_after=after,
        public_sources=public,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / GATE_INPUTS_FILE).write_text(inputs.model_dump_json(indent=2) + "\n", "utf-8")
    decision = inputs.decide()
    report = {
        "name": config.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "decision": decision.model_dump(mode="json"),
        "tasks": [_task_row(name, comparisons[name], runs) for name in config.evaluate.benchmarks],
        "heldout": {
            source: {
                "before": before.get(source),
                "after": after.get(source),
                "relative_change": (after[source] - before[source]) / before[source]
                if source in before and source in after and before[source]
                else None,
                "public": source in public,
            }
            for source in sorted(set(before) | set(after))
        },
        "lineage": _lineage(
            config,
            imported=imported,
            trained=trained,
            manifest_uri=manifest_uri,
            manifest=manifest,
            runs=runs,
        ),
        "timings_s": dict(timings.seconds),
        "stages_skipped": dict(timings.skipped),
        "machine": _machine(),
    }
    save_report(report, out)
    return report


def save_report(report: dict[str, Any], out: Path) -> None:
    """`report.json` and `report.html` under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    (out / "report.json").write_text(text, "utf-8")
    (out / "report.html").write_text(render_html(report), "utf-8")


def _task_row(name: str, comparison: dict[str, Any], runs: list[EvalRun]) -> dict[str, Any]:
    by_label = {m["label"]: m for m in comparison["models"]}
    mine = {r.variant: r for r in runs if r.benchmark == name}
    models = {}
    for variant, run in mine.items():
        row = by_label[run.label]
        primary = run.report["primary"]
        strict = (
            primary.get("rouge_l_strict", {}).get("mean")
            if "rouge_l_strict" in primary
            else row["strict_accuracy"]
        )
        models[variant] = {
            "label": run.label,
            "value": row["primary"]["value"],
            "low": row["primary"]["low"],
            "high": row["primary"]["high"],
            "strict": strict,
            "n_items": row["n_items"],
            "n_scored": row["n_items"] - row["n_unparseable"] - row["n_errored"],
            "n_unparseable": row["n_unparseable"],
            "n_errored": row["n_errored"],
        }
    paired = {}
    for pair in comparison["paired"]:
        variant = next(v for v, r in mine.items() if r.label == pair["b"])
        strict = pair["strict"]
        diff = strict["difference_b_minus_a"]
        paired[variant] = {
            "statistic": strict["statistic"],
            "n": strict["n_shared_finished"],
            "mean": diff["mean_difference"],
            "low": diff["ci"]["low"],
            "high": diff["ci"]["high"],
            "mcnemar_p": strict.get("mcnemar_exact", {}).get("p_value"),
        }
    sample = mine["base"].report.get("sample") if "base" in mine else None
    return {
        "benchmark": name,
        "name": comparison["benchmark"],
        "version": comparison["benchmark_version"],
        "task": comparison["task"],
        "mode": comparison["mode"],
        "metric": comparison["primary_metric"],
        "sample": sample,
        "models": models,
        "paired_vs_base": paired,
    }


def _lineage(
    config: AdaptConfig,
    *,
    imported: ImportedModel,
    trained: TrainedModel,
    manifest_uri: str,
    manifest: DatasetManifest,
    runs: list[EvalRun],
) -> dict[str, Any]:
    trainer = _read_json(trained.final / "lineage.json") or {}
    return {
        "pipeline_config": config.model_dump(mode="json"),
        "base_model": {"path": str(imported.path), **imported.provenance},
        "data_manifest": {"uri": manifest_uri, **manifest.model_dump(mode="json")},
        "training": {
            "config_path": str(trained.config_path),
            "config_sha256": trainer.get("config", {}).get("sha256"),
            "code": trainer.get("code"),
            "data": trainer.get("data"),
            "steps": trainer.get("training", {}).get("steps"),
        },
        "adapted_model": {
            "path": str(trained.model_dir),
            "revision": next(
                (r.report["model"]["revision"] for r in runs if r.variant == "adapted"), None
            ),
        },
        "benchmarks": {
            r.benchmark: {"name": r.report["benchmark"], "version": r.report["benchmark_version"]}
            for r in runs
            if r.variant == "base"
        },
    }


def _machine() -> dict[str, Any]:
    import torch  # noqa: PLC0415

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# --- HTML ----------------------------------------------------------------------------------


def render_html(report: dict[str, Any]) -> str:
    """The page: decision, task table with CIs and paired differences, charts, held-out
    losses, timings and lineage."""
    decision = report["decision"]
    verdict = "PASS" if decision["passed"] else "FAIL"
    colour = "#1a7f37" if decision["passed"] else "#b42318"
    reasons = (
        "".join(f"<li>{html.escape(r)}</li>" for r in decision["reasons"])
        or "<li>every check passed</li>"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Adaptation report: {html.escape(report['name'])}</title>",
        f"<style>{PAGE_CSS}{EXTRA_CSS}</style>",
        "</head><body>",
        f"<h1>Adaptation report: {html.escape(report['name'])}</h1>",
        f'<p class="decision" style="background:{colour}">Promotion gate: {verdict}</p>',
        f"<ul>{reasons}</ul>",
        "<h2>Tasks</h2>",
        "<p>Each value is the benchmark's headline metric with its 95% CI, over the items whose "
        "reply could be scored (how many, when not all). <b>Strict</b> counts "
        "unparseable replies as wrong (0). <b>&Delta; vs base</b> is the paired difference "
        "over the items both models finished, unparseable = wrong, with its 95% bootstrap CI "
        "and the exact McNemar p-value: what the gate uses.</p>",
        _task_table(report["tasks"]),
        "<h2>Per task</h2>",
        *(_task_chart(t) for t in report["tasks"]),
        "<h2>General ability: held-out loss</h2>",
        _heldout_table(report["heldout"]),
        "<h2>Checks</h2>",
        _checks_table(decision["checks"]),
        "<h2>Stages</h2>",
        _timings_table(report["timings_s"], report["stages_skipped"]),
        "<h2>Lineage</h2>",
        _lineage_html(report["lineage"]),
        f'<p class="small">Machine: {html.escape(json.dumps(report["machine"]))}. '
        f"Created {html.escape(report['created_at'])}.</p>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def _task_table(tasks: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>benchmark</th><th>metric</th><th>items</th>"
        + "".join(f"<th>{html.escape(v)}</th><th>strict</th>" for v in VARIANT_ORDER)
        + "<th>&Delta; adapted vs base</th><th>p</th>"
        + "<th>&Delta; retrieval vs base</th><th>p</th></tr>\n"
    )
    rows = []
    for task in tasks:
        models, paired = task["models"], task["paired_vs_base"]
        sample = task["sample"]
        items = (
            f"{sample['n']} of {sample['of']}"
            if sample
            else str(models.get("base", {}).get("n_items", ""))
        )
        cells = [
            f"{html.escape(task['benchmark'])}<br>"
            f'<span class="small">{html.escape(task["mode"])}</span>',
            html.escape(task["metric"]),
            items,
        ]
        for variant in VARIANT_ORDER:
            m = models.get(variant)
            cells += [
                _value_cell(m) if m else "&ndash;",
                _num(m["strict"]) if m else "&ndash;",
            ]
        for variant in ("adapted", "base+retrieval"):
            p = paired.get(variant)
            if p is None:
                cells += ["&ndash;", "&ndash;"]
                continue
            significant = p["low"] is not None and p["low"] > 0
            diff = _ci(p["mean"], p["low"], p["high"], signed=True)
            cells += [f"<b>{diff}</b>" if significant else diff, _p(p["mcnemar_p"])]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n")
    return f"<table>{head}{''.join(rows)}</table>"


def _task_chart(task: dict[str, Any]) -> str:
    rows = [
        {
            "label": variant,
            "primary": {k: task["models"][variant][k] for k in ("value", "low", "high")},
        }
        for variant in VARIANT_ORDER
        if variant in task["models"]
    ]
    title = f"{task['benchmark']} ({task['name']} v{task['version']}, {task['metric']})"
    return f"<h3>{html.escape(title)}</h3>\n{bar_chart_svg(rows)}"


def _heldout_table(heldout: dict[str, Any]) -> str:
    head = "<tr><th>source</th><th>public</th><th>before</th><th>after</th><th>change</th></tr>\n"
    rows = []
    for source, v in heldout.items():
        change = v["relative_change"]
        cells = [
            html.escape(source),
            "yes" if v["public"] else "no",
            _num(v["before"], 4),
            _num(v["after"], 4),
            "&ndash;" if change is None else f"{change:+.1%}",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n")
    return f"<table>{head}{''.join(rows)}</table>"


def _checks_table(checks: list[dict[str, Any]]) -> str:
    head = "<tr><th>check</th><th>subject</th><th>result</th><th>detail</th></tr>\n"
    rows = "".join(
        f"<tr><td>{html.escape(c['name'])}</td><td>{html.escape(c['subject'])}</td>"
        f"<td>{'pass' if c['passed'] else 'n/a' if c['passed'] is None else 'FAIL'}</td>"
        f"<td>{html.escape(c['detail'])}</td></tr>\n"
        for c in checks
    )
    return f"<table>{head}{rows}</table>"


def _timings_table(seconds: dict[str, float], skipped: dict[str, bool]) -> str:
    head = "<tr><th>stage</th><th>wall time (s)</th><th>state</th></tr>\n"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{value:.1f}</td>"
        f"<td>{'already done' if skipped.get(name) else 'ran'}</td></tr>\n"
        for name, value in seconds.items()
    )
    return f"<table>{head}{rows}</table>"


def _lineage_html(lineage: dict[str, Any]) -> str:
    base = lineage["base_model"]
    manifest = lineage["data_manifest"]
    sources = "".join(
        f"<tr><td>{html.escape(s['name'])}</td><td>{html.escape(s['kind'])}</td>"
        f"<td>{html.escape(s['origin'])}</td><td>{s['records']}</td><td>{s['tokens']}</td>"
        f"<td>{s['mix_probability']:.3f}</td><td><code>{s['sha256'][:12]}</code></td></tr>\n"
        for s in manifest["sources"]
    )
    code = (lineage["training"].get("code") or {}).get("source_sha256") or ""
    config_sha = str(lineage["training"]["config_sha256"])[:12]
    return "\n".join(
        [
            f"<p>Base model <b>{html.escape(base['name'])}</b> "
            f"<code>{html.escape(base['model_sha256'])}</code> from "
            f"{html.escape(base['source']['package'])} {html.escape(base['source']['version'])} "
            f"(wheel sha256 <code>{base['source']['wheel_sha256'][:12]}</code>, "
            f"{html.escape(base['source']['license'])}). Adapted model "
            f"<code>{html.escape(str(lineage['adapted_model']['revision']))}</code>, "
            f"trainer config sha256 <code>{html.escape(config_sha)}</code>, "
            f"trainer code <code>{html.escape(code[:12])}</code>, "
            f"{lineage['training']['steps']} steps.</p>",
            f"<p>Data manifest {html.escape(manifest['name'])} v{manifest['version']} "
            f"(achieved domain share {manifest['mix']['achieved_domain_share']:.3f}):</p>",
            "<table><tr><th>source</th><th>kind</th><th>origin</th><th>records</th><th>tokens</th>"
            f"<th>mix share</th><th>sha256</th></tr>\n{sources}</table>",
            "<details><summary>Everything (JSON)</summary><pre>"
            + html.escape(json.dumps(lineage, indent=1)[:LINEAGE_CHARS])
            + "</pre></details>",
        ]
    )


def _value_cell(model: dict[str, Any]) -> str:
    """The headline with its CI, and how few items it rests on when replies were unusable."""
    cell = _ci(model["value"], model["low"], model["high"])
    if model["n_scored"] < model["n_items"]:
        cell += f'<br><span class="small">{model["n_scored"]} of {model["n_items"]} scored</span>'
    return cell


def _ci(value: float | None, low: float | None, high: float | None, signed: bool = False) -> str:
    if value is None:
        return "&ndash;"
    fmt = "+.3f" if signed else ".3f"
    interval = (
        ""
        if low is None or high is None
        else f' <span class="small">[{low:{fmt}}, {high:{fmt}}]</span>'
    )
    return f"{value:{fmt}}{interval}"


def _num(value: float | None, digits: int = 3) -> str:
    return "&ndash;" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "&ndash;"
    return f"{value:.1e}" if value < P_SCIENTIFIC else f"{value:.3f}"


EXTRA_CSS = (
    ".decision{color:#fff;font-size:1.4rem;padding:.5rem 1rem;display:inline-block}"
    ".small{color:#555;font-size:.8rem}pre{white-space:pre-wrap;font-size:.75rem}"
)
LINEAGE_CHARS = 200_000
P_SCIENTIFIC = 0.001
