# One entry point for a fresh machine that has only Python 3.10+ and pip.
#   make demo   - set up .venv (runtime only) and run the main job: the demo
#   make test   - set up .venv, lint, and run the whole test suite
#   make lint   - ruff (ruff.toml) and the layer contract (import-linter, setup.cfg)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.PHONY: setup setup-runtime demo lint test clean

setup: $(DEV)
setup-runtime: $(RUNTIME)

# Runtime: the package, the node and the demo (requirements.txt).
$(RUNTIME): requirements.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(RUNTIME)

# Development: runtime + tests, ONNX, bag evaluation, training and colcon tooling.
$(DEV): $(RUNTIME) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEV)

demo: setup-runtime
	$(BIN)/dap-ros demo --out out/demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) out
