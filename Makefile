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
	$(PYTHON) -m ruff check services schemas tests deploy bench
	$(PYTHON) -m ruff format --check services schemas tests deploy bench
	$(PYTHON) -m mypy services schemas bench
	lint-imports

up: install
	$(PYTHON) -m services.cli up

down:
	$(PYTHON) -m services.cli down

schemas:
	$(PYTHON) -m schemas.export

## P4: StatementIssued published -> signed webhook received, p50/p99 over 10,000 statements.
bench-notifier: install
	$(PYTHON) -m bench.notifier

format:
	$(PYTHON) -m ruff check --fix services schemas tests deploy
	$(PYTHON) -m ruff format services schemas tests deploy

## Benchmarks: each prints its figures and, last, one JSON line.
bench-redemption: install
	@command -v wrk >/dev/null || apt-get install -y -qq wrk
	@command -v go >/dev/null || apt-get install -y -qq golang-go  # builds bench/openloop into .local/bin
	$(PYTHON) -m bench.redemption

bench-issuer: install
	$(PYTHON) -m bench.issuer

## P2: redemption events applied durably per second by one clearing worker, vs raw aiokafka consume.
bench-clearing: install
	$(PYTHON) -m bench.clearing

## P5: closing a window of 1,000,000 redemptions over 10,000 sites → statements, calls for funds, SEPA file.
bench-window-close: install
	$(PYTHON) -m bench.window_close

## P3: replay and verify a log of 1,000,000 redemptions, vs the raw read of the same topics.
bench-audit: install
	$(PYTHON) -m bench.audit
