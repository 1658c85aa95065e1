"""Side-by-side comparison of N runs of the same benchmark: JSON plus a self-contained HTML.

Paired statistics (bootstrap of the difference, exact McNemar) use only items that both runs
completed with status `ok` on the primary prompt: an item one model errored on says nothing
about the difference between the models.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dapt_eval.aggregate import AggregationError, scored_by_rouge
from dapt_eval.metrics import DEFAULT_RESAMPLES, DEFAULT_SEED, mcnemar_exact, paired_bootstrap
from dapt_eval.results import ItemResult
from dapt_eval.schemas import Task


@dataclass(frozen=True)
class RunView:
    """One run as the comparison needs it: its label, report, and primary-prompt results."""

    label: str
    report: dict[str, Any]
    results: list[ItemResult]


def compare(
    runs: Sequence[RunView], n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """Metrics of every run and paired tests of each run against the first (the baseline)."""
    if len(runs) < MIN_RUNS:
        raise AggregationError(f"compare needs at least {MIN_RUNS} runs, got {len(runs)}")
    return side_by_side(runs, n_resamples, seed)


def side_by_side(
    runs: Sequence[RunView], n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """`compare` for one or more runs: with a single run, `paired` is empty.

    The aggregate Lambda uses this so a run over one model still gets the same JSON and page.
    """
    if not runs:
        raise AggregationError("compare needs at least 1 run, got 0")
    _check_comparable(runs)
    task = Task(runs[0].report["task"])
    baseline = runs[0]
    mode = baseline.report["mode"]
    return {
        "benchmark": baseline.report["benchmark"],
        "benchmark_version": baseline.report["benchmark_version"],
        "task": task.value,
        "mode": baseline.report["mode"],
        "primary_metric": baseline.report["primary_metric"],
        "baseline": baseline.label,
        "models": [_model_row(run) for run in runs],
        "paired": [
            paired_comparison(baseline, other, task, n_resamples, seed, mode) for other in runs[1:]
        ],
    }


def paired_comparison(
    a: RunView,
    b: RunView,
    task: Task,
    n_resamples: int,
    seed: int,
    mode: str | None = None,
) -> dict[str, Any]:
    """Difference b - a on items both completed; McNemar for right/wrong tasks.

    Two pairings: the headline one over items both runs scored (`ok`), and `strict` over items
    both runs finished (`ok` or `unparseable`), where an unparseable reply counts as wrong: a
    model that cannot answer in the asked format has not done the task, and a baseline that
    is mostly unparseable would otherwise be compared on the few items it happened to format.
    """
    primary = a.report["primary_prompt"]
    rouge = scored_by_rouge(task, mode)
    shared, a_values, b_values = _paired_values(a, b, primary, rouge, ("ok",))
    result: dict[str, Any] = {
        "a": a.label,
        "b": b.label,
        "n_shared_completed": len(shared),
        "statistic": "rouge_l" if rouge else "accuracy",
        "difference_b_minus_a": paired_bootstrap(b_values, a_values, n_resamples, seed),
    }
    if not rouge:
        result["mcnemar_exact"] = mcnemar_exact(
            [bool(v) for v in a_values], [bool(v) for v in b_values]
        )
    finished, a_strict, b_strict = _paired_values(a, b, primary, rouge, ("ok", "unparseable"))
    strict: dict[str, Any] = {
        "n_shared_finished": len(finished),
        "statistic": ("rouge_l" if rouge else "accuracy") + " (unparseable = 0)",
        "difference_b_minus_a": paired_bootstrap(b_strict, a_strict, n_resamples, seed),
    }
    if not rouge:
        strict["mcnemar_exact"] = mcnemar_exact(
            [bool(v) for v in a_strict], [bool(v) for v in b_strict]
        )
    result["strict"] = strict
    return result


def _paired_values(
    a: RunView, b: RunView, prompt_id: str, rouge: bool, statuses: tuple[str, ...]
) -> tuple[list[str], list[float], list[float]]:
    a_done = _by_item(a.results, prompt_id, statuses)
    b_done = _by_item(b.results, prompt_id, statuses)
    shared = sorted(a_done.keys() & b_done.keys())
    return (
        shared,
        [_value(a_done[i], rouge) for i in shared],
        [_value(b_done[i], rouge) for i in shared],
    )


def _by_item(
    results: Sequence[ItemResult], prompt_id: str, statuses: tuple[str, ...]
) -> dict[str, ItemResult]:
    return {
        r.item_id: r
        for r in results
        if r.prompt_id == prompt_id
        and r.status in statuses
        and (r.status != "ok" or r.correct is not None or r.score is not None)
    }


def _value(result: ItemResult, rouge: bool) -> float:
    if result.status != "ok":
        return 0.0
    if rouge:
        return float(result.score or 0.0)
    return 1.0 if result.correct else 0.0


def _check_comparable(runs: Sequence[RunView]) -> None:
    keys = ("benchmark", "benchmark_version", "task", "mode", "primary_prompt")
    problems = []
    for key in keys:
        values = sorted({str(run.report[key]) for run in runs})
        if len(values) > 1:
            problems.append(f"'{key}' differs across runs: {values}")
    if problems:
        raise AggregationError("runs are not comparable: " + "; ".join(problems))


def _model_row(run: RunView) -> dict[str, Any]:
    primary = run.report["primary"]
    rouge = "rouge_l_strict" in primary
    return {
        "label": run.label,
        "model": run.report["model"],
        "primary": primary["primary_value"],
        "n_items": primary["n_items"],
        "n_errored": primary["n_errored"],
        "n_unparseable": primary["n_unparseable"],
        # ROUGE-scored tasks have no right/wrong: their strict figure is strict ROUGE-L, and
        # strict accuracy (always 0 there) is not shown as if it meant something.
        "strict_accuracy": None if rouge else primary["strict_accuracy"]["rate"],
        "strict": (
            {"metric": "rouge_l_strict", "value": primary["rouge_l_strict"]["mean"]}
            if rouge
            else {"metric": "strict_accuracy", "value": primary["strict_accuracy"]["rate"]}
        ),
        "format_spread": {k: run.report["format_spread"][k] for k in ("min", "max", "n_prompts")},
        "decoding": run.report.get("decoding"),
        "judge": run.report.get("judge"),
        "judge_calibration": run.report.get("judge_calibration"),
        "quarantined_rows": run.report.get("quarantined_rows"),
        "confusion_matrix": _confusion_matrix(primary),
    }


def _confusion_matrix(primary: dict[str, Any]) -> dict[str, Any] | None:
    """The primary prompt's confusion matrix (rows true, columns predicted); classification only."""
    report = primary.get("classification")
    if not report:
        return None
    return {"labels": report["labels"], **report["confusion_matrix"]}


