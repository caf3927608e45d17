"""The benchmark's uncached search never repeats a query within a run or across the runs of one
process, and a process driving the same stack after another starts from its own run number (a
repeat at odds of 1 in 999): a repeated query is answered from the page cache and measures the
cached path instead (issue 11)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

from benchmarks import scenarios

ROOT = Path(__file__).resolve().parents[2]
SEED = {
    "owners": [(f"pet-{i}", f"token-{i}") for i in range(400)],
    "slots": [],
    "start": dt.datetime(2026, 12, 10, tzinfo=dt.UTC).isoformat(),
}


def _paths(run: int, *, requests: int = 300) -> set[str]:
    paths = set()
    for index in range(scenarios.CONNECTIONS):
        client = scenarios.UncachedSearch(SEED, index, (0, 0), scenarios.CONNECTIONS)
        client.run = run
        paths.update(client.next().path for _ in range(requests))
    return paths


def test_runs_of_one_process_and_of_any_two_run_numbers_share_no_query() -> None:
    first = scenarios.factory(scenarios.UncachedSearch, SEED, (0, 0))
    second = scenarios.factory(scenarios.UncachedSearch, SEED, (0, 0))
    a = {first(i).next().path for i in range(scenarios.CONNECTIONS)}
    b = {second(i).next().path for i in range(scenarios.CONNECTIONS)}
    assert len(a) == scenarios.CONNECTIONS
    assert not a & b
    # Within a run every request is new, and runs with other numbers (any start, one past the
    # 1,000 boundary included) never meet.
    runs = [1, 2, 500, 998, 999, 1_000, 1_001]
    seen: set[str] = set()
    for run in runs:
        paths = _paths(run)
        assert len(paths) == scenarios.CONNECTIONS * 300
        assert not paths & seen, f"run {run} repeats an earlier run's query"
        seen |= paths


FIRST_RUN = "from benchmarks import scenarios; print(next(scenarios._runs))"


def test_each_process_numbers_its_runs_from_its_own_start() -> None:
    starts = {
        subprocess.run(
            [sys.executable, "-c", FIRST_RUN],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for _ in range(4)
    }
    assert len(starts) > 1  # four processes drawing the same of 999 starts: odds ~1e-9
