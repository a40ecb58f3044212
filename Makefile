# One entry point for people and CI: `make` alone lists the targets. Every target that runs
# code depends on a setup target, which is idempotent: it installs only what is missing and is
# quiet when nothing is (scripts/setup.sh; logs of long steps in .tools/logs/).
SHELL := /bin/bash
PY := .venv/bin/python
STACK ?= staging
export PATH := $(CURDIR)/.tools/pulumi:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help setup setup-dev demo test lint verify bench version clean

help: ## list the targets (this text)
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  make %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo "  options: ARGS=\"...\" passes options to demo, test and verify; STACK=name picks verify's stack"

setup: ## install what the demo and deploys need: .venv, the Pulumi engine (Go only if no pulumi 3.x on PATH)
	@bash scripts/setup.sh

setup-dev: ## setup, plus actionlint for the tests (needs Go)
	@bash scripts/setup.sh dev

demo: setup ## run the whole integration offline: emulators, local bridge, pulumi up/destroy
	$(PY) -m sandbox demo $(ARGS)

test: setup-dev ## run the test suite (pytest; ARGS="tests/bridge -x" for a subset)
	$(PY) -m pytest $(ARGS)

lint: setup ## ruff and mypy (strict) over the repository
	.venv/bin/ruff check .
	.venv/bin/mypy .

verify: setup ## end-to-end checks of a deployed stack (STACK=staging by default)
	$(PY) -m ops verify --stack $(STACK) $(ARGS)

bench: setup ## measure the bridge: each figure with its goal, then the cost per million events
	$(PY) bench/bridge_bench.py $(ARGS)

version: ## print this project's version (the VERSION file)
	@cat VERSION

clean: ## remove local state and caches (keeps .venv and .tools)
	rm -rf .pulumi-state .pytest_cache .mypy_cache .ruff_cache
