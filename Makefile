# forge developer entry points. `make example` runs the main job on the shipped example;
# `make test` runs the whole test suite (what CI runs through .ci/run).

CARGO ?= cargo
FORGE := target/release/forge
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: setup build test lint fmt fixtures example bench man install

# Debian packages and a Docker Engine (installs and starts them as root; checks otherwise).
setup:
	.ci/setup

build:
	$(CARGO) build --release --locked

test: setup fixtures
	$(CARGO) test --locked --no-fail-fast

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
example: setup
	$(MAKE) build fixtures
	cd examples/canvos && ../../$(FORGE) validate --arg .arg --user-data user-data
	cd examples/canvos && ../../$(FORGE) build --arg .arg --user-data user-data --output ../../build

# Benchmarks with real components (registries on 127.0.0.1); results in target/bench/.
bench: fixtures
	$(CARGO) bench --locked --bench registry_sync
	$(CARGO) bench --locked --bench build
	$(CARGO) bench --locked --bench iso
	$(CARGO) bench --locked --bench sites

# A man page per command (forge.1, forge-build.1, ...) in target/man/.
man: build
	rm -rf target/man
	$(FORGE) man target/man

# The binary, the man pages and the bash, zsh and fish completions under $(DESTDIR)$(PREFIX).
install: man
	install -Dm755 $(FORGE) $(DESTDIR)$(PREFIX)/bin/forge
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m644 target/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(FORGE) completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/forge
	$(FORGE) completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_forge
	$(FORGE) completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/forge.fish
