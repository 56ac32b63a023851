# passclear — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
STAMP := .local/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST := $(PYTHON) -m pytest -p no:cacheprovider

.PHONY: demo test install up down lint unit integration schemas format clean

$(STAMP): pyproject.toml
	@mkdir -p .local
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f .local/.installed-* && touch $@

install: $(STAMP)

## The main job: Kafka + Postgres + four services up, a realistic programme issued, redeemed,
## cleared, notified and audited, with progress shown.
demo: install
	$(PYTHON) -m services.cli demo

## Every test: unit tier first (seconds), then lint and types, then integration and end-to-end
## against the real broker and database this project starts.
test: install
	$(PYTEST) tests/unit -q
	$(MAKE) --no-print-directory lint
	$(PYTEST) tests/integration tests/e2e tests/infra -q

unit: install
	$(PYTEST) tests/unit -q

integration: install
	$(PYTEST) tests/integration tests/e2e -q

lint: install
	$(PYTHON) -m ruff check services schemas tests deploy
	$(PYTHON) -m ruff format --check services schemas tests deploy
	$(PYTHON) -m mypy services schemas
	lint-imports

up: install
	$(PYTHON) -m services.cli up

down:
	$(PYTHON) -m services.cli down

schemas:
	$(PYTHON) -m schemas.export

format:
	$(PYTHON) -m ruff check --fix services schemas tests deploy
	$(PYTHON) -m ruff format services schemas tests deploy

bench-audit: install
	$(PYTHON) -m bench.audit
