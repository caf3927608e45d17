"""The CPU split reports how much of the machine the hypervisor took during each run."""

from __future__ import annotations

import time

from benchmarks.topology import CpuSampler, steal_share


def test_the_steal_share_is_stolen_ticks_over_all_ticks():
    assert steal_share((10, 100), (30, 200)) == 0.2
    assert steal_share((10, 100), (10, 300)) == 0.0
    assert steal_share(None, (30, 200)) is None
    assert steal_share((10, 100), (10, 100)) is None  # no tick passed: nothing to tell


def test_the_sampler_reads_the_machine_s_steal_from_proc_stat():
    with CpuSampler({}) as sampler:
        time.sleep(0.1)
    assert sampler.steal is not None
    assert 0.0 <= sampler.steal <= 1.0
