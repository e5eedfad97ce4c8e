"""Structured log lines: logfmt or JSON, one event per line.

Only values passed explicitly are logged; nothing reads credentials, so no
log line can carry one.  botocore's own loggers are kept at WARNING because
at DEBUG they print request headers, signatures included.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOGGER = logging.getLogger("uploaderd")


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' ="\n\t'):
        return json.dumps(text)
    return text


class StructuredFormatter(logging.Formatter):
    def __init__(self, style: str) -> None:
        super().__init__()
        self.style_name = style

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields.update(getattr(record, "fields", {}))
        if self.style_name == "json":
            return json.dumps(fields, default=str)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


def configure(style: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter(style))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("botocore", "aiobotocore", "aiohttp", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(name: str, *, level: int = logging.INFO, **fields: object) -> None:
    """Log one event with its fields."""
    LOGGER.log(level, name, extra={"fields": fields})
