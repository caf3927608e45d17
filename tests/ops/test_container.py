"""The Dockerfile (hadolint, distroless non-root runtime, one image for every process) and the
docker-compose stack built from it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).with_name("hadolint")


def stages() -> list[list[str]]:
    """Dockerfile instructions (continuation lines joined), split by FROM."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    result: list[list[str]] = []
    for instruction in instructions:
        if instruction.startswith("FROM "):
            result.append([])
        result[-1].append(instruction)
    return result


def test_hadolint_passes():
    result = subprocess.run(
        [str(HADOLINT), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_stage_is_distroless_non_root_without_build_tools():
    build, runtime = stages()
    assert build[0].endswith(" AS build")
    assert re.match(r"FROM gcr\.io/distroless/python3-debian\d+:nonroot AS runtime", runtime[0])
    assert not [i for i in runtime if i.startswith("RUN ")], "no shell in the runtime stage"
    assert "USER 65532:65532" in runtime
    assert any("--only-binary=:all:" in i for i in build)  # no compiler needed to build
    env = " ".join(i for i in runtime if i.startswith("ENV "))
    assert "DJANGO_SETTINGS_MODULE=petpro_booking.settings.production" in env
    assert "PROMETHEUS_MULTIPROC_DIR=/var/run/petpro/metrics" in env
    assert runtime[-1] == (
        'CMD ["-m", "gunicorn", "petpro_booking.wsgi", "-c", "petpro_booking/gunicorn_conf.py"]'
    )


def test_dockerignore_keeps_the_context_clean():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", "tests/", "*.sqlite3", ".env"):
        assert path in ignored


def test_every_package_the_image_copies_exists():
    build, _ = stages()
    for instruction in build:
        match = re.match(r"COPY (\S+) \./app/", instruction)
        if match:
            assert (ROOT / match.group(1)).exists(), match.group(1)


IMAGE_CHECK = """
import django, importlib, json, pathlib
from django.apps import apps
from django.conf import settings
django.setup()
importlib.import_module(settings.ROOT_URLCONF)
print(json.dumps([c.path for c in apps.get_app_configs()] + [
    str(pathlib.Path(importlib.import_module(settings.ROOT_URLCONF).__file__).parent)
]))
"""


def test_the_image_tree_holds_every_app_and_builds_its_static_files(tmp_path):
    """What the build stage copies, run as its RUN runs it: collectstatic, then every installed
    app and the URLconf imported from that tree alone (a project app left out of the COPY list
    made the build fail: `waitlist` was missing once)."""
    build, _ = stages()
    app = tmp_path / "app"
    app.mkdir()
    for instruction in build:
        match = re.match(r"COPY (\S+) \./app/(\S*)$", instruction)
        if not match:
            continue
        source = ROOT / match.group(1)
        if source.is_dir():
            shutil.copytree(source, app / match.group(2), ignore=_NOT_IN_CONTEXT)
        else:
            shutil.copy(source, app / (match.group(2) or source.name))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PYTHON", "DATABASE", "REDIS", "CELERY", "EVENT_"))
    }
    env["DJANGO_SETTINGS_MODULE"] = "petpro_booking.settings.local"
    collect = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert collect.returncode == 0, collect.stderr[-3000:]
    assert (app / "var" / "static" / "admin").is_dir()
    loaded = subprocess.run(
        [sys.executable, "-c", IMAGE_CHECK],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    project = [Path(path) for path in json.loads(loaded.stdout.splitlines()[-1])]
    project = [path for path in project if "site-packages" not in path.parts]
    assert project, "no project app was loaded"
    for path in project:
        assert path.is_relative_to(app), f"{path} was loaded from outside the image's tree"


_NOT_IN_CONTEXT = shutil.ignore_patterns("__pycache__", "*.pyc", "*.sqlite3")


def test_compose_runs_every_process_from_the_one_image():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "rabbitmq",
        "migrate",
        "web",
        "worker",
        "beat",
        "relay",
    }
    app = {name: services[name] for name in ("migrate", "web", "worker", "beat", "relay")}
    assert {s["image"] for s in app.values()} == {"petpro-booking:local"}
    assert app["migrate"]["command"] == ["manage.py", "migrate", "--noinput"]
    assert "command" not in app["web"]  # the image's gunicorn CMD
    celery = ["-m", "celery", "-A", "petpro_booking", "-q"]
    assert app["worker"]["command"][:6] == [*celery, "worker"]
    assert app["beat"]["command"][:6] == [*celery, "beat"]
    assert app["relay"]["command"] == ["manage.py", "outbox", "listen"]
    for name in ("web", "worker", "beat", "relay"):
        assert app[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        env = app[name]["environment"]
        for variable in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "EVENT_BROKER_URL"):
            assert env[variable]
        assert env["DJANGO_SETTINGS_MODULE"] == "petpro_booking.settings.production"
        assert env["EVENT_RELAY_NUDGE"] == "notify"  # the relay service hears the commits
