#!/usr/bin/env python3
"""Compare two synthesized cdk.out folders modulo logical-id renames.

A refactor that moves constructs changes logical ids without changing what is deployed; this says
which ids moved and which resources really changed (properties compared with references to other
resources, asset hashes and CDK path metadata blanked out).

    cp -r cdk.out /tmp/before      # before the change (make synth)
    make synth                     # after it
    python3 scripts/template-diff.py /tmp/before cdk.out [-v]
"""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path
from typing import Any

HASH = re.compile(r"[0-9a-f]{64}")


def normalise(value: Any, ids: list[str]) -> Any:
    """The value with references to resources (by logical id) and asset hashes blanked."""
    if isinstance(value, dict):
        if "Ref" in value and value["Ref"] in ids:
            return {"Ref": "<id>"}
        if "Fn::GetAtt" in value and value["Fn::GetAtt"][0] in ids:
            return {"Fn::GetAtt": ["<id>", value["Fn::GetAtt"][1]]}
        return {k: normalise(v, ids) for k, v in value.items() if k != "aws:cdk:path"}
    if isinstance(value, list):
        return [normalise(v, ids) for v in value]
    if isinstance(value, str):
        for logical_id in ids:
            value = value.replace(logical_id, "<id>")
        return HASH.sub("<hash>", value)
    return value


def signatures(template: dict[str, Any]) -> dict[str, list[str]]:
    """Normalised resource -> the logical ids that have it."""
    resources = template.get("Resources", {})
    ids = sorted(resources, key=len, reverse=True)
    out: dict[str, list[str]] = collections.defaultdict(list)
    for logical_id, resource in resources.items():
        body = {k: v for k, v in resource.items() if k != "Metadata"}
        if "DependsOn" in body:
            depends = body["DependsOn"]
            body["DependsOn"] = len(depends) if isinstance(depends, list) else 1
        out[json.dumps(normalise(body, ids), sort_keys=True)].append(logical_id)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__)
        return 2
    before, after, verbose = Path(argv[1]), Path(argv[2]), "-v" in argv
    changed_anywhere = False
    for old_file in sorted(before.rglob("*.template.json")):
        new_file = after / old_file.relative_to(before)
        if not new_file.exists():
            print(f"== {old_file.relative_to(before)}: gone")
            changed_anywhere = True
            continue
        old, new = json.loads(old_file.read_text()), json.loads(new_file.read_text())
        old_sig, new_sig = signatures(old), signatures(new)
        old_ids, new_ids = set(old.get("Resources", {})), set(new.get("Resources", {}))
        removed = [s for s in old_sig if s not in new_sig]
        added = [s for s in new_sig if s not in old_sig]
        changed_anywhere |= bool(removed or added)
        print(
            f"== {old_file.relative_to(before)}: {len(old_ids)} -> {len(new_ids)} resources; "
            f"ids gone {len(old_ids - new_ids)}, new {len(new_ids - old_ids)}; "
            f"content changed {len(removed)}/{len(added)}"
        )
        if verbose:
            print("   ids gone:", sorted(old_ids - new_ids))
            print("   ids new: ", sorted(new_ids - old_ids))
            for s in removed:
                print("   - ", old_sig[s], s[:600])
            for s in added:
                print("   + ", new_sig[s], s[:600])
    return 1 if changed_anywhere else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
