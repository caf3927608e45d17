"""The dependency direction (docs/architecture.md), checked on the source: every module's imports
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
    # The relay publishes through the broker client: integrations are not apps.
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


# --- Import cycles ------------------------------------------------------------------------------
# Two graphs of the project's modules. At module level (imports that run when the module is
# first imported, `if TYPE_CHECKING:` blocks left out as they never run) there is no cycle at
# all: one would make the import order decide what exists. With the imports inside functions
# added, a cycle is still a design smell (two modules that need each other are one module, or
# share a third), so those are reported too, except these deferred edges, each for its reason:
DEFERRED_EDGES_ALLOWED: dict[tuple[str, str], str] = {
    # A gateway picks its adapter by settings at call time; the adapters use its value types.
    ("integrations.users.gateway", "integrations.users.client"): "adapter by settings",
    ("integrations.users.gateway", "integrations.users.local"): "adapter by settings",
    ("integrations.payments.gateway", "integrations.payments.client"): "adapter by settings",
    ("integrations.payments.gateway", "integrations.payments.sandbox"): "adapter by settings",
    # Start-up wiring: the request middleware starts the pool sampler (which logs), and the
    # tracer provider names the service as logging does (which imports tracing).
    ("petpro_booking.core.logging", "petpro_booking.core.metrics_export"): "start-up wiring",
    ("petpro_booking.core.tracing", "petpro_booking.core.logging"): "start-up wiring",
    # Celery: tasks call services, and a service enqueues its follow-up task after commit.
    ("bookings.services.refunds", "bookings.tasks"): "task enqueued after commit",
}
PACKAGES = ("petpro_booking", "integrations", "slots", "reservations", "bookings", "waitlist")


def _project_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if "migrations" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == (
        "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that run at import: the body, and inside top-level if/try blocks."""
    found: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node):
                found += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            found += _module_level(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                found += _module_level(handler.body)
        else:
            found.append(node)
    return found


def import_graph(
    sources: dict[str, tuple[str, bool]], *, module_level_only: bool
) -> dict[str, set[str]]:
    """module -> the project modules it imports; `sources` maps a module to (source, is package)."""

    def known(name: str) -> str | None:
        while name and name not in sources:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        tree = ast.parse(source)
        nodes = _module_level(tree.body) if module_level_only else list(ast.walk(tree))
        if not module_level_only:  # leave out what only type checkers read
            skipped = {
                id(inner)
                for node in ast.walk(tree)
                if isinstance(node, ast.If) and _is_type_checking(node)
                for statement in node.body
                for inner in ast.walk(statement)
            }
            nodes = [node for node in nodes if id(node) not in skipped]
        targets: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, node, is_package)
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            targets.update(t for t in map(known, names) if t is not None and t != module)
        graph[module] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def _project_sources() -> dict[str, tuple[str, bool]]:
    return {
        module: (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for module, path in _project_modules().items()
    }


def test_no_import_cycle_at_module_level():
    graph = import_graph(_project_sources(), module_level_only=True)
    assert len(graph) > 100
    assert import_cycles(graph) == []


def test_no_import_cycle_through_imports_inside_functions_either():
    graph = import_graph(_project_sources(), module_level_only=False)
    for source, target in DEFERRED_EDGES_ALLOWED:
        assert target in graph[source], f"{source} -> {target} is gone: drop it from the list"
        graph[source].discard(target)
    assert import_cycles(graph) == []


def test_a_cycle_hidden_in_a_function_is_found():
    """The shape of the old slots cycle: services imported clinic_sync inside a function,
    clinic_sync imported services at the top."""
    sources = {
        "slots.services": ("def f():\n    from .clinic_sync import sync\n", False),
        "slots.clinic_sync": ("from .services import clinic_upsert\n", False),
        "slots.models": ("from django.db import models\n", False),
    }
    assert import_cycles(import_graph(sources, module_level_only=True)) == []
    assert import_cycles(import_graph(sources, module_level_only=False)) == [
        ["slots.clinic_sync", "slots.services"]
    ]


def test_a_module_level_cycle_is_found_and_type_checking_imports_are_not_one():
    sources = {
        "slots.a": ("from slots.b import x\n", False),
        "slots.b": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from slots.a import y\n",
            False,
        ),
        "slots.c": ("try:\n    from slots.d import x\nexcept ImportError:\n    pass\n", False),
        "slots.d": ("import slots.c\n", False),
    }
    assert import_cycles(import_graph(sources, module_level_only=True)) == [["slots.c", "slots.d"]]
