# Every target installs what it needs first: `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DIFFUSE := $(BIN)/diffuse
DEMO := runs/demo

.PHONY: install test lint demo train-demo train-defaults train-default-image train-default-audio train-default-signal bundle-defaults \
	bench perf fuzz clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check diffuse_cli tests scripts bench

# Mutated sample files through every loader: each must load or fail with a one-line InputError.
FUZZ_ITERATIONS ?= 2000
FUZZ_SEED ?= 0
fuzz: install
	$(BIN)/python scripts/fuzz_loaders.py --iterations $(FUZZ_ITERATIONS) --seed $(FUZZ_SEED)

# The main job on sample data with the bundled models: noise a photo and a recording, clean them.
demo: install
	mkdir -p $(DEMO)
	$(DIFFUSE) noise sample_data/photo-gray.png -o $(DEMO)/gray-noisy.png --sigma 25 --seed 1 --force
	$(DIFFUSE) denoise $(DEMO)/gray-noisy.png -o $(DEMO)/gray-clean.png --reference sample_data/photo-gray.png --force
	$(DIFFUSE) noise sample_data/photo-color.png -o $(DEMO)/color-noisy.png --sigma 25 --seed 1 --force
	$(DIFFUSE) denoise $(DEMO)/color-noisy.png -o $(DEMO)/color-clean.png --reference sample_data/photo-color.png --force
	$(DIFFUSE) noise sample_data/speech.wav -o $(DEMO)/speech-noisy.wav --snr 5 --seed 1 --force
	$(DIFFUSE) denoise $(DEMO)/speech-noisy.wav -o $(DEMO)/speech-clean.wav --reference sample_data/speech.wav --force
	$(DIFFUSE) noise sample_data/photo-color.png -o $(DEMO)/color-dim.png --kind poisson --peak 30 --seed 1 --force
	$(DIFFUSE) denoise $(DEMO)/color-dim.png -o $(DEMO)/color-dim-clean.png --noise-kind poisson --reference sample_data/photo-color.png --force
	$(DIFFUSE) denoise sample_data/sensor-noisy.csv -o $(DEMO)/sensor-clean.csv --reference sample_data/sensor.csv --force
	$(BIN)/python scripts/signal_plot.py --out $(DEMO)/signal-before-after.png
	$(DIFFUSE) encode-steps --steps 0,10,100,500 --dim 8

# Train a small model on sample_data (a few minutes on 2 cores), then a before/after with it.
TRAIN_DEMO := runs/train-demo
train-demo: install
	mkdir -p $(TRAIN_DEMO)
	$(DIFFUSE) train sample_data/photo-gray.png sample_data/photo-gray16.png sample_data/photo-color.png --channels 1 \
		--out $(TRAIN_DEMO)/model --widths 16,32,64 --max-steps 600 --steps-per-epoch 200 --lr 1e-3 --resume
	$(DIFFUSE) noise sample_data/photo-gray.png -o $(TRAIN_DEMO)/noisy.png --sigma 25 --seed 1 --force
	$(DIFFUSE) denoise $(TRAIN_DEMO)/noisy.png -o $(TRAIN_DEMO)/clean.png --model $(TRAIN_DEMO)/model \
		--reference sample_data/photo-gray.png --force
	$(BIN)/python scripts/before_after.py $(TRAIN_DEMO)/before-after.png $(TRAIN_DEMO)/noisy.png \
		$(TRAIN_DEMO)/clean.png sample_data/photo-gray.png

clean:
	rm -rf runs build *.egg-info .pytest_cache

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# Held-out benchmark data comes from Debian packages (apt-get install -y espeak-ng plasma-workspace-wallpapers).
# Default models: rebuilt from scratch, reproducibly (--seed), from offline sources only (see
# scripts/prepare_defaults_data.py). Hours on 2 CPU cores: re-running resumes from the checkpoints in runs/defaults.
DATA := runs/defaults-data
IMAGE_STEPS ?= 1500
AUDIO_STEPS ?= 5000
IMAGE_MODEL := runs/defaults/photo-gray
IMAGE_DESCRIPTION := gray photos (luma), v2: photo-gray v1 (8 photographs from Debian plasma-workspace-wallpapers, LGPL-3 / CC-BY-SA-4.0 per wallpaper, + 13 scikit-image data images, 4500 steps) fine-tuned on those plus 10 photographs from Debian lomiri-wallpapers-16.04/-20.04 (CC-BY-4.0, CC-BY-SA-3.0/4.0, CC0-1.0 per file) and 12 procedural dead leaves images (diffuse_cli/dead_leaves.py); held out, never trained on: plasma EveningGlow, Path, Grey, OneStandsOut, skimage camera, astronaut, coffee, lomiri Bridge, friends, life, Picture_1A; built by scripts/prepare_defaults_data.py
AUDIO_MODEL := runs/defaults/speech-16k
SIGNAL_DATA := runs/signal-data
SIGNAL_STEPS ?= 20000
SIGNAL_MODEL := runs/defaults/signal

