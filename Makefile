# Every target installs what it needs first: `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DIFFUSE := $(BIN)/diffuse
DEMO := runs/demo

.PHONY: install test lint demo train-demo train-defaults bench perf fuzz clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check diffuse_cli tests

# The main job on sample data: noise a photo, train a small model (no bundled default model yet), denoise.
demo: install
	mkdir -p $(DEMO)
	$(DIFFUSE) noise sample_data/photo-gray.png -o $(DEMO)/gray-noisy.png --sigma 25 --seed 1 --force
	test -f $(DEMO)/model/config.json || $(DIFFUSE) train sample_data/photo-gray.png sample_data/photo-gray16.png \
		--out $(DEMO)/model --widths 16,32,64 --max-steps 400 --steps-per-epoch 200
	$(DIFFUSE) denoise $(DEMO)/gray-noisy.png -o $(DEMO)/gray-clean.png --model $(DEMO)/model \
		--reference sample_data/photo-gray.png --force
	$(DIFFUSE) encode-steps --steps 0,10,100,500 --dim 8

clean:
	rm -rf runs build *.egg-info .pytest_cache

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# Held-out benchmark data comes from Debian packages (apt-get install -y espeak-ng plasma-workspace-wallpapers).
bench: $(VENV)/.bench-installed
	test -d runs/defaults-data/bench/images || $(BIN)/python scripts/prepare_defaults_data.py runs/defaults-data
	$(BIN)/python bench/run_bench.py --data runs/defaults-data/bench --out bench

perf: $(VENV)/.bench-installed
	$(BIN)/python bench/perf.py --out bench
