"""The promotion gate: may an adapted model replace its base? One pure function, `decide`.

The local pipeline and the AWS pipeline call the same function on the same inputs (the compare
reports of the candidate against its base, the trainer's held-out losses before and after, and
the judge's calibration report when a judge scored anything), so a decision made on a laptop is
the one the cloud would make. It never reads files or calls anything.

Rules, each reported as a check with its value and threshold:

- **Required tasks improve beyond doubt:** for every required benchmark, the lower bound of the
  95% CI of the paired difference (candidate - base) is above the benchmark's `margin`. The
  difference is the *strict* one: over items both models finished, an unparseable reply counts
  as wrong (a model that cannot answer in the asked format has not done the task).
- **No task gets worse:** on every compared benchmark, the mean paired difference is not below
  `-tolerance` (a point estimate, not a CI bound: a regression that is merely not significant
  still blocks promotion).
- **General ability kept:** the held-out loss of each public source rises by at most
  `heldout_max_increase` (relative) from the starting weights to the trained ones.
- **The judge can be trusted:** if any benchmark was scored by an LLM judge, its calibration
  report must say `trusted`. Benchmarks scored without a judge make this check not applicable.

A failed gate can never be approved by the tooling: `GateDecision.passed` is the only input the
registry's approval step accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TaskRule(BaseModel):
    """What one benchmark must show."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required: bool = Field(
        default=True,
        description="The candidate must beat the base on this benchmark beyond the 95% CI "
        "(false: it only must not regress).",
    )
    margin: float = Field(
        default=0.0,
        description="The CI lower bound of the paired difference (candidate - base, in the "
        "benchmark's primary metric) must exceed this.",
    )
    tolerance: float = Field(
        default=0.02,
        ge=0,
        description="The mean paired difference may not fall below minus this (in the "
        "benchmark's primary metric).",
    )


class GatePolicy(BaseModel):
    """Margins and tolerances per benchmark name; benchmarks not listed only must not regress."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: dict[str, TaskRule] = Field(
        default_factory=dict,
        description="The rule of each benchmark, by benchmark name; a listed required "
        "benchmark without a comparison fails the gate.",
    )
    default_tolerance: float = Field(
        default=0.02,
        ge=0,
        description="Tolerance of a compared benchmark that `tasks` does not list.",
    )
    heldout_max_increase: float = Field(
        default=0.05,
        ge=0,
        description="Largest allowed relative rise of a public source's held-out loss, as a "
        "fraction (0.05 = 5%).",
    )
    heldout_sources: list[str] | None = Field(
        default=None,
        description="Which held-out losses are general ability (default: the sources the "
        "caller lists as public); each must be measured before and after training.",
    )
    require_calibrated_judge: bool = Field(
        default=True,
        description="When a benchmark was scored by an LLM judge, its calibration report must "
        "say `trusted` (false: the judge check always passes).",
    )


class Check(BaseModel):
    """One rule applied to one thing, with the numbers that decided it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    subject: str
    passed: bool | None
    """None: not applicable (e.g. no benchmark used a judge)."""
    value: float | None
    threshold: float | None
    detail: str


