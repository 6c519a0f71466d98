"""structlog set-up: one event per line, JSON in production, readable in a terminal, no secrets.

Every record, ours or a library's (nio, aiohttp, SQLAlchemy), passes `redact`: values of keys that
name a secret are replaced, and any registered secret value is cut out of every string.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(pass(word)?|secret|token|recovery|pickle|authorization|cookie|body|content|signature)",
    re.IGNORECASE,
)
# Keys whose names match _SECRET_KEY but hold no secret (counts, ids, kinds).
_SAFE_KEYS = {"token_kind", "content_length", "body_bytes"}
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Cut `value` out of every later log line, wherever it appears."""
    if value and len(value) >= 6:
        _secrets.add(value)


def _scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop secret-named values and scrub registered secrets."""
    for key, value in list(event_dict.items()):
        if key != "event" and key not in _SAFE_KEYS and _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = _scrub(value)
        elif value is not None and not isinstance(value, int | float | bool):
            event_dict[key] = _scrub(str(value))
    return event_dict


class _NioFilter(logging.Filter):
    """nio logs `str(ValidationError)` of malformed events, which holds the event's content."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("nio"):
            return True
        message = record.getMessage()
        if "validat" in message.lower() or "{" in message:
            record.msg = (
                "nio reported a problem with an event (details withheld: may hold content)"
            )
            record.args = ()
        return True


def configure(
    level: str = "INFO",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Route structlog and the stdlib loggers through one redacting pipeline."""
    for secret in secrets:
        register_secret(secret)
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            # First: a record below the level costs one check, not the whole chain (which
            # otherwise runs before the stdlib logger drops it).
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.format_exc_info,
            redact,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.processors.format_exc_info, redact],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_NioFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("nio").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("peewee").setLevel(logging.WARNING)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    # Alembic announces its plugins at import; only the migrations it runs are worth a line.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").setLevel(level)
