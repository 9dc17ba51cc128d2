# forge developer entry points. `make example` runs the main job on the shipped example;
# `make test` runs the whole test suite (what CI runs through .ci/run).

CARGO ?= cargo
FORGE := target/release/forge

.PHONY: build test lint fmt fixtures example bench

build:
	$(CARGO) build --release --locked

test:
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Images the offline example builds from, made from Debian packages (cached by tag).
fixtures:
	examples/offline/fixtures.sh

# The main job on the shipped example: validate everything, then build the base, provider and
# installer images from the fixtures on the local Docker Engine (outputs in build/).
example: build fixtures
	$(FORGE) validate --config examples/forge.yaml --user-data examples/user-data.yaml --profile examples/profile.yaml
	$(FORGE) build --config examples/offline/forge.yaml --user-data examples/user-data.yaml

# Benchmarks with real components (registries on 127.0.0.1); results in target/bench/.
bench: fixtures
	$(CARGO) bench --locked --bench registry_sync
	K8S_VERSIONS="1.30.11 1.31.7 1.32.3 1.33.1" examples/offline/fixtures.sh
	$(CARGO) bench --locked --bench build
	$(CARGO) bench --locked --bench iso
