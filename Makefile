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
SCANNERS  ?=
SOURCE_ROOT ?= examples/demo-app
BACKEND   ?= kb
BASE_MODEL ?=
MODELS_DIR ?= $(or $(SECAI_MODELS_DIR),$(HOME)/shared-olmo-models)
NAME      ?=
SKIP_FINETUNE ?=
FT_ARGS   ?=

PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
LIB    := $(shell find lib -name '*.py' 2>/dev/null)
# Linux: the CPU build of torch (a plain `torch` would pull a multi-GB CUDA build)
TORCH  ?= $(if $(filter Linux,$(shell uname -s)),torch==2.13.0,)

# every file under ARTIFACTS (recursively, through symlinks) and every directory, so that editing,
# adding or removing a report rebuilds the findings
ARTIFACT_FILES := $(shell find -L $(ARTIFACTS) \( -type f -o -type d \) 2>/dev/null | sort)
PARSE_CODE := lib/secai/parse.py lib/secai/records.py lib/secai/cli.py $(wildcard lib/secai/parsers/*.py) schemas/finding.schema.json
TINY_MODEL := $(BUILD)/models/base/tiny-olmo2
ANALYZE_CODE := lib/secai/analyze.py lib/secai/cache.py lib/secai/context.py $(wildcard lib/secai/backends/*.py) \
                $(wildcard lib/secai/kb/*) schemas/analysis.schema.json
NARRATE_CODE := lib/secai/narrate.py lib/secai/secrets.py lib/secai/backends/mlx.py schemas/example.schema.json
SPLIT_CODE := lib/secai/split.py lib/secai/secrets.py schemas/example.schema.json schemas/dataset.schema.json
INDEX_CODE := lib/secai/index.py schemas/similar.schema.json
SARIF_CODE := lib/secai/sarif_out.py lib/secai/secrets.py schemas/sarif-2.1.0.json schemas/analysis.schema.json
# the mlx backend runs BASE_MODEL, else the tiny test model (which it builds)
ANALYZE_MODEL := $(or $(BASE_MODEL),$(TINY_MODEL))
ANALYZE_DEPS := $(if $(filter mlx,$(BACKEND)),$(if $(BASE_MODEL),,$(TINY_MODEL)/secai-model.json))

.PHONY: help install all parse analyze index dataset dataset-codefix sarif finetune finetune-stage1 finetune-stage2 eval base-model status \
        demo-model test bench clean examples examples-checkov examples-semgrep examples-bandit

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
	@echo "  SCANNERS=$(SCANNERS)                   directory holding checkov, semgrep and bandit for \`make examples\` (empty: PATH)"
	@echo "  SOURCE_ROOT=$(SOURCE_ROOT) checkout the findings' paths refer to (code context; empty: none)"
	@echo "  BACKEND=$(BACKEND)                  analysis backend: kb (offline knowledge base) or mlx (a model)"
	@echo "  BASE_MODEL=$(BASE_MODEL)                 MLX model for BACKEND=mlx (empty: the tiny test model)"

# ---------------------------------------------------------------- install
install: $(STAMP) ## create .venv and install secai with its dependencies

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(if $(TORCH),$(PIP) install -q '$(TORCH)')
	$(PIP) install -q -e '.[test]'
	touch $@

# ---------------------------------------------------------------- pipeline
all: parse index analyze dataset sarif $(if $(SKIP_FINETUNE),,finetune eval) $(BUILD)/summary.json ## run the whole pipeline on ARTIFACTS (SKIP_FINETUNE=1: no fine-tuning)

parse: $(BUILD)/findings.jsonl ## scanner reports -> findings

$(BUILD)/findings.jsonl: $(ARTIFACT_FILES) $(PARSE_CODE) | $(STAMP)
	@mkdir -p $(@D)
	$(PY) -m secai.parse $(ARTIFACTS) -o $@ --rejects $(BUILD)/rejects.jsonl

analyze: $(BUILD)/analyses.jsonl ## findings -> explained analyses (BACKEND, SOURCE_ROOT)

$(BUILD)/analyses.jsonl: $(BUILD)/findings.jsonl $(BUILD)/index/manifest.json $(ANALYZE_CODE) $(ANALYZE_DEPS) | $(STAMP)
	$(PY) -m secai.analyze $< -o $@ --backend $(BACKEND) --cache $(BUILD)/cache/analyze --index $(BUILD)/index \
	  $(if $(SOURCE_ROOT),--source-root $(SOURCE_ROOT)) $(if $(filter mlx,$(BACKEND)),--model $(ANALYZE_MODEL))

index: $(BUILD)/index/manifest.json ## findings -> FAISS index of MiniLM embeddings (only new ids are embedded)

$(BUILD)/index/manifest.json: $(BUILD)/findings.jsonl $(INDEX_CODE) | $(STAMP)
	$(PY) -m secai.index update --index $(@D) $<
	touch $@  # update leaves an index with nothing new untouched; make still needs it newer than its input

dataset: $(BUILD)/datasets/analysis/manifest.json $(BUILD)/training/codefix.jsonl ## analyses -> training examples -> the stage-1 dataset

# stage 1 (analysis) and stage 2 (code fix) chat examples; one rule per file (make -j safe)
$(BUILD)/training/%.jsonl: $(BUILD)/analyses.jsonl $(NARRATE_CODE) | $(STAMP)
	@mkdir -p $(@D)
	$(PY) -m secai.narrate --stage $* $< -o $@

$(BUILD)/datasets/analysis/manifest.json: $(BUILD)/training/analysis.jsonl $(SPLIT_CODE) | $(STAMP)
	$(PY) -m secai.split -q $< -o $(@D)

# stage 2 needs code-fix examples (findings with code context and a fix that parses); it replays
# part of stage 1 into its training split
SPLIT_CODEFIX = $(PY) -m secai.split -q $(BUILD)/training/codefix.jsonl -o $(BUILD)/datasets/codefix --replay $(BUILD)/datasets/analysis

dataset-codefix: $(BUILD)/datasets/codefix/manifest.json ## the stage-2 (code fix) dataset, when there are code fixes

$(BUILD)/datasets/codefix/manifest.json: $(BUILD)/training/codefix.jsonl $(BUILD)/datasets/analysis/manifest.json $(SPLIT_CODE) | $(STAMP)
	$(SPLIT_CODEFIX)

sarif: $(BUILD)/analyses.sarif ## analyses -> SARIF 2.1.0 for GitHub code scanning (upload-sarif)

$(BUILD)/analyses.sarif: $(BUILD)/analyses.jsonl $(SARIF_CODE) | $(STAMP)
	$(PY) -m secai.sarif_out -q $< -o $@

# ---------------------------------------------------------------- fine-tuning
# Stage 1 (analysis) trains a LoRA adapter on the stage-1 dataset; stage 2 (codefix) continues from
# its adapter on the code-fix dataset; eval measures each on held-out data. secai-lora writes the
# models to MODELS_DIR/fine-tuned/<name>/; $(BUILD)/finetune/<stage>.json (the model's metadata) is
# the Make target, so unchanged data, code and config retrain nothing, and an interrupted run
# continues from its checkpoint the next time (--resume). Base model: BASE_MODEL, else the real
# OLMo-2-1B in the shared store when `make base-model` has put it there, else the tiny test model.
REAL_BASE := $(MODELS_DIR)/base/OLMo-2-1B-mlx-q4
FT_BASE   := $(or $(BASE_MODEL),$(if $(wildcard $(REAL_BASE)/config.json),$(REAL_BASE),$(TINY_MODEL)))
FT_BASE_DEP := $(if $(filter $(TINY_MODEL),$(FT_BASE)),$(TINY_MODEL)/secai-model.json,$(FT_BASE)/config.json)
# the tiny test model trains one epoch: it proves the machinery, more would teach it nothing
FT_FLAGS  := $(or $(FT_ARGS),$(if $(filter $(TINY_MODEL),$(FT_BASE)),--epochs 1))
FT        := $(BUILD)/finetune
LORA_CODE := lib/secai/lora.py lib/secai/trainer.py lib/secai/models.py schemas/model.schema.json config/secai.yaml
LORA      := SECAI_MODELS_DIR=$(MODELS_DIR) $(PY) -m secai.lora
ft_name    = $(if $(NAME),--name $(NAME)-$(1) --overwrite)

finetune: finetune-stage1 finetune-stage2 ## both fine-tuning stages

finetune-stage1: $(FT)/analysis.json ## LoRA stage 1 (analysis) on the stage-1 dataset (BASE_MODEL, NAME, FT_ARGS)

$(FT)/analysis.json: $(BUILD)/datasets/analysis/manifest.json $(LORA_CODE) $(FT_BASE_DEP) | $(STAMP)
	@mkdir -p $(@D)
	$(LORA) train --stage analysis --data $(<D) --base-model $(FT_BASE) $(call ft_name,analysis) --resume -q $(FT_FLAGS) > $@.tmp
	mv $@.tmp $@

finetune-stage2: $(FT)/codefix.json ## LoRA stage 2 (codefix), continuing from the stage-1 adapter

# no code-fix examples (nothing in the reports has a fix with code): stage 2 is skipped, saying so
$(FT)/codefix.json: $(BUILD)/training/codefix.jsonl $(FT)/analysis.json $(SPLIT_CODE) $(LORA_CODE) | $(STAMP)
	if [ -s $< ]; then \
	  $(SPLIT_CODEFIX) && \
	  $(LORA) train --stage codefix --data $(BUILD)/datasets/codefix --from-adapter $(FT)/analysis.json \
	    --base-model $(FT_BASE) $(call ft_name,codefix) --resume -q $(FT_FLAGS) > $@.tmp; \
	else \
	  echo "finetune-stage2: $< has no code-fix examples; stage 2 skipped" >&2; \
	  echo '{"skipped": "no code-fix examples"}' > $@.tmp; \
	fi
	mv $@.tmp $@

eval: $(FT)/eval-analysis.json $(FT)/eval-codefix.json ## held-out evaluation of each stage: report, loss plot, card (and forgetting after stage 2)

$(FT)/eval-%.json: $(FT)/%.json | $(STAMP)
	if grep -q '"skipped"' $<; then cp $< $@.tmp; else $(LORA) eval --adapter $< -o $@.tmp -q; fi
	mv $@.tmp $@

# the real base model: allenai/OLMo-2-0425-1B converted by mlx-lm, 4-bit (needs the network once)
base-model: ## convert allenai/OLMo-2-0425-1B to MLX 4-bit in MODELS_DIR/base/OLMo-2-1B-mlx-q4 (needs the network)
	SECAI_MODELS_DIR=$(MODELS_DIR) $(PY) -m secai.models convert

# ---------------------------------------------------------------- status
status: | $(STAMP) ## what is built and when, counts per stage, the latest model and its eval, the last daemon cycle
	@SECAI_MODELS_DIR=$(MODELS_DIR) $(PY) -m secai.status --build $(BUILD)

$(BUILD)/summary.json: $(BUILD)/analyses.sarif $(BUILD)/datasets/analysis/manifest.json \
                       $(if $(SKIP_FINETUNE),,$(FT)/eval-analysis.json $(FT)/eval-codefix.json) lib/secai/status.py | $(STAMP)
	SECAI_MODELS_DIR=$(MODELS_DIR) $(PY) -m secai.status --build $(BUILD) --write $@

# ---------------------------------------------------------------- models
# The offline test and demo model: random weights, a locally trained tokenizer, nothing downloaded.
# secai.tinymodel builds the folder under a temporary name and renames it into place; its manifest
# (file hashes, content hash, seed) is the target.
demo-model: $(TINY_MODEL)/secai-model.json ## build the tiny random-weight OLMo-2 test model

$(TINY_MODEL)/secai-model.json: lib/secai/tinymodel.py | $(STAMP)
	$(PY) -m secai.tinymodel $(@D)

# ---------------------------------------------------------------- shipped examples
# examples/artifacts/ is committed, so `all` never depends on this (a fresh clone has no scanners).
# Each scanner runs inside the demo project, so report paths are relative to it (app.py, main.tf);
# reports are written under $(BUILD)/examples/ first and moved into place only when the scan worked.
DEMO        := examples/demo-app
# relative to DEMO: Semgrep prefixes each rule id with the config path (semgrep-rules.eval-of-input)
DEMO_RULES  := ../semgrep-rules
DEMO_OUT    := examples/artifacts
DEMO_TMP    := $(abspath $(BUILD))/examples
scanner      = $(if $(SCANNERS),$(abspath $(SCANNERS))/$(1),$(1))
CHECKOV     := $(call scanner,checkov)
SEMGREP     := $(call scanner,semgrep)
BANDIT      := $(call scanner,bandit)
# $(call need,COMMAND): stop with a clear message when a scanner is not installed
need         = command -v $(1) >/dev/null 2>&1 || { echo "make examples: $(notdir $(1)) not found $(if $(SCANNERS),in SCANNERS=$(SCANNERS),on PATH) (install it, or point SCANNERS at the directory holding it)" >&2; exit 1; }

examples: examples-checkov examples-semgrep examples-bandit ## regenerate examples/artifacts with checkov, semgrep and bandit (when installed)

examples-checkov:
	@$(call need,$(CHECKOV))
	rm -rf $(DEMO_TMP)/checkov && mkdir -p $(DEMO_TMP)/checkov $(DEMO_OUT)
	cd $(DEMO) && CHECKOV_PARALLELIZATION_TYPE=none PYTHONHASHSEED=0 $(CHECKOV) --skip-download --soft-fail --quiet -d . -o json -o sarif --output-file-path $(DEMO_TMP)/checkov >/dev/null
	mv $(DEMO_TMP)/checkov/results_json.json $(DEMO_OUT)/checkov.json
	mv $(DEMO_TMP)/checkov/results_sarif.sarif $(DEMO_OUT)/checkov.sarif

examples-semgrep:
	@$(call need,$(SEMGREP))
	rm -rf $(DEMO_TMP)/semgrep && mkdir -p $(DEMO_TMP)/semgrep $(DEMO_OUT)
	cd $(DEMO) && SEMGREP_ENABLE_VERSION_CHECK=0 SEMGREP_SEND_METRICS=off $(SEMGREP) scan --quiet --metrics off \
	  --config $(DEMO_RULES) --json-output=$(DEMO_TMP)/semgrep/semgrep.json --sarif-output=$(DEMO_TMP)/semgrep/semgrep.sarif . >/dev/null
	mv $(DEMO_TMP)/semgrep/semgrep.json $(DEMO_TMP)/semgrep/semgrep.sarif $(DEMO_OUT)/

examples-bandit:
	@$(call need,$(BANDIT))
	rm -rf $(DEMO_TMP)/bandit && mkdir -p $(DEMO_TMP)/bandit $(DEMO_OUT)
	cd $(DEMO) && $(BANDIT) -q --exit-zero -r . -f json -o $(DEMO_TMP)/bandit/bandit.json
	cd $(DEMO) && $(BANDIT) -q --exit-zero -r . -f sarif -o $(DEMO_TMP)/bandit/bandit.sarif
	mv $(DEMO_TMP)/bandit/bandit.json $(DEMO_TMP)/bandit/bandit.sarif $(DEMO_OUT)/

# ---------------------------------------------------------------- checks
test: $(STAMP) ## run the test suite (fails when no test ran)
	@mkdir -p $(BUILD)
	$(PY) -m pytest -q --junitxml=$(BUILD)/test-results.xml
	$(PY) tests/junit_check.py $(BUILD)/test-results.xml

bench: $(TINY_MODEL)/secai-model.json | $(STAMP) ## benchmarks -> build/bench/*.json
	$(PY) benchmarks/bench_parse.py --out $(BUILD)/bench/parse.json
	$(PY) benchmarks/bench_analyze.py --out $(BUILD)/bench/analyze.json --model $(TINY_MODEL)
	$(PY) benchmarks/bench_narrate.py --out $(BUILD)/bench/narrate.json
	$(PY) benchmarks/bench_index.py --out $(BUILD)/bench/index.json

clean: ## remove build outputs (keeps .venv)
	rm -rf $(BUILD)

