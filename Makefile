# embedft: fine-tune text-embedding models with hard-negative mining and MultipleNegativesRankingLoss.
# Every target creates .venv on first use; `make help` lists them.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first, from TORCH_SPEC, so the other packages never pick its build. By default
# scripts/torch_spec.py chooses: the CPU wheel where there is no NVIDIA driver (PyPI's Linux torch is the multi-GB
# CUDA build), else the CUDA build the driver runs. Give your own to override it, e.g.
# TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
TORCH_SPEC ?= $(shell $(PYTHON) scripts/torch_spec.py)
# The lock of tested versions (make lock writes it): every other package is installed at the version the suite
# passed on. LOCK= installs from pyproject.toml's ranges instead, upgrading to the newest (as make test-latest does).
LOCK ?= requirements/constraints.txt
LATEST_VENV ?= .venv-latest
CONFIG ?= configs/run_embedding_mnrl.yaml
SET ?=
# SET reaches the scripts through the environment as one string (--set-line "$$SET"), never parsed by the shell: a
# stray quote in it is one error line, not a shell syntax error.
export SET
MODEL ?=
TEXT ?=
FILE ?=
CORPUS ?=
TOP_K ?= 5
RESUME ?=
DRY_RUN ?=
TB_PORT ?=
PYTEST_ARGS ?=
RUN ?= outputs/latest
INDEX_OUT ?=
DATA ?=
SEEDS ?= 12 13
BENCH_CONFIG ?= configs/bench-medquad.yaml
BENCH_DIR ?= outputs/bench-quality
RECIPES ?= configs/ablation.yaml
ABLATION_DIR ?= outputs/bench-ablation
N ?= 10000
# Several processes (GPUs) through torchrun: NPROC per machine; NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT for several.
NPROC ?= 1
NNODES ?= 1
NODE_RANK ?= 0
MASTER_ADDR ?=
MASTER_PORT ?=
OUT ?= outputs/bench-scale/$(N)
SHAPE ?= minilm
DEVICE ?=
BATCH ?= 32
STEPS ?= 20

# One process: the script itself; more: every process runs it under torchrun (embedft.cli.torchrun checks the layout).
TRAIN_RUNNER = $(if $(filter-out 1,$(NPROC) $(NNODES)),$(PY) -m embedft.cli.torchrun --nproc $(NPROC) --nnodes $(NNODES) \
	--node-rank $(NODE_RANK) $(if $(MASTER_ADDR),--master-addr $(MASTER_ADDR)) \
	$(if $(MASTER_PORT),--master-port $(MASTER_PORT)) --,$(PY))

# DRY_RUN=1 (or true/yes) checks the data mapping and stops; 0, false, no or empty train.
DRY = $(filter 1 true yes,$(DRY_RUN))

# eval/infer use the evaluated run's own config unless CONFIG is given on the command line or in the environment.
CONFIG_IF_GIVEN = $(if $(filter command line environment environment override,$(origin CONFIG)),--config $(CONFIG))

.DEFAULT_GOAL := help
.PHONY: help setup setup-embed-dirs train-embed train-embed-tb eval-embed infer-embed export-index report bench-quality bench-ablation bench-scale bench-throughput test lint \
	config-reference test-latest lock

help: ## List the targets
	@echo "embedft make targets (CONFIG=path picks a config, SET=\"key=value ...\" overrides keys):"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# torch first (TORCH_SPEC, only when the venv has none), then embedft with the lock; the installed torch is pinned as
# a constraint too, so neither the lock nor an upgrade ever replaces the build TORCH_SPEC chose.
$(VENV)/.installed: pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	@$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-pin.txt
	$(PY) -m pip install -q $(if $(LOCK),-c $(LOCK),--upgrade --upgrade-strategy eager) -c $(VENV)/torch-pin.txt -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed ## Create .venv and install embedft (torch first, then the lock of tested versions)

setup-embed-dirs: $(VENV)/.installed ## Check the config and create output_dir (and cache_dir)
	$(PY) scripts/show_config.py --make-dirs --config $(CONFIG) $(if $(SET),--set-line "$$SET")

train-embed: $(VENV)/.installed ## Mine hard negatives, train with MNRL, evaluate before/after (RESUME=run|latest, NPROC=N, DRY_RUN=1)
	$(if $(DRY),$(PY),$(TRAIN_RUNNER)) scripts/train_embed.py --config $(CONFIG) $(if $(DRY),--dry-run) \
		$(if $(RESUME),--resume $(RESUME)) $(if $(SET),--set-line "$$SET")

train-embed-tb: $(VENV)/.installed ## train-embed with TensorBoard serving the runs (TB_PORT=6006, RESUME)
	@outdir=$$($(PY) scripts/show_config.py --config $(CONFIG) $(if $(SET),--set-line "$$SET") --get output_dir) || exit 2; \
	port=$(if $(TB_PORT),$(TB_PORT),$$($(PY) scripts/show_config.py --config $(CONFIG) $(if $(SET),--set-line "$$SET") --get tensorboard_port)); \
	mkdir -p "$$outdir"; \
	$(VENV)/bin/tensorboard --logdir "$$outdir" --port "$$port" --bind_all >"$$outdir/tensorboard-server.log" 2>&1 & \
	echo "TensorBoard: http://localhost:$$port/ (pid $$!, log $$outdir/tensorboard-server.log; stop with: kill $$!)"; \
	$(TRAIN_RUNNER) scripts/train_embed.py --config $(CONFIG) $(if $(RESUME),--resume $(RESUME),training.report_to=[tensorboard]) $(if $(SET),--set-line "$$SET")

