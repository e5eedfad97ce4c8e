"""Property tests (hypothesis) for the two places outside input is parsed.

* The spool: ``classify`` on random trees built in a temp dir (odd names, invalid
  UTF-8, fifos, symlinks, symlinked directories) never raises, names a repository
  only when ECR would accept it, and never hands on a path outside the watch dir.
* The settings: ``load_settings`` with random TOML files, environments and flags
  either returns ``DaemonSettings`` or raises ``ConfigurationError`` naming the source of
  every bad value.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from uploaderd.daemon.finished import PathEscapeError, contained
from uploaderd.daemon.spool import Rejected, SpoolFile, classify, walk
from uploaderd.errors import ConfigurationError
from uploaderd.naming import repository_name_problem
from uploaderd.settings import ENV_PREFIX, DaemonSettings, load_settings, specs

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- the spool ---------------------------------------------------------------------------

# Valid repository characters, characters ECR refuses, separators' look-alikes, control
# characters, non-ASCII, and lone surrogates (how Python reads a name that is not UTF-8).
NAME_ALPHABET = st.sampled_from(
    list("abcz09._-") + list("AZ \\:@~") + ["\n", "\t", "\r", "é", "☃", "\udce9", "\udcff"]
)
COMPONENT = st.text(NAME_ALPHABET, min_size=1, max_size=12).filter(
    lambda name: name not in (".", "..")
)
ENTRY_KINDS = ("file", "empty", "dir", "fifo", "link-in", "link-out", "link-dangling", "missing")
KNOWN_CODES = {
    "NotARegularFile",
    "InvalidFileName",
    "NoRepository",
    "InvalidRepository",
    "Symlink",
    "SymlinkOutsideSpool",
}


@st.composite
def spool_entries(draw: st.DrawFn) -> tuple[list[str], str, str, int | None]:
    directories = draw(st.lists(COMPONENT, max_size=4))
    name = draw(COMPONENT)
    kind = draw(st.sampled_from(ENTRY_KINDS))
    linked = None
    if directories and draw(st.booleans()):
        linked = draw(st.integers(0, len(directories) - 1))  # this directory is a symlink
    return directories, name, kind, linked


def build(
    base: Path, directories: list[str], name: str, kind: str, linked: int | None
) -> tuple[Path, str]:
    """Create the entry; return the watch dir and the entry's spool-relative path."""
    watch, outside = base / "watch", base / "outside"
    watch.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"outside the spool")
    (watch / ".inside-target").write_bytes(b"inside the spool")
    parent = watch
    for index, directory in enumerate(directories):
        if index == linked:
            target = outside / f"linked{index}"
            target.mkdir()
            (parent / directory).symlink_to(target, target_is_directory=True)
            parent = target
        else:
            (parent / directory).mkdir(exist_ok=True)
            parent = parent / directory
    entry = parent / name
    if kind in ("file", "empty"):
        entry.write_bytes(b"layer" if kind == "file" else b"")
    elif kind == "dir":
        entry.mkdir()
    elif kind == "fifo":
        os.mkfifo(entry)
    elif kind == "link-in":
        entry.symlink_to(watch / ".inside-target")
    elif kind == "link-out":
        entry.symlink_to(outside / "secret")
    elif kind == "link-dangling":
        entry.symlink_to(base / "nowhere")
    return watch, "/".join([*directories, name])


def inside(watch: Path, path: str) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(watch) + os.sep)