def calibration_from_report(
    report: dict[str, Any] | None, judge: dict[str, str] | None
) -> dict[str, Any] | None:
    """The calibration status of `judge` given a `dapt-eval calibrate-judge` report.

    `calibrated`: the report is for this judge model and prompt and says trusted; `failed`: a
    report was given but does not calibrate this judge (below its kappa threshold, or written
    for another judge: `problems` says which); `not calibrated`: no report. None when no judge
    scored the run.
    """
    if judge is None:
        return None
    if report is None:
        return _calibration("not calibrated", None, ["no calibration report was given"])
    reported = report.get("judge") or {}
    problems = [
        f"the report is for judge {key} '{reported.get(key)}', the run's is '{judge[key]}'"
        for key in ("model", "prompt_version")
        if reported.get(key) != judge[key]
    ]
    if not report.get("trusted"):
        problems.append("the report says trusted: false")
    return _calibration("failed" if problems else "calibrated", report, problems)


def calibration_from_gate(gate: dict[str, Any] | None) -> dict[str, Any] | None:
    """The same status from the Plan Lambda's gate record (`run.json` `judge_calibration`).

    The gate read a report when it has its threshold: then a judge it did not pass `failed`;
    without one there was no report it could read (`not calibrated`).
    """
    if gate is None:
        return None
    resistance = gate.get("injection_resistance")
    figures = {
        "cohen_kappa": gate.get("cohen_kappa"),
        "kappa_threshold": gate.get("kappa_threshold"),
        "injection_resistance": None if resistance is None else {"rate": resistance},
    }
    read = gate.get("kappa_threshold") is not None
    status = "calibrated" if gate.get("calibrated") else "failed" if read else "not calibrated"
    return _calibration(status, figures if read else None, list(gate.get("problems") or []))


def _calibration(status: str, report: dict[str, Any] | None, problems: list[str]) -> dict[str, Any]:
    report = report or {}
    resistance = report.get("injection_resistance") or {}
    return {
        "status": status,
        "cohen_kappa": report.get("cohen_kappa"),
        "kappa_threshold": report.get("kappa_threshold"),
        "injection_resistance": resistance.get("rate"),
        "problems": problems,
    }


