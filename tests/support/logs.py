"""Capture sealroom's logs as `sealroom run` writes them (JSON lines), then put logging back."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import structlog

from bridge import logs


@contextlib.contextmanager
def captured(level: str = "DEBUG") -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_structlog = structlog.get_config()
    buffer = io.StringIO()
    logs.configure(level, "json", stream=buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)
