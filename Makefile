# One check command: `make test` (CI runs it, then `make readme-test`: the README's commands on
# a pristine Debian 12). Integration tests boot a systemd container with systemd-nspawn and
# need root. Narrower, no root needed: `make unit` (tests/unit, a few seconds), `make
# daemon-tests` (tests/daemon: the real daemon on a socket, no systemd), `make no-root` (both,
# after lint). `make deb` builds the Debian package. `make vm-test`: runaway jobs in a VM
# that enforces cgroup limits (tests/vm, root, minutes).

VENV ?= .venv
BIN := $(VENV)/bin
# Debian's interpreter: it lives under /usr, which the test container shares with the host.
PYTHON ?= /usr/bin/python3

.PHONY: test unit daemon-tests no-root lint venv apt-packages demo bench clean

test: lint
	$(BIN)/pytest

unit: venv
	$(BIN)/pytest tests/unit

daemon-tests: venv
	$(BIN)/pytest tests/daemon

no-root: lint
	$(BIN)/pytest -m "not integration"

# Boots a throwaway systemd container, installs automd and runs example jobs (needs root).
demo: venv
	$(BIN)/python -m tests.integration.demo

# Load against automd, a FastAPI and a Go (fasthttp) reference in one run; prints ratios, idle RSS
# and cold start (bench/README.md). Installs Go and the Go reference's Debian packages first
# (bench/apt-packages.txt); e.g. `make bench BENCH_ARGS=--quick` for a smoke run.
BENCH_ARGS ?=
bench: venv
	packaging/ensure-apt-packages bench/apt-packages.txt
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# gofmt, go vet and go test of bench/'s Go programs (not part of lint: CI has no Go).
GO_ENV := GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(CURDIR)/bench/.build/gocache
.PHONY: lint-go
lint-go:
	packaging/ensure-apt-packages bench/apt-packages.txt
	test -z "$$(gofmt -l bench/loadgen bench/goref)" || { gofmt -l bench/loadgen bench/goref; exit 1; }
	cd bench && $(GO_ENV) go vet ./loadgen ./goref && $(GO_ENV) go test ./loadgen

# The README's two commands (make demo, make test), verbatim, in a pristine Debian 12 root with
# a clone of this checkout (tests/readme/pristine.py; root). Not part of `make test`, which it
# runs inside; .ci/run runs it after `make test`.
.PHONY: readme-test
readme-test: venv
	$(BIN)/pytest tests/readme

# Runaway jobs (CPU hog, memory past MemoryMax, fork bomb, stdout flood) in a throwaway Debian 12
# VM whose kernel enforces cgroup v2 limits (qemu under TCG; root). The image is built once
# (about 1 minute) and cached in /var/cache/automd-tests; each run boots it afresh. Not part of
# `make test`: minutes per run (docs/testing-vm.md). Installs qemu and mmdebstrap if missing.
.PHONY: vm-test
vm-test: venv
	packaging/ensure-apt-packages packaging/apt-packages-vm.txt
	$(BIN)/pytest tests/vm

# automctl's wall time per command against a real automd (bench/README.md); about 15 seconds.
.PHONY: bench-automctl
bench-automctl: venv
	$(BIN)/python -m bench.automctl

lint: venv
	$(BIN)/ruff format --check automd tests bench
	$(BIN)/ruff check automd tests bench
	$(BIN)/mypy

venv: $(VENV)/.installed

# The Debian packages of packaging/apt-packages.txt (libsystemd-dev to build systemd-python,
# systemd-container for the test containers, ...): checked every time with dpkg-query, which is
# cheap, so a package removed since is noticed; only missing ones are installed (root), and
# without root make fails naming them. Order-only: it runs first, without rebuilding the venv.
apt-packages:
	packaging/ensure-apt-packages

$(VENV)/.installed: pyproject.toml | apt-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# The Debian package automd_<version>_<arch>.deb, in the checkout, checked by lintian
# (docs/packaging.md). Needs debhelper and lintian, and PyPI for the package's private venv.
.PHONY: deb
deb:
	packaging/build-deb.sh