def render_html(comparison: dict[str, Any], completion: dict[str, Any] | None = None) -> str:
    """A self-contained page: a table and an inline SVG bar chart with CI whiskers. No JS.

    `completion` (flat name -> number) adds a table of run counts, e.g. missing records.
    """
    title = (
        f"{comparison['benchmark']} v{comparison['benchmark_version']} "
        f"({comparison['task']}, {comparison['mode']})"
    )
    strict_name = comparison["models"][0]["strict"]["metric"] if comparison["models"] else ""
    model_header = _header_row(
        "model",
        "value",
        "CI low",
        "CI high",
        html.escape(strict_name),
        "items",
        "errored",
        "unparseable",
        "format spread",
    )
    statistics = sorted({p["statistic"] for p in comparison["paired"]})
    statistic = html.escape(statistics[0]) if len(statistics) == 1 else "the primary metric"
    paired_header = _header_row(
        "model",
        "shared items",
        f"difference in {statistic} (b&minus;a)",
        "95% CI",
        "McNemar exact p",
    )
    rows = "".join(_table_row(m) for m in comparison["models"])
    paired = "".join(_paired_row(p) for p in comparison["paired"])
    metric = html.escape(comparison["primary_metric"])
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{PAGE_CSS}</style>",
            "</head><body>",
            f"<h1>{html.escape(title)}</h1>",
            f"<p>Primary metric: <b>{metric}</b>; bars show the value, whiskers the 95% CI. "
            "Errored and unparseable items are excluded from the metric and counted separately; "
            f"{html.escape(strict_name)} counts them, and missing items, as failures.</p>",
            bar_chart_svg(comparison["models"]),
            f"<table>{model_header}{rows}</table>",
            _settings_table(comparison["models"]),
            _confusion_tables(comparison["models"]),
            f"<h2>Paired comparisons against {html.escape(comparison['baseline'])}</h2>",
            "<p>Only items both runs completed (status ok) on the primary prompt."
            + _statistic_note(statistics, comparison["primary_metric"])
            + "</p>",
            f"<table>{paired_header}{paired}</table>",
            _completion_table(completion),
            "</body></html>",
            "",
        ]
    )


def _statistic_note(statistics: list[str], primary_metric: str) -> str:
    if not statistics or statistics == [primary_metric]:
        return ""
    return (
        f" The paired difference is in {html.escape(', '.join(statistics))}, not in the headline "
        f"metric {html.escape(primary_metric)}: the paired bootstrap and McNemar test work per "
        "item, and macro-F1 is not a per-item score."
    )


def _settings_table(models: Sequence[dict[str, Any]]) -> str:
    """What each run was: decoding (seed included), judge and its calibration, quarantined rows."""
    header = _header_row("model", "decoding", "judge", "judge calibration", "quarantined rows")
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{c}</td>"
            for c in (
                html.escape(m["label"]),
                html.escape(_decoding_text(m.get("decoding"))),
                html.escape(_judge_text(m.get("judge"))),
                html.escape(_calibration_text(m.get("judge"), m.get("judge_calibration"))),
                html.escape(
                    "unknown" if m.get("quarantined_rows") is None else str(m["quarantined_rows"])
                ),
            )
        )
        + "</tr>\n"
        for m in models
    )
    return f"<h2>Run settings</h2>\n<table>{header}{rows}</table>"


def _decoding_text(decoding: dict[str, Any] | None) -> str:
    if not decoding:
        return "unknown"
    stop = decoding.get("stop") or []
    return (
        f"temperature {decoding.get('temperature')}, top_p {decoding.get('top_p')}, "
        f"max_tokens {decoding.get('max_tokens')}, seed {decoding.get('seed')}"
        + (f", stop {stop!r}" if stop else "")
    )


def _judge_text(judge: dict[str, str] | None) -> str:
    return "none" if not judge else f"{judge['model']} ({judge['prompt_version']})"


def _calibration_text(judge: dict[str, str] | None, calibration: dict[str, Any] | None) -> str:
    if judge is None:
        return "no judge"
    if calibration is None:
        return "unknown"
    figures = []
    if calibration["cohen_kappa"] is not None:
        figures.append(
            f"kappa {calibration['cohen_kappa']:.3f} (threshold {calibration['kappa_threshold']})"
        )
    if calibration["injection_resistance"] is not None:
        figures.append(f"injection resistance {calibration['injection_resistance']:.3f}")
    if calibration["status"] != "calibrated" and calibration["problems"]:
        figures.append("; ".join(calibration["problems"]))
    status = str(calibration["status"])
    return status + (f": {', '.join(figures)}" if figures else "")


def _confusion_tables(models: Sequence[dict[str, Any]]) -> str:
    """One confusion matrix per classification model: rows the true label, columns predicted."""
    parts = []
    for model in models:
        matrix = model.get("confusion_matrix")
        if not matrix:
            continue
        labels = [html.escape(label) for label in matrix["labels"]]
        header = _header_row("true &#8595; predicted &#8594;", *labels)
        rows = "".join(
            f"<tr><th>{label}</th>" + "".join(f"<td>{n}</td>" for n in counts) + "</tr>\n"
            for label, counts in zip(labels, matrix["matrix"], strict=True)
        )
        parts.append(
            f"<h3>{html.escape(model['label'])}</h3>\n"
            f'<table class="confusion">{header}{rows}</table>'
        )
    if not parts:
        return ""
    return (
        "<h2>Confusion matrices (primary prompt, scored items)</h2>\n"
        "<p>Rows: the gold label; columns: the label the reply named. Unparseable replies are "
        "counted apart, in the table above.</p>\n" + "\n".join(parts)
    )


