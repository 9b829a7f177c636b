# konduktor-slurm: everything runs from the project's venv (.venv), never the machine's python3.
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv cluster cluster-stop chroots chroots-stop demo test unit live compat lint bench clean

venv:
	@scripts/ensure-venv.sh

## cluster: bring up the embedded local Slurm cluster (root; idempotent)
cluster:
	bash docker/cluster-up.sh

cluster-stop:
	bash docker/cluster-down.sh

## chroots: real Slurm 24.11 (trixie) and 26.05 (sid) clusters in debootstrap chroots, beside
## the host's 22.05 (root; idempotent; ~40 s each the first time, seconds afterwards)
chroots:
	bash docker/chroot-up.sh 24.11
	bash docker/chroot-up.sh 26.05

chroots-stop:
	bash docker/chroot-down.sh 24.11
	bash docker/chroot-down.sh 26.05

## demo: cluster up, launch the 2-node H100:8 example, follow it to the end, show status
## (from examples/: a task's relative workdir is relative to where konduktor runs)
demo: venv cluster
	cd examples && $(CURDIR)/$(BIN)/konduktor launch -y hello-2node.yaml
	$(BIN)/konduktor status

## test: lint + unit tests + live tests on the real 22.05 cluster + the compatibility
## module (tests/compat) on 22.05, 24.11 and 26.05. Three pytest-xdist workers: each
## cluster's tests in order in one worker, the unit tests beside them (tests/conftest.py)
test: venv cluster chroots lint
	@scripts/ensure-chromium.sh
	$(BIN)/python -m pytest -n 3 $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest -n 2 tests/unit $(PYTEST_ARGS)

live: venv cluster
	@scripts/ensure-chromium.sh
	$(BIN)/python -m pytest tests/live $(PYTEST_ARGS)

compat: venv cluster chroots
	$(BIN)/python -m pytest -n 3 tests/compat $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check konduktor_slurm tests
	$(BIN)/ruff format --check konduktor_slurm tests

bench: venv cluster
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
