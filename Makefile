# PetPro Booking Service. `make run` (embedded, no servers) and `make test` (real stack).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DJANGO_SETTINGS_MODULE ?= petpro_booking.settings.local

.PHONY: help install run test lint format bench bench-history soak clean image client messages

help:
	@echo "make run    - embedded default with demo data on http://127.0.0.1:8000"
	@echo "make test   - the whole suite against PostgreSQL, Redis, RabbitMQ on localhost"
	@echo "make lint   - ruff, mypy, hadolint, pip-audit"
	@echo "make bench  - production topology vs. a bare DRF baseline (~6 min); docs/benchmarks.md"
	@echo "make soak   - the peak-hour mix for 10 min at 80 % of the measured maximum"
	@echo "make bench-history - operations under faults (Redis, kill -9, RabbitMQ), checked"
	@echo "make client - typed Python client from the OpenAPI schema into clients/python"
	@echo "make messages - compile locale/*/LC_MESSAGES/*.po into the committed .mo files"
	@echo "make image  - the container image (needs Docker; see docs/operations.md)"

$(BIN)/.installed: pyproject.toml requirements.lock
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	@touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python manage.py migrate --noinput -v0
	LOG_LEVEL=WARNING $(BIN)/python manage.py load_demo_data
	$(BIN)/python manage.py run_embedded 127.0.0.1:8000

test: install
	DJANGO_SETTINGS_MODULE=petpro_booking.settings.test $(BIN)/pytest \
		--cov --cov-report=term-missing:skip-covered --cov-fail-under=80 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SETTINGS_MODULE=petpro_booking.settings.test $(BIN)/mypy petpro_booking slots reservations bookings waitlist integrations
	$(BIN)/hadolint Dockerfile
	# Known vulnerabilities in the pinned dependencies (asks PyPI's advisory database).
	$(BIN)/pip-audit -r requirements.lock --no-deps --disable-pip --progress-spinner off

messages: install
	$(BIN)/python -m petpro_booking.core.catalogue

client: install
	$(BIN)/python clients/build.py clients/python

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

image:
	docker build -t petpro-booking:$$(git rev-parse --short HEAD) .

# Benchmarks boot their own stack (docs/benchmarks.md); BENCH_ARGS="holds search relay" runs the
# older component benchmarks instead.
BENCH_ARGS ?= production
bench: install
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

soak: install
	$(BIN)/python -m benchmarks.run soak

bench-history: install
	$(BIN)/python -m benchmarks.run history

clean:
	rm -rf $(VENV) petpro_booking.sqlite3 var .pytest_cache .coverage clients/python
