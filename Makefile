# One entry point for a fresh machine that has only Python 3.10+ and pip.
#   make demo       - set up .venv (runtime only) and run the main job: the demo
#   make test       - set up .venv and .venv-jazzy, lint, run the whole test suite (ROS 2 Kilted),
#                     then the ROS tests again on ROS 2 Jazzy (test-jazzy)
#   make test-jazzy - only the ROS tests on Jazzy: tests/ros and the demo test
#   make lint       - ruff (ruff.toml) and the layer contract (import-linter, setup.cfg)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
# ROS 2 Jazzy (LTS): a second environment from requirements-jazzy.txt, for the ROS tests only
JAZZY_VENV ?= .venv-jazzy
JAZZY_BIN := $(JAZZY_VENV)/bin
JAZZY := $(JAZZY_VENV)/.installed
JAZZY_TESTS := tests/ros tests/test_demo.py

.PHONY: setup setup-runtime setup-jazzy demo lint test test-jazzy clean

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

# Jazzy: the runtime pins of requirements.txt (checked here) with ros-jazzy-* instead of Kilted's
# ros-*, and what the ROS tests import (pins of requirements-dev.txt, checked here too).
setup-jazzy: $(JAZZY)
$(JAZZY): requirements-jazzy.txt requirements.txt requirements-dev.txt setup.py
	@! grep -Ev '^(#|ros-|$$)' requirements.txt | grep -Fxv -f requirements-jazzy.txt \
		|| { echo "requirements-jazzy.txt lacks the runtime pins above of requirements.txt"; exit 1; }
	@! grep -Ev '^(#|ros-|$$)' requirements-jazzy.txt | grep -Fxv -f requirements.txt | grep -Fxv -f requirements-dev.txt \
		|| { echo "requirements-jazzy.txt: the pins above are in neither requirements.txt nor requirements-dev.txt"; exit 1; }
	$(PYTHON) -m venv $(JAZZY_VENV)
	$(JAZZY_BIN)/python -m pip install --quiet --upgrade pip
	$(JAZZY_BIN)/python -m pip install --quiet -r requirements-jazzy.txt
	$(JAZZY_BIN)/python -m pip install --quiet --no-deps -e .
	touch $(JAZZY)

demo: setup-runtime
	$(BIN)/dap-ros demo --out out/demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint setup-jazzy
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-jazzy

test-jazzy: setup-jazzy
	$(JAZZY_BIN)/python -m pytest $(JAZZY_TESTS)

clean:
	rm -rf $(VENV) $(JAZZY_VENV) out
