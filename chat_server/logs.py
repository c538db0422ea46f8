"""Logging for `alo116 serve`: one JSON object per line on stderr, uvicorn's lines too.

A line holds `ts`, `level`, `logger`, `msg`, the record's `extra=` fields that are plain
values, and `exc_type`/`exc` for an exception. The formatter adds nothing about the
request; what reaches it is kept clean at the source (chat_server/log_privacy.py), and
an `extra` field named like a secret is dropped here as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["json", "text"]

# uvicorn's "trace" logs each ASGI scope: the client's address and the cookies.
LEVELS = ("critical", "error", "warning", "info", "debug")

# An extra field whose name is, or has a part (split on "_" or "-"), one of these is
# dropped: `body`, `message_text`, `return_code`, `client_address`...
SCRUBBED = frozenset({"body", "text", "token", "password", "code", "address", "cookie", "secret"})

# What every LogRecord carries, so that the rest is what the caller passed as extra.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# uvicorn's copy of some messages with terminal colours.
_IGNORED = frozenset({"color_message"})
_FIELDS = ("ts", "level", "logger", "msg", "exc_type", "exc", "stack")
_PARTS = re.compile(r"[_\-]")


def scrubbed(key: str) -> bool:
    return any(part in SCRUBBED for part in _PARTS.split(key.lower()))


class JsonFormatter(logging.Formatter):
    """One line of JSON per record; `msg` is the message with its arguments."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key in _IGNORED or key in _FIELDS or scrubbed(key):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                line[key] = repr(value)
            elif value is None or isinstance(value, str | int | float | bool):
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_level(level: str) -> str:
    if level.lower() not in LEVELS:
        raise ValueError(f"ALO116_LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
    return level.lower()


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A dictConfig for uvicorn.run(log_config=...): every logger, one format, stderr."""
    level = check_level(level).upper()
    if log_format == "json":
        formatters: dict[str, dict[str, Any]] = {
            "default": {"()": JsonFormatter},
            "uvicorn": {"()": JsonFormatter},
        }
    else:
        # uvicorn's own look for a person at a terminal; our lines say which module.
        formatters = {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(name)s: %(message)s",
            },
            "uvicorn": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
            },
        }
    handlers = {
        name: {"class": "logging.StreamHandler", "formatter": name, "stream": "ext://sys.stderr"}
        for name in formatters
    }
    uvicorn = {"handlers": ["uvicorn"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": handlers,
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": uvicorn,
            "uvicorn.error": {"level": level},
            # uvicorn.run(access_log=False) removes its handlers: addresses, never written.
            "uvicorn.access": dict(uvicorn),
        },
    }
