"""Log lines: journald's priority prefix, only when stderr really is the journal."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from pathlib import Path

import pytest

from uploaderd.daemon.logs import StructuredFormatter, stream_is_journal, syslog_priority


def record(level: int, **fields: object) -> logging.LogRecord:
    made = logging.LogRecord("uploaderd", level, __file__, 1, "layer failed", None, None)
    made.fields = fields
    return made


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
        (logging.ERROR + 5, 3),  # custom levels fall to the next lower standard one
        (logging.NOTSET, 7),
    ],
)
def test_syslog_priorities(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority


def test_logfmt_line_with_and_without_prefix() -> None:
    made = record(logging.ERROR, code="EmptyLayer", file="team/app/x.tar")
    plain = StructuredFormatter("logfmt").format(made)
    prefixed = StructuredFormatter("logfmt", priority_prefix=True).format(made)
    assert plain.startswith("ts=")
    assert prefixed == "<3>" + plain
    assert 'level=error event="layer failed" code=EmptyLayer' in plain


def test_json_line_with_prefix_is_json_after_it() -> None:
    line = StructuredFormatter("json", priority_prefix=True).format(record(logging.WARNING))
    assert line.startswith("<4>{")
    assert json.loads(line[3:])["level"] == "warning"


def journal_env(path: Path, inode_offset: int = 0) -> dict[str, str]:
    stat = path.stat()
    return {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino + inode_offset}"}


def test_stream_is_journal_only_when_device_and_inode_match(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        assert stream_is_journal(stream, journal_env(path))
        assert not stream_is_journal(stream, journal_env(path, inode_offset=1))
        assert not stream_is_journal(stream, {})
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": ""})
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": "journal"})
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": "8:"})


def test_stream_without_a_descriptor_is_not_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    path.touch()
    assert not stream_is_journal(io.StringIO(), journal_env(path))
    stream = path.open("w")
    stream.close()
    assert not stream_is_journal(stream, journal_env(path))


def test_stream_is_journal_reads_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", journal_env(path)["JOURNAL_STREAM"])
        assert stream_is_journal(stream)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not stream_is_journal(stream)


def test_a_socket_is_matched_by_its_inode() -> None:
    """journald hands the service a stream socket; its inode is what JOURNAL_STREAM names."""
    ours, journald = socket.socketpair()
    with ours, journald, ours.makefile("w") as stream:
        found = os.fstat(ours.fileno())
        assert stream_is_journal(stream, {"JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino}"})
        other = os.fstat(journald.fileno())
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": f"{other.st_dev}:{other.st_ino}"})
