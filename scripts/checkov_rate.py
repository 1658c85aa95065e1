"""Run checkov on the templates `make synth` wrote and report its failed-check rate.

    make checkov            (synthesizes first; installs checkov into .venv-checkov once)

Prints passed / failed / rate and every failed check with the templates it failed on, and exits
1 when the rate is 5% or more. Checkov tries to fetch its guideline links from the internet;
without one it says so on stderr and goes on, which is fine here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
import shutil

LIMIT = 0.05
ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    # Production's platform stacks sit in its pipeline stage's nested assembly, one level deeper.
    templates = sorted((ROOT / "cdk.out").rglob("*.template.json"))
    if not templates:
        print("no templates under cdk.out/: run `make synth` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        for template in templates:
            shutil.copy(template, Path(tmp) / template.name)
        run = subprocess.run(
            [sys.executable, "-m", "checkov.main", "-d", tmp, "--framework", "cloudformation", "--compact", "--quiet", "-o", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
    reports = json.loads(run.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    passed = sum(r["summary"]["passed"] for r in reports)
    failed = sum(r["summary"]["failed"] for r in reports)
    by_check: dict[tuple[str, str], list[str]] = {}
    for report in reports:
        for check in report["results"]["failed_checks"]:
            stack = Path(check["file_path"]).name.removesuffix(".template.json")
            by_check.setdefault((check["check_id"], check["check_name"]), []).append(f"{stack}:{check['resource'].split('.')[-1]}")
    rate = failed / (passed + failed)
    print(f"checkov {checkov_version()} on {len(templates)} templates: {passed} passed, {failed} failed, failed rate {rate:.1%} (limit {LIMIT:.0%})")
    for (check_id, name), where in sorted(by_check.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(where):3d} {check_id} {name}")
        for resource in where:
            print(f"        {resource}")
    return 0 if rate < LIMIT else 1


def checkov_version() -> str:
    from importlib.metadata import version

    return version("checkov")


if __name__ == "__main__":
    sys.exit(main())
