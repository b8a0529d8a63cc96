# voicebot: `make run` serves the bot on the embedded offline stack, `make test` passes the tests.
# Both set everything up first. Settings come from the environment or .env, never from here.

VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.voicebot-installed
LOCAL_STAMP := $(VENV)/.voicebot-local-installed
# llama.cpp's native build enables AMX/AVX-512 kernels that crash (SIGSEGV in libggml-cpu) on
# VMs whose CPU advertises them; a portable AVX2 build is safe everywhere and fast enough.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup system-deps test-deps run local test lint web bundle-check bench image image-check clean

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

# The local microphone bot's extra (PyAudio) needs PortAudio's headers; the server does not.
$(LOCAL_STAMP): $(STAMP)
	@bash scripts/system-deps.sh local
	$(BIN)/python -m pip install --quiet -e '.[local]'
	touch $@

local: setup $(LOCAL_STAMP)
	$(BIN)/voicebot local

lint: setup
	$(BIN)/ruff check .

test-deps:
	@bash scripts/system-deps.sh test

test: setup test-deps $(LOCAL_STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

# The browser page: sources in web/, the built bundle in bots/static/ (committed, so `make run`
# needs no Node.js). `make web` rebuilds it; `make bundle-check` fails if it is out of date.
web:
	cd web && npm ci --no-audit --no-fund && npm run build

bundle-check: web
	git diff --exit-code --stat -- bots/static || (echo "bots/static is out of date: run 'make web' and commit" >&2; exit 1)

# Our server and a plain Pipecat bot side by side, with zero and with realistic service delays,
# and the offline stack; ends with issue 17's goals, met or not (about 20 minutes). bench/README.md.
bench: setup
	$(BIN)/python -m bench.run --sweep 10,15,20,30,40,50

# The container image (README, "Container image"): `make image` builds voicebot:VERSION with
# Docker, Podman or Buildah (on a Debian base made here when python:3.11-slim-bookworm cannot be
# pulled); `make image-check` runs it as deploy/k8s/deployment.yaml does (non-root, read-only
# root, no network) and checks health, a spoken session and the SIGTERM drain. Both need root.
image:
	@bash scripts/system-deps.sh image
	bash scripts/image.sh

image-check: setup
	@bash scripts/system-deps.sh image
	PYTHON=$(BIN)/python bash scripts/image-check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
