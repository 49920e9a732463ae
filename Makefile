# One entry point for a fresh machine that has only Python 3.10+ and pip.
#   make demo   - set up .venv and run the main job on the bundled sample panorama
#   make test   - set up .venv and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

demo: setup
	$(BIN)/dap-ros infer dap_ros/assets/sample_room.jpg --model-config tiny --random-weights --output-dir out/demo
	@echo
	@echo "NOTE: this ran a small RANDOMLY INITIALIZED network: the files in out/demo show the pipeline,"
	@echo "      not real depth. For real metric depth get the released weights (README: 'Getting the"
	@echo "      weights') and run: $(BIN)/dap-ros infer PANO.jpg --checkpoint model.pth"

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) out
