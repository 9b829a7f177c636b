# konduktor-slurm: everything runs from the project's venv (.venv), never the machine's python3.
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv cluster cluster-stop demo test unit live lint bench clean

venv:
	@scripts/ensure-venv.sh

## cluster: bring up the embedded local Slurm cluster (root; idempotent)
cluster:
	bash docker/cluster-up.sh

cluster-stop:
	bash docker/cluster-down.sh

## demo: cluster up, launch the 2-node H100:8 example, follow it to the end, show status
demo: venv cluster
	$(BIN)/konduktor launch -y examples/hello-2node.yaml
	$(BIN)/konduktor status

## test: lint + unit tests + live tests against the real local cluster
test: venv cluster lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

live: venv cluster
	$(BIN)/python -m pytest tests/live $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check konduktor_slurm tests
	$(BIN)/ruff format --check konduktor_slurm tests

bench: venv cluster
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
