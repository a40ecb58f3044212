# One entry point for people and CI. Every target that runs code depends on `setup`, which
# is idempotent: it installs only what is missing (the venv, the Pulumi engine).
SHELL := /bin/bash
PY := .venv/bin/python
STACK ?= staging
export PATH := $(CURDIR)/.tools/pulumi:$(PATH)

.PHONY: setup demo test lint verify clean

setup: .venv/.installed
	@bash scripts/ensure-engine.sh
	@bash scripts/ensure-actionlint.sh

.venv/.installed: requirements.txt constraints.txt
	@test -x $(PY) || python3 -m venv .venv
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	@touch $@

demo: setup
	$(PY) -m sandbox demo $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy .

verify: setup
	$(PY) -m ops verify --stack $(STACK) $(ARGS)

clean:
	rm -rf .pulumi-state .pytest_cache .mypy_cache .ruff_cache