$(DATA)/train/images:
	$(BIN)/python scripts/prepare_defaults_data.py $(DATA)

# Photo model v2: fine-tunes the bundled photo-gray (eps objective; --init-from keeps the source's objective)
# on the v1 photos plus lomiri-wallpapers photographs and dead leaves images. The v1 recipe from scratch:
# `diffuse train $(DATA)/train/images --channels 1 --widths 16,32,64,128 --patch-size 96 --lr 1e-3 ...`.
# Re-running resumes from $(IMAGE_MODEL)'s checkpoints; without them it starts again from photo-gray.
IMAGE_INIT ?= photo-gray
train-default-image: install $(DATA)/train/images
	if [ -d $(IMAGE_MODEL)/checkpoints ]; then start=--resume; else start="--init-from $(IMAGE_INIT)"; fi; \
	$(DIFFUSE) train $(DATA)/train/images --out $(IMAGE_MODEL) $$start --channels 1 \
		--patch-size 96 --batch-size 16 --max-steps $(IMAGE_STEPS) --lr 3e-4 \
		--warmup-steps 100 --low-noise-fraction 0.9 --low-noise-sigma 1,100 --val-sigma 25 \
		--steps-per-epoch 250 --checkpoint-every 250 --keep 2 --seed 0 \
		--description "$(IMAGE_DESCRIPTION)"

train-default-audio: install $(DATA)/train/images
	$(DIFFUSE) train $(DATA)/train/speech --out $(AUDIO_MODEL) --resume \
		--widths 16,32,48,64,64 --kernel-size 5 --patch-size 4096 --batch-size 16 --max-steps $(AUDIO_STEPS) \
		--lr 1e-3 --warmup-steps 200 --low-noise-fraction 0.9 --low-noise-sigma 0.001,0.3 --val-sigma 0.05 \
		--steps-per-epoch 250 --checkpoint-every 250 --keep 2 --seed 0 \
		--description "speech, 16 kHz: 160 utterances synthesised with Debian's espeak-ng (GPL-3 program; the generated audio is ours), several voices; built by scripts/prepare_defaults_data.py"

# The 1D signal model: synthetic series only (diffuse_cli/synthetic_signals.py); real series stay held out.
$(SIGNAL_DATA)/train:
	$(BIN)/python scripts/make_signal_data.py $(SIGNAL_DATA)

train-default-signal: install $(SIGNAL_DATA)/train
	$(DIFFUSE) train $(SIGNAL_DATA)/train --out $(SIGNAL_MODEL) --resume \
		--widths 8,16,24,32,48,64 --kernel-size 5 --patch-size 1024 --batch-size 16 --max-steps $(SIGNAL_STEPS) \
		--lr 1e-3 --warmup-steps 200 --steps-per-epoch 250 --checkpoint-every 250 --keep 2 --seed 0 \
		--low-noise-fraction 0.9 --low-noise-sigma 0.01,2 --val-sigma 0.3 \
		--description "1D series: 4000 synthetic series of 12 families from diffuse_cli/synthetic_signals.py, written by scripts/make_signal_data.py (seed 0); no real data"

# Copies config.json, the weights and model.tflite (what denoise runs on LiteRT; rebuilt from the weights when a
# run folder lacks it). No SavedModel: the CLI rebuilds the network from the validated config.
bundle-defaults:
	for m in $(IMAGE_MODEL) $(AUDIO_MODEL) $(SIGNAL_MODEL); do \
		test -f $$m/model.tflite || $(BIN)/python -m diffuse_cli.tflite_export $$m ; \
		mkdir -p diffuse_cli/models/$$(basename $$m) && \
		cp $$m/config.json $$m/weights.weights.h5 $$m/model.tflite diffuse_cli/models/$$(basename $$m)/ ; done

train-defaults: install
	$(MAKE) -j2 train-default-image train-default-audio
	$(MAKE) train-default-signal
	$(MAKE) bundle-defaults

bench: $(VENV)/.bench-installed
	test -d runs/defaults-data/bench/images || $(BIN)/python scripts/prepare_defaults_data.py runs/defaults-data
	$(BIN)/python bench/run_bench.py --data runs/defaults-data/bench --out bench
	$(BIN)/python bench/signals.py --model diffuse_cli/models/signal --out bench
	$(BIN)/python scripts/readme_results.py bench/report.md README.md

perf: $(VENV)/.bench-installed
	$(BIN)/python bench/perf.py --out bench