@FUZZ
@given(spool_entries())
def test_classify_never_raises_nor_leaves_the_spool(
    entry: tuple[list[str], str, str, int | None],
) -> None:
    directories, name, kind, linked = entry
    with tempfile.TemporaryDirectory() as tmp:
        try:
            watch, relpath = build(Path(tmp), directories, name, kind, linked)
        except OSError:
            assume(False)  # a name the filesystem refuses (e.g. too long in bytes)
            raise
        verdict = classify(watch, relpath)
        parent = os.path.dirname(os.path.join(watch, relpath))
        if isinstance(verdict, SpoolFile):
            assert verdict.relpath == relpath
            assert repository_name_problem(verdict.repository) is None
            assert verdict.repository == relpath.rpartition("/")[0]
            assert inside(watch, os.path.join(watch, relpath))
            assert stat.S_ISREG(os.lstat(os.path.join(watch, relpath)).st_mode)
            assert "\n" not in relpath
            relpath.encode("utf-8")  # valid UTF-8
        elif isinstance(verdict, Rejected):
            assert verdict.relpath == relpath
            assert verdict.code in KNOWN_CODES
            assert verdict.message
            # A rejected entry is moved to failed/ (the entry itself, never what a
            # link points at): the directory it is moved from must be in the spool.
            assert inside(watch, os.path.join(parent, "x"))
        else:
            assert verdict is None
        # The rescan only reports entries whose directory is really in the spool.
        for found in walk(watch):
            assert inside(watch, os.path.join(os.path.dirname(os.path.join(watch, found)), "x"))


@FUZZ
@given(
    st.lists(COMPONENT | st.sampled_from(["..", ".", ""]), min_size=1, max_size=6),
    st.booleans(),
)
def test_contained_is_inside_its_root_or_refuses(parts: list[str], absolute: bool) -> None:
    relpath = ("/" if absolute else "") + "/".join(parts)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "done"
        root.mkdir()
        try:
            destination = contained(root, relpath)
        except PathEscapeError:
            return
        assert destination.is_relative_to(root)
        assert ".." not in destination.relative_to(root).parts
        assert destination != root


# --- the settings ------------------------------------------------------------------------

FIELDS = list(specs(DaemonSettings))
SCALARS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
    st.sampled_from(
        [
            "1MiB",
            "20MiB",
            "256MiB",
            "1e400",
            "-1",
            "0",
            "abc",
            "127.0.0.1:9464",
            "[::1]:9464",
            "::1",
            "host:99999",
            "json",
            "logfmt",
            "/tmp/x",
            "",
            "1.5",
            "true",
        ]
    ),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
KEYS = st.one_of(st.sampled_from(FIELDS), st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
ENV_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
    SCALARS.map(str),
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string for most text; refused ones are fine too


def source_labels(config: Path | None, data: dict[str, Any], environ: dict[str, str]) -> list[str]:
    labels = [f"{key!r} in {config}" for key in data] if config is not None else []
    labels += [f"{key}=" for key in environ]
    labels += ["--"]  # flags, and the flag named for a missing required setting
    return labels


@FUZZ
@given(
    data=st.dictionaries(KEYS, VALUES, max_size=6),
    environ=st.dictionaries(st.sampled_from([ENV_PREFIX + f.upper() for f in FIELDS]), ENV_TEXT),
    flags=st.dictionaries(st.sampled_from(FIELDS), st.none() | ENV_TEXT, max_size=4),
    garbage=st.none() | st.binary(max_size=40),
)
def test_load_settings_returns_settings_or_names_the_source(
    data: dict[str, Any],
    environ: dict[str, str],
    flags: dict[str, str | None],
    garbage: bytes | None,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        if garbage is not None:
            config.write_bytes(garbage)
        else:
            lines = [f"{json.dumps(key)} = {toml_value(value)}" for key, value in data.items()]
            config.write_text("\n".join(lines) + "\n", errors="surrogateescape")
        try:
            loaded = load_settings(DaemonSettings, flags, config_file=config, environ=environ)
        except ConfigurationError as exc:
            message = exc.message
            if message.startswith(f"config file {config}"):
                return  # the file itself is not TOML: named, with the parser's reason
            assert message.startswith("invalid settings:\n"), message
            labels = source_labels(config if garbage is None else None, data, environ)
            for line in message.splitlines()[1:]:
                assert line.startswith("  "), message
                assert any(line[2:].startswith(label) for label in labels), line
            return
        assert isinstance(loaded, DaemonSettings)


def test_load_settings_names_an_unknown_key_and_its_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('watch = "/w"\nstate_dir = "/s"\nconcurency = 3\n')
    expected = rf"'concurency' in {re.escape(str(config))}: unknown setting"
    with pytest.raises(ConfigurationError, match=expected):
        load_settings(DaemonSettings, {}, config_file=config, environ={})