def _fmt_p(value: float | None) -> str:
    """p-values: 3 decimals, or scientific notation below 0.001 (1.3e-26, never 0.000)."""
    if value is None:
        return "&ndash;"
    return f"{value:.1e}" if 0 < value < SMALL_P else f"{value:.3f}"


def _completion_table(completion: dict[str, Any] | None) -> str:
    if not completion:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(name))}</td><td>{html.escape(_fmt_count(value))}</td></tr>\n"
        for name, value in completion.items()
    )
    return f"<h2>Completion</h2>\n<table>{_header_row('count', 'value')}{rows}</table>"


def _fmt_count(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def bar_chart_svg(models: Sequence[dict[str, Any]]) -> str:
    """Horizontal bars on a 0..1 scale with CI whiskers, one per model."""
    height = CHART_TOP + len(models) * CHART_ROW + CHART_BOTTOM
    svg = {"xmlns": "http://www.w3.org/2000/svg", "width": CHART_WIDTH, "height": height}
    parts = [f'<svg {_attrs(svg)} role="img">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = _x(tick)
        line = {
            "x1": x,
            "y1": CHART_TOP - 5,
            "x2": x,
            "y2": height - CHART_BOTTOM,
            "stroke": "#eee",
        }
        parts.append(f"<line {_attrs(line)}/>")
        label = {"x": x, "y": CHART_TOP - 8, "font-size": 10, "text-anchor": "middle"}
        parts.append(f"<text {_attrs(label)}>{tick:g}</text>")
    for index, model in enumerate(models):
        parts += _bar(CHART_TOP + index * CHART_ROW, model)
    parts.append("</svg>")
    return "\n".join(parts)


def _bar(y: float, model: dict[str, Any]) -> list[str]:
    value, low, high = (model["primary"][k] for k in ("value", "low", "high"))
    label = {"x": CHART_LABEL_WIDTH - 6, "y": y + 15, "font-size": 12, "text-anchor": "end"}
    parts = [f"<text {_attrs(label)}>{html.escape(model['label'])}</text>"]
    if value is not None:
        rect = {"x": _x(0), "y": y + 4, "width": _x(value) - _x(0), "height": 16, "fill": "#4c78a8"}
        parts.append(f"<rect {_attrs(rect)}><title>{value:.3f}</title></rect>")
    if low is not None and high is not None:
        mid = y + 12
        whisker = {"x1": _x(low), "y1": mid, "x2": _x(high), "y2": mid, "stroke": "#000"}
        parts.append(f"<line {_attrs(whisker)}/>")
        for end in (low, high):
            cap = {"x1": _x(end), "y1": mid - 5, "x2": _x(end), "y2": mid + 5, "stroke": "#000"}
            parts.append(f"<line {_attrs(cap)}/>")
    return parts


def _attrs(values: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.1f}" if isinstance(v, float) else html.escape(str(v), quote=True)

    return " ".join(f'{k}="{fmt(v)}"' for k, v in values.items())


def _header_row(*names: str) -> str:
    return "<tr>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>\n"


def _x(value: float) -> float:
    return CHART_LABEL_WIDTH + max(0.0, min(1.0, value)) * (
        CHART_WIDTH - CHART_LABEL_WIDTH - CHART_RIGHT
    )


def _fmt(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.3f}"


def _table_row(model: dict[str, Any]) -> str:
    p, s = model["primary"], model["format_spread"]
    spread = "&ndash;" if s["n_prompts"] < 2 else f"{_fmt(s['min'])}&ndash;{_fmt(s['max'])}"
    cells = [
        html.escape(model["label"]),
        _fmt(p["value"]),
        _fmt(p["low"]),
        _fmt(p["high"]),
        _fmt(model["strict"]["value"]),
        str(model["n_items"]),
        str(model["n_errored"]),
        str(model["n_unparseable"]),
        spread,
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"


def _paired_row(pair: dict[str, Any]) -> str:
    diff = pair["difference_b_minus_a"]
    ci = f"{_fmt(diff['ci']['low'])} to {_fmt(diff['ci']['high'])}"
    p_value = _fmt_p(pair["mcnemar_exact"]["p_value"]) if "mcnemar_exact" in pair else "n/a"
    cells = [
        html.escape(pair["b"]),
        str(pair["n_shared_completed"]),
        _fmt(diff["mean_difference"]),
        ci,
        p_value,
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"


MIN_RUNS = 2
SMALL_P = 1e-3
PAGE_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
)
CHART_WIDTH = 640
CHART_LABEL_WIDTH = 220
CHART_RIGHT = 20
CHART_TOP = 24
CHART_ROW = 28
CHART_BOTTOM = 10
