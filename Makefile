# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck pytest test-tools test-image podman-setup bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[all,test]'
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/migrate-job demo

lint: install
	$(BIN)/ruff check job tests bench scripts
	$(BIN)/hadolint --failure-threshold warning Dockerfile
	$(BIN)/actionlint
	$(BIN)/check-jsonschema --builtin-schema vendor.github-actions action.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

typecheck: install
	$(BIN)/mypy job

# Tools the tests need that are not Python packages: Azurite (npm) for Azure Blob backups,
# node-pg-migrate, knex, TypeORM and dbmate (npm, pinned) for the import tests, the pinned
# real-world migration histories (PyPI/npm packages) the safety gate's corpus test replays,
# PgBouncer (Debian) for the transaction-pooling refusal.
test-tools: install
	tests/backup/install_azurite.sh
	tests/adopt/install_tools.sh
	tests/corpora/install.sh
	@test -x /usr/sbin/pgbouncer || command -v pgbouncer >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer; }

pytest: install test-tools
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck pytest

# The container image alone: builds it with podman and runs it as a hook would.
test-image: install
	$(BIN)/pytest -q -p no:cacheprovider -m image tests/image/test_image.py

podman-setup:
	bash scripts/podman-setup.sh

bench: install
	$(BIN)/python bench/apply.py
	tests/corpora/install.sh
	$(BIN)/python bench/histories.py
	$(BIN)/python bench/lint.py
	$(BIN)/python bench/gate.py
	$(BIN)/python bench/backup.py
	$(BIN)/python bench/adopt.py
	$(BIN)/python bench/drift.py

clean:
	rm -rf $(VENV) .test-tools .pytest_cache .mypy_cache .ruff_cache *.egg-info
