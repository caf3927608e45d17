# syntax=docker/dockerfile:1
# One image for every process of the PetPro Booking Service (docs/operations.md, "Container"):
#   web:        python -m gunicorn petpro_booking.wsgi -c petpro_booking/gunicorn_conf.py  (default)
#   worker:     python -m celery -A petpro_booking -q worker -l INFO
#   beat:       python -m celery -A petpro_booking -q beat -l INFO
#   migrations: python manage.py migrate --noinput
# Build: docker build -t petpro-booking:$(git rev-parse --short HEAD) .
# Lint:  .venv/bin/hadolint Dockerfile   (part of `make lint`)

# --- build: Debian 13's Python (3.13), the same interpreter at the same path as the runtime ------
# (distroless python3-debian12, Python 3.11, is deprecated upstream; the code supports 3.11+.)
FROM debian:13-slim AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --no-install-recommends --yes python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY pyproject.toml requirements.lock ./
# Runtime dependencies only (pyproject's [project.dependencies]), at the versions of the lock.
RUN python3 -m venv /venv \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > runtime-requirements.txt \
    && /venv/bin/pip install --only-binary=:all: -r runtime-requirements.txt -c requirements.lock
COPY manage.py ./app/
COPY petpro_booking ./app/petpro_booking
COPY slots ./app/slots
COPY reservations ./app/reservations
COPY bookings ./app/bookings
COPY integrations ./app/integrations
COPY waitlist ./app/waitlist
COPY templates ./app/templates
COPY locale ./app/locale
# The admin's and the API docs' static files, served by whitenoise from gunicorn.
RUN DJANGO_SETTINGS_MODULE=petpro_booking.settings.local \
    /venv/bin/python /build/app/manage.py collectstatic --noinput -v0 \
    && /venv/bin/python -m compileall -q /build/app \
    && mkdir -p /build/run/metrics

# --- runtime: no shell, no package manager, no compiler; runs as uid 65532 ----------------------
FROM gcr.io/distroless/python3-debian13:nonroot AS runtime
COPY --from=build /venv /venv
COPY --from=build /build/app /app
# Per-process metric files of gunicorn workers and Celery children (an emptyDir in Kubernetes).
COPY --from=build --chown=65532:65532 /build/run /var/run/petpro
WORKDIR /app
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=petpro_booking.settings.production \
    PROMETHEUS_MULTIPROC_DIR=/var/run/petpro/metrics
USER 65532:65532
EXPOSE 8000 9808
ENTRYPOINT ["/venv/bin/python"]
CMD ["-m", "gunicorn", "petpro_booking.wsgi", "-c", "petpro_booking/gunicorn_conf.py"]
