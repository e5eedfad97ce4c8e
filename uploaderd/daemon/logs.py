"""Structured log lines: logfmt or JSON, one event per line.

Only values passed explicitly are logged; nothing reads credentials, so no
log line can carry one.  botocore's own loggers are kept at WARNING because
at DEBUG they print request headers, signatures included.

Under systemd with stderr connected to the journal, each line starts with a
syslog priority ("<3>" for an error, sd-daemon(3)): journald strips it and
files the line at that priority, so ``journalctl -p err`` finds the errors.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

LOGGER = logging.getLogger("uploaderd")

# Python level -> syslog priority, highest first; anything below INFO is debug.
_SYSLOG_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_SYSLOG_DEBUG = 7


def syslog_priority(levelno: int) -> int:
    for threshold, priority in _SYSLOG_PRIORITIES:
        if levelno >= threshold:
            return priority
    return _SYSLOG_DEBUG


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when systemd connected ``stream`` to the journal.

    systemd sets JOURNAL_STREAM to "<device>:<inode>" of that stream; the variable
    is inherited by every child, so a daemon started from a shell in a service (a CI
    runner, a build job) whose stderr is a file or a pipe must not take it at its
    word: compare it with the stream itself, as systemd.exec(5) says to.
    """
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        found = os.fstat(stream.fileno())
    except (OSError, ValueError):  # closed, or not a real file (pytest's capture)
        return False
    return (found.st_dev, found.st_ino) == (int(device), int(inode))


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' ="\n\t'):
        return json.dumps(text)
    return text


class StructuredFormatter(logging.Formatter):
    def __init__(self, style: str, *, priority_prefix: bool = False) -> None:
        super().__init__()
        self.style_name = style
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields.update(getattr(record, "fields", {}))
        if self.style_name == "json":
            line = json.dumps(fields, default=str)
        else:
            line = " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())
        if self.priority_prefix:
            return f"<{syslog_priority(record.levelno)}>{line}"
        return line


def configure(style: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    journal = stream_is_journal(sys.stderr)
    handler.setFormatter(StructuredFormatter(style, priority_prefix=journal))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("botocore", "aiobotocore", "aiohttp", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(name: str, *, level: int = logging.INFO, **fields: object) -> None:
    """Log one event with its fields."""
    LOGGER.log(level, name, extra={"fields": fields})
