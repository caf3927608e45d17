"""Capture what the service writes to its log handler, one parsed JSON object per line."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

import structlog


class CapturedLogs:
    def __init__(self, stream: io.StringIO):
        self._stream = stream

    @property
    def raw(self) -> str:
        return self._stream.getvalue()

    @property
    def lines(self) -> list[dict]:
        """Every line parsed as JSON: a line that is not valid JSON fails the test here."""
        return [json.loads(line) for line in self.raw.splitlines() if line.strip()]

    def messages(self, message: str) -> list[dict]:
        return [line for line in self.lines if line["message"] == message]


@contextlib.contextmanager
def captured_logs(level: int = logging.INFO) -> Iterator[CapturedLogs]:
    """Point the root logger's handlers (configured by settings.LOGGING) at a buffer."""
    root = logging.getLogger()
    stream = io.StringIO()
    previous_level = root.level
    previous_streams = []
    for handler in root.handlers:
        # The service's handlers only (pytest adds capture handlers of its own).
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            previous_streams.append((handler, handler.setStream(stream)))  # type: ignore[attr-defined]
    assert previous_streams, "settings.LOGGING configures no stream handler on the root logger"
    root.setLevel(level)
    try:
        yield CapturedLogs(stream)
    finally:
        root.setLevel(previous_level)
        for handler, previous in previous_streams:
            handler.setStream(previous)
