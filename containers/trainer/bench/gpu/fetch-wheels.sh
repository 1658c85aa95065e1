#!/usr/bin/env bash
# Downloads, into <repo>/.whl, the wheels the trainer needs that the lent GPU machine's image
# lacks (its python3 3.12 already has torch, transformers, peft, tokenizers, accelerate,
# safetensors, numpy, pyarrow, pyyaml). Versions come from constraints.txt. Run here, from the
# repository root, before bench/gpu/run.sh is sent with carry=[".whl"].
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
pin() { grep -i "^$1==" constraints.txt; }
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  "$(pin pydantic)" "$(pin pydantic[-_]core)" "$(pin annotated-types)" "$(pin typing-inspection)"
ls -la .whl
