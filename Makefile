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
SCANNERS_VENV ?= .scanners
SCANNERS  ?= $(if $(wildcard $(SCANNERS_VENV)/bin/bandit),$(SCANNERS_VENV)/bin,)
SEMGREP_RULES ?= examples/semgrep-rules
SOURCE_ROOT ?= examples/demo-app
REALSCANS ?= ../shared/realscans
BACKEND   ?= kb
BASE_MODEL ?=
MODELS_DIR ?= $(or $(SECAI_MODELS_DIR),$(HOME)/shared-olmo-models)
NAME      ?=
SKIP_FINETUNE ?=
STAGES    ?= 2
PUSH      ?=
PUSH_MODEL ?= 1
FT_ARGS   ?=
TEST_JOBS ?= auto

PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
LIB    := $(shell find lib -name '*.py' 2>/dev/null)
# Linux: the CPU build of torch (a plain `torch` would pull a multi-GB CUDA build)
TORCH  ?= $(if $(filter Linux,$(shell uname -s)),torch==2.13.0,)

# every file under ARTIFACTS (recursively, through symlinks) and every directory, so that editing,
# adding or removing a report rebuilds the findings
ARTIFACT_FILES := $(shell find -L $(ARTIFACTS) \( -type f -o -type d \) 2>/dev/null | sort)
# A stage's code: every file its command imports (lib/secai/ops/makedeps.py follows the imports), the
# schemas and the defaults, so editing any of them rebuilds exactly what it makes.
code = $(shell $(PYTHON) lib/secai/ops/makedeps.py $(1)) $(wildcard schemas/*.json) config/secai.yaml
PARSE_CODE   := $(call code,secai.commands.parse)
TINY_MODEL := $(BUILD)/models/base/tiny-olmo2
ANALYZE_CODE := $(call code,secai.commands.analyze)
NARRATE_CODE := $(call code,secai.commands.narrate)
SPLIT_CODE   := $(call code,secai.commands.split)
INDEX_CODE   := $(call code,secai.commands.index)
SARIF_CODE   := $(call code,secai.commands.sarif)
# The base model (fine-tuning, and the mlx backend): BASE_MODEL, else the real OLMo-2-1B in the
# shared store when `make base-model` has put it there, else the tiny test model (which is built).
REAL_BASE := $(MODELS_DIR)/base/OLMo-2-1B-mlx-q4
FT_BASE   := $(or $(BASE_MODEL),$(if $(wildcard $(REAL_BASE)/config.json),$(REAL_BASE),$(TINY_MODEL)))
FT_BASE_DEP := $(if $(filter $(TINY_MODEL),$(FT_BASE)),$(TINY_MODEL)/secai-model.json,$(FT_BASE)/config.json)
ANALYZE_DEPS := $(if $(filter mlx,$(BACKEND)),$(FT_BASE_DEP))

.PHONY: scanners kb help install all parse analyze index dataset dataset-codefix sarif finetune finetune-stage1 finetune-stage2 eval base-model status \
        report chromium shellcheck openblas quality quality-realscans demo-model test lint bench clean examples examples-checkov examples-semgrep examples-bandit

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
	@echo "  SCANNERS=$(SCANNERS)                   directory holding checkov, semgrep and bandit (default: $(SCANNERS_VENV)/bin after \`make scanners\`, else PATH)"
	@echo "  VERIFY=$(VERIFY)                    1: keep only code fixes the reporting scanner confirms (default: 1 when all three scanners are found)"
	@echo "  SEMGREP_RULES=$(SEMGREP_RULES)  Semgrep rules the reports were made with (for VERIFY)"
	@echo "  REALSCANS=$(REALSCANS)  real scans with their sources: make quality-realscans measures each"
	@echo "  SOURCE_ROOT=$(SOURCE_ROOT) checkout the findings' paths refer to (code context; empty: none)"
	@echo "  BACKEND=$(BACKEND)                  analysis backend: kb (offline knowledge base) or mlx (a model)"
	@echo "  BASE_MODEL=$(BASE_MODEL)                 base MLX model for BACKEND=mlx and fine-tuning (empty: MODELS_DIR's OLMo-2-1B-mlx-q4, else the tiny test model)"
	@echo "  MODELS_DIR=$(MODELS_DIR)  shared model store: base/ and fine-tuned/ (SECAI_MODELS_DIR)"
	@echo "  NAME=$(NAME)                       fine-tuned model names NAME-analysis, NAME-codefix (empty: secai-<stage>-YYYYMMDD-HHMMSS)"
	@echo "  SKIP_FINETUNE=$(SKIP_FINETUNE)              1: \`all\` builds the data (findings, index, analyses, SARIF, dataset) but trains nothing"
	@echo "  STAGES=$(STAGES)                     2: stage 1 then stage 2 from its adapter; 1: one model on both kinds of example"
	@echo "  FT_ARGS=$(FT_ARGS)                    extra secai-lora train flags (empty: --epochs 1 on the tiny test model)"
	@echo "  PUSH=$(PUSH)                       1: \`all\` ends by publishing (make push: DATASET_REPO, MODEL_REPO, PUSH_FLAGS)"
	@echo "  PUSH_MODEL=$(PUSH_MODEL)                 0: publish the dataset only"
	@echo "  DATASET_REPO=$(DATASET_REPO)               Hub dataset OWNER/NAME make push publishes the stage-1 dataset to (empty: push.dataset_repo of the config)"
	@echo "  MODEL_REPO=$(MODEL_REPO)                 Hub model OWNER/NAME make push publishes the model to (empty: push.model_repo of the config)"
	@echo "  MODEL_DIR=$(MODEL_DIR)                  the model folder make push publishes (empty: the latest fine-tuned model)"
	@echo "  PUSH_FLAGS=$(PUSH_FLAGS)                 extra secai-push flags (e.g. --dry-run: stage only)"
	@echo "  SCANNERS_VENV=$(SCANNERS_VENV)     where make scanners installs the pinned scanners"
	@echo "  TEST_JOBS=$(TEST_JOBS)               make test: pytest worker processes (pytest-xdist; auto: one per core, 0: in this process)"
	@echo "  SCANNER_PINS=$(SCANNER_PINS)  what make scanners installs (make kb harvests from it)"

# ---------------------------------------------------------------- install
install: $(STAMP) ## create .venv and install secai with its dependencies

$(STAMP): pyproject.toml
	$(openblas)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(if $(TORCH),$(PIP) install -q '$(TORCH)')
	$(PIP) install -q -e '.[test]'
	touch $@

# ---------------------------------------------------------------- pipeline
all: parse index analyze dataset sarif $(if $(SKIP_FINETUNE),,finetune eval) $(BUILD)/summary.json $(BUILD)/report.html $(if $(PUSH),push) ## run the whole pipeline on ARTIFACTS, ending with BUILD/report.html (SKIP_FINETUNE=1: no fine-tuning; PUSH=1: publish)

parse: $(BUILD)/findings.jsonl ## scanner reports -> findings

$(BUILD)/findings.jsonl: $(ARTIFACT_FILES) $(PARSE_CODE) | $(STAMP)
	@mkdir -p $(@D)
	$(PY) -m secai.commands.parse $(ARTIFACTS) -o $@ --rejects $(BUILD)/rejects.jsonl

analyze: $(BUILD)/analyses.jsonl ## findings -> explained analyses (BACKEND, SOURCE_ROOT)

# the Semgrep rule files (and folders, so adding or removing one counts) the reports were made with:
# the analyses quote their rules (secai.analysis.rules)
SEMGREP_RULE_FILES := $(if $(SEMGREP_RULES),$(shell find -L $(SEMGREP_RULES) \( -name '*.yaml' -o -name '*.yml' -o -type d \) 2>/dev/null | sort))
$(BUILD)/analyses.jsonl: $(BUILD)/findings.jsonl $(BUILD)/index/manifest.json $(ANALYZE_CODE) $(ANALYZE_DEPS) $(SEMGREP_RULE_FILES) | $(STAMP)
	$(PY) -m secai.commands.analyze $< -o $@ --backend $(BACKEND) --cache $(BUILD)/cache/analyze --index $(BUILD)/index \
	  $(if $(SOURCE_ROOT),--source-root $(SOURCE_ROOT)) $(if $(wildcard $(SEMGREP_RULES)),--semgrep-rules $(SEMGREP_RULES)) $(if $(SCANNERS),--scanners-dir $(SCANNERS)) \
	  $(if $(filter mlx,$(BACKEND)),--model $(FT_BASE))

index: $(BUILD)/index/manifest.json ## findings -> FAISS index of MiniLM embeddings (only new ids are embedded)

$(BUILD)/index/manifest.json: $(BUILD)/findings.jsonl $(INDEX_CODE) | $(STAMP)
	$(PY) -m secai.commands.index update --index $(@D) $<
	touch $@  # update leaves an index with nothing new untouched; make still needs it newer than its input

dataset: $(BUILD)/datasets/analysis/manifest.json $(BUILD)/training/codefix.jsonl ## analyses -> training examples -> the stage-1 dataset

# stage 1 (analysis) and stage 2 (code fix) chat examples; one rule per file (make -j safe).
# With VERIFY=1 a code fix is kept only when the scanner that reported the finding no longer does on
# a fixed copy of the file; the counts go to stderr and to codefix-verify.json (a by-product).
VERIFY_ARGS = --verify-fixes --source-root $(SOURCE_ROOT) --semgrep-config $(SEMGREP_RULES) \
              --verify-report $(BUILD)/training/codefix-verify.json $(if $(SCANNERS),--scanners-dir $(SCANNERS))
$(BUILD)/training/%.jsonl: $(BUILD)/analyses.jsonl $(NARRATE_CODE) | $(STAMP)
	@mkdir -p $(@D)
	$(PY) -m secai.commands.narrate --stage $* $< -o $@ $(if $(and $(filter codefix,$*),$(filter 1,$(VERIFY)),$(SOURCE_ROOT)),$(VERIFY_ARGS))

$(BUILD)/datasets/analysis/manifest.json: $(BUILD)/training/analysis.jsonl $(SPLIT_CODE) | $(STAMP)
	$(PY) -m secai.commands.split -q $< -o $(@D)

# stage 2 needs code-fix examples (findings with code context and a fix that parses); it replays
# part of stage 1 into its training split. Without code-fix examples there is no stage-2 dataset.
dataset-codefix: $(BUILD)/datasets/codefix/manifest.json ## the stage-2 (code fix) dataset, when there are code fixes

$(BUILD)/datasets/codefix/manifest.json: $(BUILD)/training/codefix.jsonl $(BUILD)/datasets/analysis/manifest.json $(SPLIT_CODE) | $(STAMP)
	if [ -s $< ]; then \
	  $(PY) -m secai.commands.split -q $< -o $(@D) --replay $(BUILD)/datasets/analysis; \
	else \
	  echo "dataset-codefix: $< has no code-fix examples; no stage-2 dataset" >&2; rm -rf $(@D); \
	fi

sarif: $(BUILD)/analyses.sarif ## analyses -> SARIF 2.1.0 for GitHub code scanning (upload-sarif)

$(BUILD)/analyses.sarif: $(BUILD)/analyses.jsonl $(SARIF_CODE) | $(STAMP)
	$(PY) -m secai.commands.sarif -q $< $(if $(SOURCE_ROOT),--source-root $(SOURCE_ROOT)) -o $@

# ---------------------------------------------------------------- fine-tuning
# Stage 1 (analysis) trains a LoRA adapter on the stage-1 dataset; stage 2 (codefix) continues from
# its adapter on the code-fix dataset; eval measures each on held-out data. secai-lora writes the
# models to MODELS_DIR/fine-tuned/<name>/; $(BUILD)/finetune/<stage>.json (the model's metadata) is
# the Make target, so unchanged data, code and config retrain nothing, and an interrupted run
# continues from its checkpoint the next time (--resume). The base model is FT_BASE (see above).
# the tiny test model trains one epoch: it proves the machinery, more would teach it nothing
FT_FLAGS  := $(or $(FT_ARGS),$(if $(filter $(TINY_MODEL),$(FT_BASE)),--epochs 1))
FT        := $(BUILD)/finetune
LORA_CODE := $(call code,secai.commands.lora)
LORA      := SECAI_MODELS_DIR=$(MODELS_DIR) $(PY) -m secai.commands.lora
ft_name    = $(if $(NAME),--name $(NAME)-$(1) --overwrite)

# STAGES=1: one model trained on both kinds of example (a combined dataset) instead of two in sequence
FT_MODELS := $(if $(filter 1,$(STAGES)),$(FT)/combined.json,$(FT)/analysis.json $(FT)/codefix.json)
FT_EVALS  := $(patsubst $(FT)/%,$(FT)/eval-%,$(FT_MODELS))

finetune: $(FT_MODELS) ## fine-tune: stage 1 then stage 2 (STAGES=1: one combined stage)

finetune-stage1: $(FT)/analysis.json ## LoRA stage 1 (analysis) on the stage-1 dataset (BASE_MODEL, NAME, FT_ARGS)

$(FT)/analysis.json: $(BUILD)/datasets/analysis/manifest.json $(LORA_CODE) $(FT_BASE_DEP) | $(STAMP)
	@mkdir -p $(@D)
	$(LORA) train --stage analysis --data $(<D) --base-model $(FT_BASE) $(call ft_name,analysis) --resume -q $(FT_FLAGS) > $@.tmp
	mv $@.tmp $@

finetune-stage2: $(FT)/codefix.json ## LoRA stage 2 (codefix), continuing from the stage-1 adapter

# no code-fix examples (nothing in the reports has a fix with code): stage 2 is skipped, saying so.
# The stage-2 dataset is made by its own rule (order-only here: it changes only when these prerequisites do).
$(FT)/codefix.json: $(BUILD)/training/codefix.jsonl $(FT)/analysis.json $(SPLIT_CODE) $(LORA_CODE) | $(BUILD)/datasets/codefix/manifest.json $(STAMP)
	if [ -s $< ]; then \
	  $(LORA) train --stage codefix --data $(BUILD)/datasets/codefix --from-adapter $(FT)/analysis.json \
	    --base-model $(FT_BASE) $(call ft_name,codefix) --resume -q $(FT_FLAGS) > $@.tmp; \
	else \
	  echo "finetune-stage2: $< has no code-fix examples; stage 2 skipped" >&2; \
	  echo '{"skipped": "no code-fix examples"}' > $@.tmp; \
	fi
	mv $@.tmp $@

$(FT)/combined.json: $(BUILD)/training/analysis.jsonl $(BUILD)/training/codefix.jsonl $(SPLIT_CODE) $(LORA_CODE) $(FT_BASE_DEP) | $(STAMP)
	@mkdir -p $(@D)
	$(PY) -m secai.commands.split -q $(BUILD)/training/analysis.jsonl $(BUILD)/training/codefix.jsonl -o $(BUILD)/datasets/combined
	$(LORA) train --stage combined --data $(BUILD)/datasets/combined --base-model $(FT_BASE) $(call ft_name,combined) --resume -q $(FT_FLAGS) > $@.tmp
	mv $@.tmp $@

eval: $(FT_EVALS) ## held-out evaluation of each model: report, loss plot, card (and forgetting after stage 2)

$(FT)/eval-%.json: $(FT)/%.json | $(STAMP)
	if grep -q '"skipped"' $<; then cp $< $@.tmp; else $(LORA) eval --adapter $< -o $@.tmp -q; fi
	mv $@.tmp $@

# the real base model: allenai/OLMo-2-0425-1B converted by mlx-lm, 4-bit (needs the network once)
base-model: ## convert allenai/OLMo-2-0425-1B to MLX 4-bit in MODELS_DIR/base/OLMo-2-1B-mlx-q4 (needs the network)
	SECAI_MODELS_DIR=$(MODELS_DIR) $(PY) -m secai.training.store convert

# ---------------------------------------------------------------- status
status: | $(STAMP) ## what is built and when, counts per stage, the latest model and its eval, the last daemon cycle
	@SECAI_MODELS_DIR=$(MODELS_DIR) $(PY) -m secai.ops.status --build $(BUILD)

$(BUILD)/summary.json: $(BUILD)/analyses.sarif $(BUILD)/datasets/analysis/manifest.json $(BUILD)/quality.json \
                       $(if $(SKIP_FINETUNE),,$(FT_EVALS)) $(call code,secai.ops.status) | $(STAMP)
	SECAI_MODELS_DIR=$(MODELS_DIR) $(PY) -m secai.ops.status --build $(BUILD) --write $@

# ---------------------------------------------------------------- report
# one static page of the whole build (secai-report); the verification report is a by-product of the
# code-fix examples, the models' numbers and loss curves come in through summary.json's prerequisites
report: $(BUILD)/report.html ## one page to open: findings, fixes as diffs and their verification, dataset, loss curves, eval, quality

$(BUILD)/report.html: $(BUILD)/analyses.jsonl $(BUILD)/training/codefix.jsonl $(BUILD)/datasets/analysis/manifest.json \
                      $(BUILD)/quality.json $(BUILD)/summary.json $(call code,secai.commands.report) | $(STAMP)
	SECAI_MODELS_DIR=$(MODELS_DIR) $(PY) -m secai.commands.report -q --build $(BUILD) -o $@

# ---------------------------------------------------------------- quality
quality: $(BUILD)/quality.json ## per tool and language: templates, verified fixes, private text, unsupported severity claims

$(BUILD)/quality.json: $(BUILD)/analyses.jsonl $(BUILD)/training/analysis.jsonl $(BUILD)/training/codefix.jsonl \
                       $(call code,secai.dataset.quality) | $(STAMP)
	$(PY) -m secai.dataset.quality --build $(BUILD) -o $@ $(if $(filter quality,$(MAKECMDGOALS)),,-q)

# the yardstick: the whole pipeline (no fine-tuning) and its quality on each project of REALSCANS
quality-realscans: | $(STAMP) ## make all + quality on each project of REALSCANS into BUILD/realscans/ (skipped when absent)
	@if [ ! -f $(REALSCANS)/README.md ]; then echo "quality-realscans: $(REALSCANS) is absent; skipped" >&2; exit 0; fi; \
	for dir in $(REALSCANS)/*/reports; do p=$$(basename $$(dirname $$dir)); \
	  $(MAKE) --no-print-directory all quality SKIP_FINETUNE=1 ARTIFACTS=$$dir SOURCE_ROOT=$$(dirname $$dir)/src \
	    SEMGREP_RULES=$(REALSCANS)/semgrep-rules BUILD=$(BUILD)/realscans/$$p || exit 1; \
	done

# ---------------------------------------------------------------- models
# The offline test and demo model: random weights, a locally trained tokenizer, nothing downloaded.
# secai.training.tinymodel builds the folder under a temporary name and renames it into place; its manifest
# (file hashes, content hash, seed) is the target.
demo-model: $(TINY_MODEL)/secai-model.json ## build the tiny random-weight OLMo-2 test model

$(TINY_MODEL)/secai-model.json: $(call code,secai.training.tinymodel) | $(STAMP)
	$(PY) -m secai.training.tinymodel $(@D)

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
# VERIFY (see help): on when checkov, semgrep and bandit are all found
found        = $(shell command -v $(call scanner,$(1)) 2>/dev/null)
VERIFY      ?= $(if $(and $(call found,checkov),$(call found,semgrep),$(call found,bandit)),1,0)
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

# checkov, semgrep and bandit in their own virtual environment (their dependencies never meet
# secai's); `make examples`, VERIFY and the tests find them there. `make test` installs them.
# cwe2 (the MITRE CWE catalogue) is read there too, by `make kb`.
SCANNER_PINS ?= checkov==3.3.30 semgrep==1.185.0 bandit==1.9.4 cwe2==3.0.0

scanners: $(SCANNERS_VENV)/.installed ## install checkov, semgrep and bandit (pinned) into .scanners/

$(SCANNERS_VENV)/.installed:
	$(PYTHON) -m venv $(SCANNERS_VENV)
	$(SCANNERS_VENV)/bin/pip install -q --upgrade pip
	$(SCANNERS_VENV)/bin/pip install -q $(SCANNER_PINS)
	touch $@

# The rule knowledge harvested from the scanners and the CWE catalogue (secai-kb harvest): committed
# data files, so `all` never depends on this (a fresh clone has no scanners). The scanners' own
# interpreter reads them (secai.analysis.probes); a new scanner pin means a new harvest.
# A scanner venv made before cwe2 was pinned gets it here.
KB_DIR := lib/secai/analysis/kb/harvested
KB_SCANNERS = $(or $(SCANNERS),$(SCANNERS_VENV)/bin)
kb: $(SCANNERS_VENV)/.installed | $(STAMP) ## harvest checkov's checks, bandit's tests and the CWE catalogue into lib/secai/analysis/kb/harvested/
	$(KB_SCANNERS)/python -c 'import cwe2' 2>/dev/null || $(KB_SCANNERS)/python -m pip install -q $(filter cwe2==%,$(SCANNER_PINS))
	$(PY) -m secai.commands.kb harvest --scanners-dir $(KB_SCANNERS) -o $(KB_DIR)

# ---------------------------------------------------------------- checks
test: $(STAMP) $(SCANNERS_VENV)/.installed chromium shellcheck openblas ## lint, then the test suite with the scanners, chromium, shellcheck and OpenBLAS installed (fails when no test ran)
	@mkdir -p $(BUILD)
	$(VENV)/bin/ruff check -q .
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile --junitxml=$(BUILD)/test-results.xml
	$(PY) tests/junit_check.py $(BUILD)/test-results.xml

# $(call debian,PACKAGE,TEST,WHAT IS SKIPPED): Debian's PACKAGE installed with apt-get when the shell
# command TEST fails and this runs as root (CI); otherwise it says what is skipped and why.
debian = @{ $(2); } >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make $@: apt-get install $(1)" >&2; \
	  apt-get install -y -q $(1) >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q $(1) >/dev/null; }; \
	else echo "make $@: $(1) not found and not root: $(3) will be skipped" >&2; fi

# Debian's chromium, for the browser test of secai-report (headless, driven through playwright's own
# driver; no browser is downloaded).
chromium: ## install Debian's chromium when missing (as root), for the report's browser test
	$(call debian,chromium,command -v chromium || command -v chromium-browser,the browser test of secai-report)

# Debian's shellcheck, for the test of action.yml's scripts (actionlint checks a workflow's, not a
# composite action's).
shellcheck: ## install Debian's shellcheck when missing (as root), for the GitHub Action's script test
	$(call debian,shellcheck,command -v shellcheck,the action's script test)

# Linux: an OpenBLAS for MLX's CPU matrix products (the mlx-cpu wheel bundles the reference BLAS,
# ~30x slower here); found as secai.cpublas finds it, through the dynamic linker.
# `make install` runs it too.
openblas = $(if $(filter Linux,$(shell uname -s)),$(call debian,libopenblas0-pthread,$(PYTHON) -c \
	  'import ctypes.util as u; assert u.find_library("openblas")',fast CPU matrix products in MLX))
openblas: ## Linux: install Debian's OpenBLAS when the dynamic linker knows none (as root), for MLX on the CPU
	$(openblas)

lint: $(STAMP) ## check the Python code with ruff (rules: [tool.ruff] in pyproject.toml)
	$(VENV)/bin/ruff check .

bench: $(TINY_MODEL)/secai-model.json $(BUILD)/datasets/analysis/manifest.json | $(STAMP) ## benchmarks -> build/bench/*.json
	$(PY) benchmarks/bench_parse.py --out $(BUILD)/bench/parse.json
	$(PY) benchmarks/bench_analyze.py --out $(BUILD)/bench/analyze.json --model $(TINY_MODEL)
	$(PY) benchmarks/bench_narrate.py --out $(BUILD)/bench/narrate.json
	$(PY) benchmarks/bench_index.py --out $(BUILD)/bench/index.json
	$(PY) benchmarks/bench_lora.py --out $(BUILD)/bench/lora.json --model $(TINY_MODEL) --data $(BUILD)/datasets/analysis

clean: ## remove build outputs (keeps .venv)
	rm -rf $(BUILD)

# ---------------------------------------------------------------- daemon and publishing
# `make daemon-install` sets up a launchd agent (macOS) or a systemd user timer (Linux) that runs
# `make daemon-cycle` every 5 minutes: under a lock, secai-fetch downloads new CI runs into
# artifacts/runs/, `make all` rebuilds incrementally, secai-push publishes when push.enabled
# (config/secai.yaml: daemon:, fetch:, push:). `make push` (or `make all PUSH=1`) publishes the
# stage-1 dataset and, unless PUSH_MODEL=0, the latest fine-tuned model (or MODEL_DIR):
#   DATASET_REPO=OWNER/NAME (default push.dataset_repo)   MODEL_DIR=folder MODEL_REPO=OWNER/NAME
#   PUSH_FLAGS=--dry-run (stage and list only), --public, --revision BRANCH, ...
DATASET_REPO ?=
MODEL_REPO   ?=
MODEL_DIR    ?=
PUSH_FLAGS   ?=

.PHONY: daemon-cycle daemon-install daemon-uninstall daemon-status push

daemon-cycle: | $(STAMP) ## one daemon cycle: fetch new CI artifacts, build, publish (a second one exits at once)
	$(PY) -m secai.commands.daemon cycle

daemon-install: | $(STAMP) ## run daemon-cycle every 5 min (launchd agent on macOS, systemd user timer on Linux)
	$(PY) -m secai.commands.daemon install

daemon-uninstall: | $(STAMP) ## stop and remove the daemon's launchd agent or systemd units
	$(PY) -m secai.commands.daemon uninstall

daemon-status: | $(STAMP) ## the daemon: installed, running, last cycles, fetched runs, pushes
	$(PY) -m secai.commands.daemon status

PUSH_MODELS := $(if $(filter 0,$(PUSH_MODEL)),,$(if $(MODEL_DIR),,$(if $(SKIP_FINETUNE),,$(FT_MODELS))))

push: $(BUILD)/datasets/analysis/manifest.json $(PUSH_MODELS) | $(STAMP) ## publish the dataset and the latest model (PUSH_MODEL=0: not the model) to the Hugging Face Hub, one commit each
	$(PY) -m secai.commands.push dataset $(BUILD)/datasets/analysis $(if $(DATASET_REPO),--repo $(DATASET_REPO)) $(PUSH_FLAGS)
	$(if $(filter 0,$(PUSH_MODEL)),,model="$(or $(MODEL_DIR),$$(SECAI_MODELS_DIR=$(MODELS_DIR) $(PY) -m secai.ops.status --build $(BUILD) --latest-model))"; \
	  if [ -n "$$model" ]; then $(PY) -m secai.commands.push model "$$model" $(if $(MODEL_REPO),--repo $(MODEL_REPO)) $(PUSH_FLAGS); \
	  else echo "push: no fine-tuned model to publish" >&2; fi)
