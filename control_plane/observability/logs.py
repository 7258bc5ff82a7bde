"""Logging set up once per process: JSON lines (one object per record) for machines, or plain text for people.

`serve` and `worker` default to JSON (CONTROL_PLANE_LOG_FORMAT=json|text); other commands and in-process apps log
text. Records carry structured fields through `extra={"fields": {...}}`; nothing here reads a request, so what a
line holds is exactly what its caller chose to put there.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Marks the handler this module installed, so configuring twice (gunicorn's master, then create_app in each
# worker) keeps one handler.
_MARK = "_control_plane_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's `fields`, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The classic line, with the structured fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))
        return text


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(level: str, log_format: str) -> None:
    """Installs one stderr handler on the root logger; later calls only adjust the level."""
    root = logging.getLogger()
    root.setLevel(level)
    if any(getattr(h, _MARK, False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    setattr(handler, _MARK, True)
    root.addHandler(handler)


class _MarkedStreamHandler(logging.StreamHandler):
    """The handler gunicorn's dictConfig builds: marked, so create_app in each worker does not add another."""

    def __init__(self, stream=None):
        super().__init__(stream)
        setattr(self, _MARK, True)


_FORMATTERS = {"json": "JsonFormatter", "text": "TextFormatter"}


def gunicorn_config(level: str, log_format: str) -> dict:
    """gunicorn's `logconfig_dict`: its own messages go through the same formatter as ours, to stderr.

    Its access log stays off: the app writes one richer line per request itself.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"control_plane": {"()": f"{__name__}.{_FORMATTERS[log_format]}"}},
        "handlers": {"control_plane": {"()": f"{__name__}._MarkedStreamHandler", "formatter": "control_plane",
                                       "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["control_plane"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }
