# Every target sets itself up on a fresh machine: a .venv, torch from the
# local CPU wheel (a bare `pip install torch` would pull a multi-GB CUDA build),
# then lcmgraph with its dev extras, pinned by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
WORKFLOW ?= workflows/txt2img_lcm.json
OUT ?= outputs
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/lcmgraph run $(WORKFLOW) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/executor_overhead.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache *.egg-info
