SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SECONDARY:
.SUFFIXES:
MAKEFLAGS += --no-builtin-rules
.DEFAULT_GOAL := all

# ---------------------------------------------------------------- variables (see `make help`)
ARTIFACTS ?= examples/artifacts
BUILD     ?= build
VENV      ?= .venv
PYTHON    ?= python3

PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
LIB    := $(shell find lib -name '*.py' 2>/dev/null)
# Linux: the CPU build of torch (a plain `torch` would pull a multi-GB CUDA build)
TORCH  ?= $(if $(filter Linux,$(shell uname -s)),torch==2.13.0,)

ARTIFACT_FILES := $(shell find $(ARTIFACTS) -type f 2>/dev/null | sort)
PARSE_CODE := lib/secai/parse.py lib/secai/records.py lib/secai/cli.py $(wildcard lib/secai/parsers/*.py) schemas/finding.schema.json

.PHONY: help install all parse test bench clean

help: ## this list
	@echo "secai — make targets"
	@grep -E '^[a-z][a-zA-Z0-9_-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18 | sed 's/^/  /'
	@echo
	@echo "variables (make VAR=value ...)"
	@echo "  ARTIFACTS=$(ARTIFACTS)    scanner reports to parse (files, directories, artifact zips)"
	@echo "  BUILD=$(BUILD)                  where outputs go"
	@echo "  VENV=$(VENV)                    the virtual environment \`make install\` creates"
	@echo "  PYTHON=$(PYTHON)                interpreter that creates it (Python >= 3.11)"
	@echo "  TORCH=$(TORCH)         torch requirement installed first (Linux: the CPU build)"

# ---------------------------------------------------------------- install
install: $(STAMP) ## create .venv and install secai with its dependencies

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(if $(TORCH),$(PIP) install -q '$(TORCH)')
	$(PIP) install -q -e '.[test]'
	touch $@

# ---------------------------------------------------------------- pipeline
all: parse ## run the whole pipeline on ARTIFACTS

parse: $(BUILD)/findings.jsonl ## scanner reports -> findings

$(BUILD)/findings.jsonl: $(ARTIFACT_FILES) $(PARSE_CODE) | $(STAMP)
	@mkdir -p $(@D)
	$(PY) -m secai.parse $(ARTIFACTS) -o $@ --rejects $(BUILD)/rejects.jsonl

# ---------------------------------------------------------------- checks
test: $(STAMP) ## run the test suite (fails when no test ran)
	@mkdir -p $(BUILD)
	$(PY) -m pytest -q --junitxml=$(BUILD)/test-results.xml
	$(PY) tests/junit_check.py $(BUILD)/test-results.xml

bench: $(STAMP) ## benchmarks -> build/bench/*.json
	$(PY) benchmarks/bench_parse.py --out $(BUILD)/bench/parse.json

clean: ## remove build outputs (keeps .venv)
	rm -rf $(BUILD)
