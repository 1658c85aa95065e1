# Two entry points (see README): `make synth` runs the main job, `make test` runs every test.
# Each installs what it needs first (npm packages, a Python virtualenv) and is idempotent.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := synth

PYTHON ?= python3
VENV := .venv
NODE_STAMP := node_modules/.install-stamp
VENV_STAMP := $(VENV)/.install-stamp
PY_PACKAGES := containers/eval containers/data containers/trainer
TS_TESTS = $(shell find test lambda -name '*.test.ts' 2>/dev/null | sort)
DOCKERFILES = $(sort $(wildcard containers/*/Dockerfile*))

.PHONY: synth test install test-ts test-py lint constraints clean

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(VENV_STAMP): requirements-dev.txt constraints.txt $(addsuffix /pyproject.toml,$(PY_PACKAGES))
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $@

install: $(NODE_STAMP) $(VENV_STAMP)

## The main job: synthesize every stage with all compliance checks, lint templates, print a summary.
synth: install
	npx tsx scripts/synth-all.ts

## Every test: type-check, lint, TypeScript tests, then each Python package's lint, types and tests.
test: install lint test-ts test-py

lint:
	npx tsc --noEmit -p .
	npx eslint --max-warnings 0 .
	$(VENV)/bin/hadolint $(DOCKERFILES)

test-ts:
	node --import tsx --test $(TS_TESTS)

test-py:
	for pkg in $(PY_PACKAGES); do \
	  (cd $$pkg && ../../$(VENV)/bin/ruff check . && ../../$(VENV)/bin/mypy && ../../$(VENV)/bin/pytest -q); \
	done

## Re-pin the Python dependencies after changing requirements-dev.txt or a pyproject.toml.
constraints:
	$(VENV)/bin/pip freeze --exclude-editable | sort > constraints.txt

clean:
	rm -rf node_modules $(VENV) cdk.out
