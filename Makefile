# Every target sets itself up on a fresh machine: a .venv, torch from the
# local CPU wheel (a bare `pip install torch` would pull a multi-GB CUDA build),
# then lcmgraph with its dev and Ray extras, pinned by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
WORKFLOW ?= workflows/txt2img_lcm.json
OUT ?= outputs
STAMP := $(VENV)/.installed
# The browser editor: npm packages pinned by web/package-lock.json, built to web/dist.
WEB_SRC := web/index.html web/vite.config.js web/package.json $(shell find web/src -type f 2>/dev/null)
WEB_DEPS := web/node_modules/.package-lock.json
WEB_DIST := web/dist/index.html

.PHONY: setup run test lint bench clean web chromium train train-loras quality

setup: $(STAMP) $(WEB_DIST)

web: $(WEB_DIST)

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

$(WEB_DIST): $(WEB_DEPS) $(WEB_SRC)
	cd web && npm run build
	touch $@

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ray]'
	# Upscale models: spandrel without its torchvision requirement (see pyproject.toml).
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt spandrel
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/lcmgraph run $(WORKFLOW) --out $(OUT)

# The editor tests drive Debian's chromium through Playwright (which cannot download browsers here).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "the editor tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

test: $(STAMP) $(WEB_DIST) chromium
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

# Retrain / resume the embedded model (hours on a CPU; minutes on a GPU: add ARGS=--device cuda).
train: $(STAMP)
	$(BIN)/lcmgraph train all --run train-runs/tiny-shapes $(ARGS)

# The embedded model's LoRAs (docs/lcm-lora.md), written next to the shipped weights.
BUILTIN := nodes/diffusion/builtin
train-loras: $(STAMP)
	$(BIN)/lcmgraph train-lcm-lora --run train-runs/lcm-lora --steps 1400 --lr 5e-4 --batch 32 --keep-every 200 $(ARGS)
	$(BIN)/lcmgraph train-lora --style outline --run train-runs/outline-lora --steps 4800 --rank 8 --batch 16 --keep-every 300 --targets no-text --fill-weight 4 $(ARGS)
	@echo "pick a snapshot of each on held-out prompts and copy it into $(BUILTIN): bench/pick_lora.py --copy-best (docs/lcm-lora.md)"

quality: $(STAMP)
	$(BIN)/python bench/quality.py

bench: $(STAMP)
	$(BIN)/python bench/executor_overhead.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache *.egg-info web/dist web/node_modules
