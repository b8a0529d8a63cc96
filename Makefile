# voicebot: `make run` serves the bot on the embedded offline stack, `make test` passes the tests.
# Both set everything up first. Settings come from the environment or .env, never from here.

VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.voicebot-installed
# llama.cpp's native build enables AMX/AVX-512 kernels that crash (SIGSEGV in libggml-cpu) on
# VMs whose CPU advertises them; a portable AVX2 build is safe everywhere and fast enough.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup system-deps run test lint clean

setup: system-deps $(STAMP)

# Build tools for llama-cpp-python (compiled from its sdist on the first install).
system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet -e '.[offline,dev]'
	touch $@

run: setup
	$(BIN)/voicebot serve

lint: setup
	$(BIN)/ruff check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
