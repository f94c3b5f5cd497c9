# One Makefile for people, CI (.ci/run) and hooks. `make help` lists the targets.
PYTHON ?= python3
PIP ?= PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip
STAMP := .make/dev-installed
# Console scripts pip installed (cmake, which the engine's libopus build runs; maturin) are found
# by cargo and make without a shell's rehash (pyenv shims).
export PATH := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$(PATH)
ENGINE_SOURCES := $(shell find rust_engine/src -name '*.rs') rust_engine/Cargo.toml Cargo.toml pyproject.toml

.PHONY: help dev demo test test-python-backend test-ray test-rust lint typecheck bench bench-smoke wheel-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/:\t/'

$(STAMP): $(ENGINE_SOURCES)
	$(PIP) install --quiet --disable-pip-version-check -e '.[dev]'
	@mkdir -p .make && touch $@

dev: $(STAMP)  ## install the packages editable, building the Rust engine (release profile)

# The demo needs the package and its engine, not the dev tools nor Silero's kernel (most of the
# build: README, "Build time"): a fresh clone installs just that. After `make dev` it uses that.
DEMO_STAMP := .make/demo-installed
$(DEMO_STAMP): $(ENGINE_SOURCES)
	MATURIN_PEP517_ARGS="--features python" $(PIP) install --quiet --disable-pip-version-check -e .
	@mkdir -p .make && touch $@

demo: $(if $(wildcard $(STAMP)),$(STAMP),$(DEMO_STAMP))  ## run the demo job: test signal -> chain -> out/demo.wav, per-stage table
	$(PYTHON) -m stream demo --out out/demo.wav

test: dev  ## run the test suite (every stage on both backends)
	$(PYTHON) -m pytest -q

test-python-backend: dev  ## the test suite with REMOTEMEDIA_RUNTIME=python
	REMOTEMEDIA_RUNTIME=python $(PYTHON) -m pytest -q

test-ray: dev  ## Ray tests: a two-node Ray cluster in a network namespace (needs root)
	$(PYTHON) -m pytest -q -m ray tests/cluster

test-rust:  ## the Rust kernels' own tests (no Python needed)
	cargo test -q --manifest-path rust_engine/Cargo.toml

lint: dev  ## ruff, cargo fmt and clippy
	ruff check stream media_nodes tests benchmarks examples
	ruff format --check stream media_nodes tests benchmarks examples
	cargo fmt --all --check
	cargo clippy -q --all-targets --all-features -- -D warnings

typecheck: dev  ## mypy (strict) and the engine stub against the built module
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy.stubtest stream._engine

BENCHMARKS := benchmarks/engine_bench.py benchmarks/stages_bench.py benchmarks/video_bench.py \
	benchmarks/denoise_quality.py benchmarks/echo_quality.py

bench: dev  ## the benchmarks, full length; their tables go into docs/
	for b in $(BENCHMARKS); do $(PYTHON) $$b || exit 1; done

bench-smoke: dev  ## the benchmarks, short: proves they run
	for b in $(BENCHMARKS) benchmarks/echo_cost.py benchmarks/voice_cost.py benchmarks/playout_bench.py benchmarks/g711_bench.py benchmarks/calls_bench.py benchmarks/webrtc_sessions.py benchmarks/ray_scale.py benchmarks/adapter_bench.py; do $(PYTHON) $$b --smoke >/dev/null || exit 1; done

# Wheels are built with the dist profile (fat LTO); CI passes WHEEL_PROFILE=release to reuse the
# engine `make dev` built: what it checks is the packaging, not the optimizer.
WHEEL_PROFILE ?= dist

wheel-check:  ## build the wheel (dist profile: fat LTO), install it in a fresh venv, run the demo
	rm -rf .make/wheel .make/venv
	maturin build --profile $(WHEEL_PROFILE) --quiet -o .make/wheel
	$(PYTHON) -m venv .make/venv
	.make/venv/bin/pip install --quiet --disable-pip-version-check .make/wheel/*.whl
	cd .make && venv/bin/remotemedia demo --seconds 1 --out wheel-demo.wav

clean:  ## remove build products
	rm -rf .make target out build dist stream/_engine*.so
