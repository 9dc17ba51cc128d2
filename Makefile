# forge developer entry points. `make example` runs the main job on the shipped example;
# `make test` runs the whole test suite (what CI runs through .ci/run).

CARGO ?= cargo
FORGE := target/release/forge

.PHONY: build test lint fmt example bench

build:
	$(CARGO) build --release --locked

test:
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Validate the shipped example: build settings, user-data and cluster profile together.
example: build
	$(FORGE) validate --config examples/forge.yaml --user-data examples/user-data.yaml --profile examples/profile.yaml
	$(FORGE) config show --config examples/forge.yaml

# Benchmarks with real components (registries on 127.0.0.1); results in target/bench/.
bench:
	$(CARGO) bench --locked --bench registry_sync
