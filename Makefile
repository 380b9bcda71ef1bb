# Self-documenting: `make help` lists every target with its `##` comment.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Extra Hydra overrides for `make train`, e.g. make train ARGS="experiment=fashion_mnist_seed"
ARGS   ?=
# The study `make sweep` runs (conf/experiment/<SWEEP>.yaml with a hydra.sweeper.params grid)
SWEEP  ?= lr_balance_ring8
# Extra gan-compare arguments for `make sweep`, e.g. COMPARE_ARGS="x=schedule.lr_d y=null"
COMPARE_ARGS ?=
# Extra arguments of the throughput benchmark, e.g. BENCH_ARGS="--device cuda --fast"
BENCH_ARGS ?=
# Extra pytest arguments for `make test`, e.g. make test PYTEST_ARGS="-k losses"
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train sweep bench test test-all lint format clean clean-runs

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

# The venv is (re)built whenever pyproject.toml changes; pip alone, so the
# locally served torch wheels are used instead of a multi-GB download.
# Byte-compilation is left to compileall on every core: pip compiles the wheels' 13,000 modules
# in one process (75 s of a 140 s install on 2 cores here), compileall -j 0 in 43 s. Skipping it
# altogether costs more, in the tests: every process compiles what it imports, all at once.
# A few wheels ship files for newer Pythons (torch's py312_intrinsics.py), which fail to compile
# as pip's own step skips them, hence the || true.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e ".[dev]"
	$(BIN)/python -m compileall -q -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" > /dev/null || true
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its dev extra

train: $(STAMP) ## train the default experiment (DCGAN, non-saturating loss, digits 32x32); ARGS="key=value ..."
	$(BIN)/gan-train $(ARGS)

sweep: $(STAMP) ## run a study's grid (default lr_balance_ring8: 64 CPU runs, ~15 min) and its gan-compare report
	$(BIN)/gan-train -m experiment=$(SWEEP) $(ARGS)
	$(BIN)/gan-compare sweep_dir=$${GAN_LOG_DIR:-outputs}/sweeps/$(SWEEP) $(COMPARE_ARGS)

bench: $(STAMP) ## benchmarks: framework vs plain-PyTorch throughput, and the evaluation's share of training
	$(BIN)/python -m gan_research.bench.throughput $(BENCH_ARGS)
	$(BIN)/python -m gan_research.bench.eval_cost --cases default ring8_wgan_gp stacked_digits_dcgan

# PYTHONDONTWRITEBYTECODE emptied: where the environment sets it (this dev container does),
# every process the tests start would compile the package from source again (~1 CPU-s each).
# One worker per core (pytest-xdist): most of the suite's time is end-to-end runs in subprocesses.
# Tests go to the workers one at a time, slow ones first (tests/conftest.py orders them), so no
# worker is left with a queue of long runs at the end. PYTEST_ARGS="-n 0" runs it in one process.
test: $(STAMP) ## run the test suite (CPU, offline, parallel workers; CI's command)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n auto --maxschedchunk 1 -m "not heavy" $(PYTEST_ARGS)

test-all: $(STAMP) ## the test suite with the `heavy` runs too (WGAN-GP under DDP, SIGTERM, submitit requeue, loky workers, learning checks)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n auto --maxschedchunk 1 $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check gan_research tests
	$(BIN)/ruff format --check gan_research tests

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix gan_research tests
	$(BIN)/ruff format gan_research tests

clean: ## remove the venv and caches (runs under outputs/ stay: see clean-runs)
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-runs: ## remove the local run outputs (outputs/, multirun/): every run, checkpoint and report
	rm -rf outputs multirun
