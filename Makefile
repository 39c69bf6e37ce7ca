# Developer commands (as OpenVLA users know them). Every target installs what it needs through scripts/setup.sh,
# which reuses .venv when pyproject.toml is unchanged.
VENV ?= .venv
BIN := $(VENV)/bin
# dvc.yaml calls the `openvla` console script: put the venv first on PATH for every recipe (VENV may be relative to
# this folder or absolute: `make repro VENV=/opt/venvs/openvla`).
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export TF_CPP_MIN_LOG_LEVEL ?= 2
# glibc arenas per TensorFlow thread fragment memory; two keep the loader's RSS flat.
export MALLOC_ARENA_MAX ?= 2

.PHONY: setup repro test check autoformat clean bench

setup:
	@bash scripts/setup.sh

## Run the whole embedded-default pipeline (demos → … → eval) with DVC.
repro: setup
	$(BIN)/dvc repro

## Run the test suite (fast, CPU, deterministic).
test: setup
	$(BIN)/python -m pytest -q

## Lint and format check (what pre-commit and CI run).
check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

autoformat: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python bench/data_pipeline.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/repro.py  # ≈ 20 min: the embedded default from a fresh clone, stage by stage

## Remove caches and pipeline outputs (not the venv, not the DVC cache).
clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print | xargs rm -rf
	rm -rf data/raw data/rlds data/stats data/tokenizer runs models metrics plots mlflow.db mlruns
