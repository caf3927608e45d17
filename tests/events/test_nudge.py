"""Coalesced relay nudges: a burst of commits costs one relay pass per interval, and the last
commit of a burst is always followed by a pass that starts after it."""

from __future__ import annotations

import os
import threading
import time

from petpro_booking.events.nudge import RelayNudger


class _Recorder:
    def __init__(self, *, fail_first: int = 0) -> None:
        self.sent_at: list[float] = []
        self.fail_first = fail_first

    def __call__(self) -> None:
        self.sent_at.append(time.monotonic())
        if len(self.sent_at) <= self.fail_first:
            raise ConnectionError("broker down")


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_a_burst_of_commits_costs_one_pass_per_interval_and_the_last_is_covered():
    recorder = _Recorder()
    nudger = RelayNudger(recorder, interval=0.1)
    started = time.monotonic()
    last_nudge = [0.0]

    def commits() -> None:
        for _ in range(250):
            nudger.nudge()
            last_nudge[0] = max(last_nudge[0], time.monotonic())
            time.sleep(0.001)

    threads = [threading.Thread(target=commits) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert _wait(lambda: recorder.sent_at and recorder.sent_at[-1] >= last_nudge[0])
    time.sleep(0.3)  # nothing more is sent once no commit asks
    sends = len(recorder.sent_at)
    assert sends <= elapsed / 0.1 + 3, f"{sends} passes for 2,000 commits in {elapsed:.2f}s"
    gaps = [b - a for a, b in zip(recorder.sent_at, recorder.sent_at[1:], strict=False)]
    assert all(gap >= 0.09 for gap in gaps)
    assert recorder.sent_at[-1] >= last_nudge[0]


def test_a_failed_send_does_not_stop_later_nudges():
    recorder = _Recorder(fail_first=1)
    nudger = RelayNudger(recorder, interval=0.0)
    nudger.nudge()
    assert _wait(lambda: len(recorder.sent_at) == 1)
    nudger.nudge()
    assert _wait(lambda: len(recorder.sent_at) == 2)
    assert nudger.sent == 1  # the second, successful one


def test_a_forked_child_nudges_from_a_thread_of_its_own():
    recorder = _Recorder()
    nudger = RelayNudger(recorder, interval=0.0)
    nudger.nudge()
    assert _wait(lambda: len(recorder.sent_at) == 1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        try:
            nudger.nudge()
            ok = _wait(lambda: len(recorder.sent_at) == 2, timeout=5)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
