"""`make bench`: runs benchmark modules and rewrites their sections of docs/benchmarks.md.

Each `benchmarks/bench_<name>.py` has `run() -> str` returning a Markdown section (what was
measured, the command, the machine, the numbers). `make bench BENCH_ARGS="name ..."` runs only
the named ones; the sections of the others are kept as they were.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import re
import sys
from pathlib import Path

import benchmarks

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Written by `make bench` (`python -m benchmarks.run [name ...]`); each section says what it
measured, with which command, on which machine. Numbers from a shared 2-core machine vary by
±15 % between runs; targets are checked here, never by timed tests.
"""


# `make bench` runs the production topology; the older component benchmarks run by name.
DEFAULT = ["production"]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count()
    python = platform.python_version()
    return f"{platform.system()} {platform.machine()}, {cores} cores ({cpu}), Python {python}"


def available() -> list[str]:
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )


def write_section(name: str, body: str) -> None:
    text = DOC.read_text() if DOC.exists() else HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: {DEFAULT}; any of {available()})"
    )
    args = parser.parse_args(argv)
    names = args.names or DEFAULT
    unknown = set(names) - set(available())
    if unknown:
        parser.error(f"unknown benchmark(s): {sorted(unknown)}")
    failed = []
    for name in names:
        print(f"== bench {name}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        section = module.run()
        # A benchmark that checks correctness returns (section, problems): problems fail the run
        # (after the section is written, so the numbers are there to look at).
        problems: list[str] = []
        if isinstance(section, tuple):
            section, problems = section
        write_section(name, section + f"\n\nMachine: {machine()}.")
        print(section, flush=True)
        failed += [f"{name}: {problem}" for problem in problems]
    for problem in failed:
        print(f"FAILED CHECK {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
