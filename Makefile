# forge developer entry points. `make example` runs the main job on the shipped example;
# `make test` runs the whole test suite (what CI runs through .ci/run).

CARGO ?= cargo
FORGE := target/release/forge

.PHONY: setup build test lint fmt fixtures example bench

# Debian packages and a Docker Engine (installs and starts them as root; checks otherwise).
setup:
	.ci/setup

build:
	$(CARGO) build --release --locked

test: setup fixtures
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Images the builds read, in CanvOS's shapes, made from Debian packages (cached by tag; see
# tests/fixtures/palette/README.md).
fixtures: setup
	tests/fixtures/palette/build.sh

# The main job on the shipped example, a CanvOS-shaped checkout: validate everything, then
# build the base, provider and installer images from the fixtures on the local Docker Engine
# (outputs in build/).
example: build fixtures
	cd examples/canvos && ../../$(FORGE) validate --arg .arg --user-data user-data
	cd examples/canvos && ../../$(FORGE) build --arg .arg --user-data user-data --output ../../build

# Benchmarks with real components (registries on 127.0.0.1); results in target/bench/.
bench: fixtures
	$(CARGO) bench --locked --bench registry_sync
	$(CARGO) bench --locked --bench build
	$(CARGO) bench --locked --bench iso
	$(CARGO) bench --locked --bench sites
