# The README's two commands: `make drill` and `make test`. Both run the set-up first, which installs only
# what is missing: the Debian packages (PostgreSQL server, Java), the .venv/ and the Kafka jars (cached in .cache/).
# Set-up also builds the lab's Kubernetes binaries from the Kubernetes Go module once (`make kube`, .cache/kubernetes/:
# about 5.5 minutes on 2 cores the first time, a no-op after), the Toxiproxy server of the regions' gates (`make
# toxiproxy`, .cache/toxiproxy/: about 30 s once) and the lab's container images with buildah (`make images`,
# .cache/images/: a Debian base from Debian's mirrors, the backup image from the Dockerfile, MirrorMaker, the service
# stand-in; rebuilt only when their inputs change).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup system venv jars kube toxiproxy images test test-fast test-unit test-policy test-integration drill lab-up lab-down lint bench bench-deps bench-scale

setup: system venv jars kube toxiproxy images

system:
	@bash lab/setup_system.sh

venv: .venv/.installed

.venv/.installed: requirements.txt
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

jars: venv
	$(PY) -m lab.jars

kube: system venv
	$(PY) -m lab.kube_build

toxiproxy: system venv
	$(PY) -m lab.toxiproxy_build

images: kube jars
	$(PY) -m lab.images

# The import layers first (seconds; pyproject.toml's [tool.importlinter]), then the fast tiers: unit (mocks), policy,
# then integration (the lab). The 40 slowest tests are listed at the end, where the suite's time goes.
test: setup
	.venv/bin/lint-imports
	$(PY) -m pytest --durations=40 $(PYTEST_ARGS) tests/unit tests/policy tests/integration

# The edit-test loop: the import layers and the two tiers that need no lab, on two workers (pytest-xdist): about
# 65 s on 2 cores when idle, against 113 s in one process.
test-fast: venv
	.venv/bin/lint-imports
	$(PY) -m pytest -q -n 2 tests/unit tests/policy

test-unit: venv
	$(PY) -m pytest tests/unit

test-policy: venv
	$(PY) -m pytest tests/policy

test-integration: setup
	$(PY) -m pytest tests/integration

drill: setup
	$(PY) -m scripts.drill --scenario all --load default --json .lab/drill-report.json

lab-up: setup
	$(PY) -m lab up

lab-down: venv
	$(PY) -m lab down

lint: venv
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports

# Benchmark-only dependencies (reladiff, for the side-by-side comparison) go into .venv only when a benchmark runs.
bench-deps: venv
	$(PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt

bench: setup bench-deps
	$(PY) -m bench

# Growth curves (about 12 minutes for 1M,4M on 2 cores; 16M needs about 25 GB of disk and much longer).
bench-scale: setup bench-deps
	$(PY) -m bench.scale --sizes $(or $(SIZES),1M,4M)
