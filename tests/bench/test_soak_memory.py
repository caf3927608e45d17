"""The soak's memory table tells a warm-up that levels off from a leak."""

from __future__ import annotations

from benchmarks.bench_soak import Sample, memory_rows

MIB = 2**20


def samples(rss_mib: list[float]) -> list[Sample]:
    return [
        Sample(
            at=60.0 * minute,
            backlog=0,
            oldest_age=0.0,
            pool_in_use=0,
            pool_waiting=0,
            rss={"web": int(mib * MIB)},
        )
        for minute, mib in enumerate(rss_mib)
    ]


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_a_warm_up_that_levels_off_grows_nothing_in_the_second_half():
    row = memory_rows(samples([300, 340, 380, 380, 380]))[0]
    assert cells(row) == ["web", "300.0", "380.0", "380.0", "380.0", "+80.0", "+0.00"]


def test_a_leak_keeps_its_rate_in_the_second_half():
    row = memory_rows(samples([300, 310, 320, 330, 340]))[0]
    assert cells(row)[-1] == "+10.00"


def test_each_window_says_how_much_of_the_machine_the_hypervisor_took():
    from benchmarks.bench_soak import window_rows
    from benchmarks.load import Record

    records = [Record("search", at, at + 0.01, 200, {}) for at in (1.0, 2.0, 31.0, 32.0)]
    ticks = {5.0: (0, 1_000), 25.0: (250, 2_000), 35.0: (250, 3_000), 55.0: (250, 4_000)}
    samples = [
        Sample(at=at, backlog=0, oldest_age=0.0, pool_in_use=0, pool_waiting=0, machine=tick)
        for at, tick in ticks.items()
    ]
    first, second = window_rows(records, samples)
    assert cells(first)[-2] == "25 %"  # 250 of 1,000 ticks between the window's samples
    assert cells(second)[-2] == "0 %"


def test_each_window_names_the_process_groups_that_used_the_most_cores():
    from benchmarks.bench_soak import window_rows
    from benchmarks.load import Record
    from benchmarks.topology import CLK

    records = [Record("search", at, at + 0.01, 200, {}) for at in (1.0, 2.0)]
    at_start = {"web": 0, "worker": 0, "PostgreSQL": 0, "Redis": 0}
    # 20 s later: web used 1.5 cores, PostgreSQL 0.5, the worker 0.25; Redis lost a process.
    at_end = {"web": 30 * CLK, "worker": 5 * CLK, "PostgreSQL": 10 * CLK, "Redis": -5}
    samples = [
        Sample(at=5.0, backlog=0, oldest_age=0.0, pool_in_use=0, pool_waiting=0, cpu=at_start),
        Sample(at=25.0, backlog=0, oldest_age=0.0, pool_in_use=0, pool_waiting=0, cpu=at_end),
    ]
    (row,) = window_rows(records, samples)
    assert cells(row)[-1] == "web 1.50, PostgreSQL 0.50, worker 0.25"
