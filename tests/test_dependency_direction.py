"""The dependency direction of DESIGN.md §1, checked on the source: every module's imports
(top level or inside functions, absolute or relative) and every `apps.get_model(...)` /
"app_label.Model" reach into an app must point down the chain

    waitlist → bookings → reservations → slots → events → core,   any app → integrations → core

and core, events and integrations never reach an app (events may use an integration: the relay
publishes through the broker client). The project package's wiring modules
(settings, urls, celery, wsgi/asgi) may name every app: they assemble them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS: dict[str, str] = {  # top-level import name -> layer
    "petpro_booking.core": "core",
    "petpro_booking.events": "events",
    "integrations": "integrations",
    "slots": "slots",
    "reservations": "reservations",
    "bookings": "bookings",
    "waitlist": "waitlist",
}
APP_LABELS = {  # Django app label -> layer (for apps.get_model and "label.Model" strings)
    "core": "core",
    "events": "events",
    "integrations": "integrations",
    "slots": "slots",
    "reservations": "reservations",
    "bookings": "bookings",
    "waitlist": "waitlist",
}
_BASE = {"core"}
ALLOWED: dict[str, set[str]] = {
    "core": _BASE,
    # The relay publishes through the broker client: integrations are not apps (DESIGN §1).
    "events": _BASE | {"events", "integrations"},
    "integrations": _BASE | {"integrations"},
    "slots": _BASE | {"events", "integrations", "slots"},
    "reservations": _BASE | {"events", "integrations", "slots", "reservations"},
    "bookings": _BASE | {"events", "integrations", "slots", "reservations", "bookings"},
    "waitlist": _BASE | {"events", "integrations", "slots", "reservations", "bookings", "waitlist"},
}
WIRING = ("petpro_booking.settings", "petpro_booking.urls", "petpro_booking.celery")


def layer_of(module: str) -> str | None:
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _reached(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str, str]]:
    """(line, what, layer) for every module or app this source reaches."""
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, is_package)
            names = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in {"get_model", "get_app_config"}:
                literals = [
                    arg.value
                    for arg in node.args
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                ]
                if literals:
                    label = literals[0].split(".")[0]
                    if label in APP_LABELS:
                        found.append((node.lineno, f"{called}({literals[0]!r})", APP_LABELS[label]))
            continue
        for name in names:
            layer = layer_of(name)
            if layer is not None:
                found.append((node.lineno, name, layer))
                break
    return found


def violations_in(source: str, *, module: str, is_package: bool = False) -> list[str]:
    layer = layer_of(module)
    if layer is None or module.startswith(WIRING):
        return []
    tree = ast.parse(source)
    return [
        f"{module}:{line} ({layer}) reaches {what} ({target})"
        for line, what, target in _reached(tree, module, is_package)
        if target not in ALLOWED[layer]
    ]


def _modules() -> list[tuple[str, Path]]:
    found = []
    for prefix in LAYERS:
        folder = ROOT.joinpath(*prefix.split("."))
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            parts = list(relative.parts)
            found.append((".".join(parts), path))
    return found


def test_every_module_imports_down_the_chain_only():
    modules = _modules()
    assert len(modules) > 50  # the walk really found the source tree
    problems = [
        problem
        for module, path in modules
        for problem in violations_in(
            path.read_text(encoding="utf-8"), module=module, is_package=path.name == "__init__.py"
        )
    ]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("petpro_booking.core.metrics_export", "from reservations.models import Reservation"),
        ("petpro_booking.core.metrics_export", "import bookings.services"),
        ("petpro_booking.core.x", "def f():\n    from slots import models\n"),
        ("petpro_booking.core.x", "apps.get_model('reservations', 'Reservation')"),
        ("petpro_booking.core.x", "get_model('reservations.Reservation')"),
        ("petpro_booking.core.x", "from ..events.models import Event"),
        ("petpro_booking.events.relay", "from slots.models import Slot"),
        ("integrations.users.client", "from bookings.models import Booking"),
        ("slots.services", "from reservations.services import reservation_create"),
        ("reservations.services", "from bookings.models import Booking"),
        ("bookings.services.payments", "from waitlist.services import waitlist_offer"),
    ],
)
def test_a_reach_against_the_direction_is_reported(module, source):
    assert violations_in(source, module=module)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("bookings.services.lifecycle", "from slots.locking import slot_write"),
        ("bookings.services.lifecycle", "from ..models import Booking"),
        ("reservations.services", "from integrations.users import pet_get"),
        ("slots.locking", "from petpro_booking.core.db import run_serializable"),
        ("petpro_booking.events.services", "from petpro_booking.core.db import RowInserter"),
        ("bookings.migrations.0004_x", "apps.get_model('events', 'Event')"),
        ("petpro_booking.urls", "from bookings.api import BookingViewSet"),
    ],
)
def test_a_reach_down_the_chain_is_allowed(module, source):
    assert violations_in(source, module=module) == []
