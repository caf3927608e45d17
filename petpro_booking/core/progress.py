"""Progress of long management commands: a live bar on a terminal (rich), plain lines in a log.

    for week in progress(weeks, description="generating slots", stream=self.stdout):
        ...

On a TTY the bar redraws in place; otherwise (cron, CI, a container's log) one line every
`every` percent (and at the end): `generating slots: 12/52 (23%)`. Use it for any command whose
run is long enough that an operator wonders whether it is stuck (generate_slots, outbox
republish, erase_person, check_consistency).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress(
    items: Iterable[T],
    *,
    description: str,
    total: int | None = None,
    stream: IO[str] | Any | None = None,
    every: int = 10,
) -> Iterator[T]:
    """Yield `items`, showing how far along they are on `stream` (default: stderr). `stream`
    may be a Django command's `self.stdout` (an OutputWrapper)."""
    out = stream if stream is not None else sys.stderr
    if total is None:
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    if _is_terminal(out):
        yield from _bar(items, description=description, total=total, out=out)
    else:
        yield from _lines(items, description=description, total=total, out=out, every=every)


def _bar(items: Iterable[T], *, description: str, total: int | None, out: Any) -> Iterator[T]:
    from rich.console import Console
    from rich.progress import track

    console = Console(file=getattr(out, "_out", out))  # OutputWrapper keeps the real stream
    yield from track(items, description=description, total=total, console=console)


def _lines(
    items: Iterable[T], *, description: str, total: int | None, out: Any, every: int
) -> Iterator[T]:
    def write(text: str) -> None:
        out.write(f"{text}\n")  # a Django OutputWrapper adds no second newline
        if hasattr(out, "flush"):
            out.flush()

    done = 0
    next_mark = every
    for item in items:
        yield item
        done += 1
        if total:
            percent = done * 100 // total
            if percent >= next_mark and done < total:
                write(f"{description}: {done}/{total} ({percent}%)")
                next_mark = (percent // every + 1) * every
        elif done % 100 == 0:
            write(f"{description}: {done}")
    write(f"{description}: {done}/{total} (100%)" if total else f"{description}: {done} done")