eval-embed: $(VENV)/.installed ## Evaluate a model (MODEL=path, default: latest run's final model)
	$(PY) scripts/eval_embed.py $(if $(MODEL),--model $(MODEL)) $(CONFIG_IF_GIVEN) $(if $(SET),--set-line "$$SET")

infer-embed: $(VENV)/.installed ## Top-k answers for TEXT="..." / FILE=path / stdin (MODEL, CORPUS, TOP_K)
	$(PY) scripts/infer_embed.py $(if $(MODEL),--model $(MODEL)) $(if $(FILE),--file $(FILE)) \
		$(if $(CORPUS),--corpus $(CORPUS)) --top-k $(TOP_K) $(CONFIG_IF_GIVEN) \
		$(if $(SET),--set-line "$$SET") $(if $(TEXT),"$(TEXT)")

export-index: $(VENV)/.installed ## A faiss index of the pool for serving (MODEL, CORPUS, INDEX_OUT; default <run>/index)
	$(PY) scripts/export_index.py $(if $(MODEL),--model $(MODEL)) $(if $(CORPUS),--corpus $(CORPUS)) \
		$(if $(INDEX_OUT),--output $(INDEX_OUT)) $(CONFIG_IF_GIVEN) $(if $(SET),--set-line "$$SET")

report: $(VENV)/.installed ## Rebuild report.md and plots of a run (RUN=outputs/latest)
	$(PY) scripts/report.py $(RUN)

bench-quality: $(VENV)/.installed ## Quality benchmark: DATA=path/to/pairs.jsonl (SEEDS="12 13", BENCH_CONFIG, BENCH_DIR)
	@test -n "$(DATA)" || { echo "error: give the data set, e.g. make bench-quality DATA=../shared/data/medquad/pairs.jsonl" >&2; exit 2; }
	$(PY) scripts/bench_quality.py --data $(DATA) --config $(BENCH_CONFIG) --seeds $(SEEDS) --output-dir $(BENCH_DIR) $(if $(SET),--set-line "$$SET")

bench-ablation: $(VENV)/.installed ## Recipes compared over seeds: DATA=path (RECIPES=configs/ablation.yaml, SEEDS, BENCH_CONFIG, CONTINUE=results folder)
	@test -n "$(DATA)" || { echo "error: give the data set, e.g. make bench-ablation DATA=../shared/data/medquad/pairs.jsonl" >&2; exit 2; }
	$(PY) scripts/bench_quality.py --data $(DATA) --config $(BENCH_CONFIG) --seeds $(SEEDS) --recipes $(RECIPES) --output-dir $(ABLATION_DIR) $(if $(CONTINUE),--continue $(CONTINUE)) $(if $(SET),--set-line "$$SET")

bench-scale: $(VENV)/.installed ## Scale benchmark: N synthetic pairs (or DATA=path), mine, few steps; OUT/results.json
	$(PY) scripts/bench_scale.py --pairs $(N) --output-dir $(OUT) $(if $(DATA),--data $(DATA)) $(if $(SET),--set-line "$$SET")

bench-throughput: $(VENV)/.installed ## Training-step throughput, embedft vs the plain recipe: OUT=folder (SHAPE=minilm, DEVICE, BATCH=32, STEPS=20)
	$(PY) scripts/bench_throughput.py --output-dir $(OUT) --shape $(SHAPE) --batch-size $(BATCH) --steps $(STEPS) \
		$(if $(DEVICE),--device $(DEVICE)) $(if $(SET),--set-line "$$SET")

test: $(VENV)/.installed ## Run the test suite (offline, real models, about 17 min on 2 CPU cores)
	$(PY) -m pytest $(PYTEST_ARGS)
	@$(PY) -m pip freeze --exclude-editable > $(VENV)/tested-freeze.txt

test-latest: ## The suite in LATEST_VENV (.venv-latest) with the newest releases pyproject.toml allows: drift shows here first
	@rm -f $(LATEST_VENV)/.installed
	$(MAKE) test VENV=$(LATEST_VENV) LOCK=

lock: ## Write the lock from a VENV whose make test passed (after make test-latest: make lock VENV=.venv-latest)
	@test -x $(PY) || { echo "error: $(VENV) not found: run make test (or make test-latest) in it first" >&2; exit 2; }
	$(PY) scripts/write_lock.py --tested $(VENV)/tested-freeze.txt --output requirements/constraints.txt

lint: $(VENV)/.installed ## ruff check and format check
	$(VENV)/bin/ruff check src scripts tests
	$(VENV)/bin/ruff format --check src scripts tests

config-reference: $(VENV)/.installed ## Print every config key as a Markdown table
	@$(PY) scripts/show_config.py --reference