class GateDecision(BaseModel):
    """The decision and every check behind it; `reasons` are the failed checks' details."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passed: bool
    candidate: str
    baseline: str | None
    checks: list[Check]
    reasons: list[str]


def decide(
    comparisons: Mapping[str, Mapping[str, Any]],
    candidate: str | Mapping[str, str],
    policy: GatePolicy,
    heldout_before: Mapping[str, float] | None = None,
    heldout_after: Mapping[str, float] | None = None,
    public_sources: list[str] | None = None,
    judge_calibration: Mapping[str, Any] | None = None,
) -> GateDecision:
    """Apply the policy to compare reports (benchmark name -> `dapt-eval compare` JSON whose
    baseline is the base model) for the run labelled `candidate` (one label, or one per
    benchmark when the candidate's runs have different labels, e.g. served and local)."""
    labels = dict.fromkeys(comparisons, candidate) if isinstance(candidate, str) else candidate
    checks: list[Check] = []
    baselines = {str(c.get("baseline")) for c in comparisons.values()}
    for name, rule in policy.tasks.items():
        if rule.required and name not in comparisons:
            checks.append(
                Check(
                    name="required_task_improves",
                    subject=name,
                    passed=False,
                    value=None,
                    threshold=rule.margin,
                    detail=f"{name}: required, but there is no comparison for it",
                )
            )
    for name, comparison in sorted(comparisons.items()):
        rule = policy.tasks.get(name, TaskRule(required=False, tolerance=policy.default_tolerance))
        checks += _task_checks(name, comparison, labels.get(name, ""), rule)
    checks += _heldout_checks(heldout_before, heldout_after, public_sources, policy)
    checks.append(_judge_check(comparisons, judge_calibration, policy))
    failed = [c for c in checks if c.passed is False]
    return GateDecision(
        passed=not failed,
        candidate=candidate
        if isinstance(candidate, str)
        else ", ".join(sorted(set(labels.values()))),
        baseline=baselines.pop() if len(baselines) == 1 else None,
        checks=checks,
        reasons=[c.detail for c in failed],
    )


def _task_checks(
    name: str, comparison: Mapping[str, Any], candidate: str, rule: TaskRule
) -> list[Check]:
    pair = next((p for p in comparison.get("paired", []) if p.get("b") == candidate), None)
    if pair is None:
        return [
            Check(
                name="compared",
                subject=name,
                passed=False,
                value=None,
                threshold=None,
                detail=f"{name}: {candidate} is not among the compared runs",
            )
        ]
    strict = pair.get("strict") or {}
    diff = strict.get("difference_b_minus_a") or pair["difference_b_minus_a"]
    statistic = strict.get("statistic") or pair.get("statistic", "difference")
    mean, low = diff.get("mean_difference"), (diff.get("ci") or {}).get("low")
    checks = []
    if rule.required:
        ok = low is not None and low > rule.margin
        checks.append(
            Check(
                name="required_task_improves",
                subject=name,
                passed=ok,
                value=low,
                threshold=rule.margin,
                detail=(
                    f"{name}: paired {statistic} difference {_fmt(mean)}, 95% CI lower bound "
                    f"{_fmt(low)} {'>' if ok else '<='} margin {rule.margin:g}"
                ),
            )
        )
    ok = mean is not None and mean >= -rule.tolerance
    checks.append(
        Check(
            name="no_regression",
            subject=name,
            passed=ok,
            value=mean,
            threshold=-rule.tolerance,
            detail=(
                f"{name}: paired {statistic} difference {_fmt(mean)} "
                f"{'>=' if ok else '<'} -{rule.tolerance:g}"
            ),
        )
    )
    return checks


def _heldout_checks(
    before: Mapping[str, float] | None,
    after: Mapping[str, float] | None,
    public_sources: list[str] | None,
    policy: GatePolicy,
) -> list[Check]:
    wanted = policy.heldout_sources if policy.heldout_sources is not None else public_sources
    if not wanted:
        return [
            Check(
                name="general_ability_kept",
                subject="heldout",
                passed=False,
                value=None,
                threshold=policy.heldout_max_increase,
                detail="no public held-out source to show general ability was kept",
            )
        ]
    checks = []
    for source in wanted:
        b, a = (before or {}).get(source), (after or {}).get(source)
        if b is None or a is None or b <= 0:
            checks.append(
                Check(
                    name="general_ability_kept",
                    subject=source,
                    passed=False,
                    value=None,
                    threshold=policy.heldout_max_increase,
                    detail=f"held-out loss of '{source}' before and after training is missing",
                )
            )
            continue
        rise = (a - b) / b
        ok = rise <= policy.heldout_max_increase
        checks.append(
            Check(
                name="general_ability_kept",
                subject=source,
                passed=ok,
                value=rise,
                threshold=policy.heldout_max_increase,
                detail=(
                    f"held-out loss of '{source}' {b:.4f} -> {a:.4f} ({rise:+.1%}) "
                    f"{'<=' if ok else '>'} +{policy.heldout_max_increase:.0%}"
                ),
            )
        )
    return checks


def _judge_check(
    comparisons: Mapping[str, Mapping[str, Any]],
    calibration: Mapping[str, Any] | None,
    policy: GatePolicy,
) -> Check:
    judged = sorted(n for n, c in comparisons.items() if c.get("mode") == "judge")
    if not judged:
        return Check(
            name="judge_calibrated",
            subject="judge",
            passed=None,
            value=None,
            threshold=None,
            detail="no benchmark was scored by a judge (qa by reference overlap)",
        )
    trusted = bool(calibration and calibration.get("trusted"))
    kappa = calibration.get("cohen_kappa") if calibration else None
    ok = trusted or not policy.require_calibrated_judge
    return Check(
        name="judge_calibrated",
        subject="judge",
        passed=ok,
        value=float(kappa) if isinstance(kappa, int | float) else None,
        threshold=float(calibration["kappa_threshold"])
        if calibration and "kappa_threshold" in calibration
        else None,
        detail=(
            f"{', '.join(judged)} scored by a judge that is "
            + ("calibrated (trusted)" if trusted else "not shown to be trusted")
        ),
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"
