"""``startup``: how long does an ``uploaderd`` command take before it does any work?

Every invocation an operator or a script makes (``status`` in a monitoring loop,
``--version`` in a deploy check) pays the interpreter's start-up plus the import of
everything the CLI module pulls in, so this is timed as the whole process, the way a
shell sees it: wall-clock from spawn to reap, plus the child's own user+sys CPU (from
wait4, in ``measure.run_measured``). The reference is ``python -c pass`` with the same
interpreter, directory and environment in the same run: what is left above it is
uploaderd's own cost, which is what an import refactor can change.

The commands run round-robin, each round in a rotated order, so a noisy moment or a
position effect (say, always following the reference) falls on all of them alike; the
figures are medians. One untimed round comes first: it writes the bytecode caches,
lets ``status`` create the journal's schema in the empty file made for it, and warms
the page cache, none of which a repeated invocation pays.

``UPLOADERD_BENCH_SOURCE=/path/to/checkout`` measures that checkout's code with this
venv (through ``PYTHONPATH``) and names its commit in the rows, so a before and an
after can be measured the same way. The children run in an empty temporary directory:
``python -m`` puts the working directory first on sys.path, so run from the
repository root it would import this checkout's code whatever PYTHONPATH says. Which
``uploaderd`` the children import is checked before anything is timed. Only the CLI
is used, never uploaderd's modules, so the benchmark works on any layout of them.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import measure, record
from benchmarks.harness import BenchmarkError
from benchmarks.measure import ChildRun
from benchmarks.record import Figure

NAME = "startup"
SOURCE_ENV = "UPLOADERD_BENCH_SOURCE"
REPEATS = 15
QUICK_REPEATS = 5
#: A start-up taking this long is stuck, not slow.
COMMAND_TIMEOUT = 60.0
#: argparse's exit status for a usage error: code without ``--version`` still imports
#: the CLI and builds its whole parser before refusing the flag, so it is timed anyway.
USAGE_ERROR = 2
#: Inherited variables that would change what the children do: another PYTHONPATH,
#: no bytecode caching, import tracing, uploaderd settings from the caller's shell.
SCRUBBED_PREFIXES = ("PYTHON", "UPLOADERD_")


@dataclass(frozen=True, slots=True)
class Command:
    """One timed command line, and what it must do to count as having started up."""

    label: str
    args: tuple[str, ...]
    #: Median whole-process wall-clock seconds promised, if any.
    target_s: float | None = None
    #: Exit statuses accepted; anything else means the start-up was not what was timed.
    exits: frozenset[int] = frozenset({0})


@dataclass(frozen=True, slots=True)
class Medians:
    """The medians of one command's timed runs, and the exit status they all had."""

    wall_s: float
    cpu_s: float
    returncode: int


def source_checkout() -> Path | None:
    """The checkout named by UPLOADERD_BENCH_SOURCE, or None to measure this one."""
    source = os.environ.get(SOURCE_ENV)
    return Path(source).resolve() if source else None


def measured_commit(default: str) -> str:
    """The commit the rows should name: the source checkout's (with its path) when one
    is given, else ``default``, the main checkout's, which the dispatcher passes in."""
    source = source_checkout()
    return default if source is None else f"{record.git_commit(source)} ({source})"


def run(*, quick: bool) -> list[Figure]:
    repeats = QUICK_REPEATS if quick else REPEATS
    source = source_checkout()
    if source is not None and not (source / "uploaderd" / "__init__.py").is_file():
        raise BenchmarkError(f"{SOURCE_ENV}={source} has no uploaderd/__init__.py")
    with tempfile.TemporaryDirectory(prefix="uploaderd-bench-startup-") as directory:
        workdir = Path(directory)
        state_dir = workdir / "state"
        state_dir.mkdir()
        # status refuses a state dir without a journal file; an empty one is enough,
        # since opening the journal creates its schema (in the warm-up round).
        sqlite3.connect(state_dir / "journal.sqlite").close()
        env = child_environment(source)
        imported = imported_uploaderd(workdir, env, source or record.REPO_ROOT)
        commands = [
            Command("python -c pass", ("-c", "pass")),
            Command(
                "uploaderd --version",
                ("-m", "uploaderd", "--version"),
                target_s=0.15,
                exits=frozenset({0, USAGE_ERROR}),
            ),
            Command(
                "uploaderd status --state-dir D",
                ("-m", "uploaderd", "status", "--state-dir", str(state_dir)),
                target_s=0.35,
            ),
            Command("uploaderd push --help", ("-m", "uploaderd", "push", "--help")),
        ]
        medians = time_round_robin(commands, repeats, workdir, env)
    report(commands, medians, repeats, imported)
    return figures(commands, medians)


def child_environment(source: Path | None) -> dict[str, str]:
    """This process's environment without SCRUBBED_PREFIXES, plus the source path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(SCRUBBED_PREFIXES)}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def imported_uploaderd(workdir: Path, env: dict[str, str], expected_root: Path) -> Path:
    """Where the children's ``import uploaderd`` comes from; refuses to time the wrong
    code (an editable install elsewhere, a stale PYTHONPATH, the working directory)."""
    child = _run(("-c", "import uploaderd; print(uploaderd.__file__)"), workdir, env)
    if child.returncode != 0:
        raise BenchmarkError(f"the children cannot import uploaderd:\n{child.stderr[-2000:]}")
    imported = Path(child.stdout.strip()).resolve()
    if not imported.is_relative_to(expected_root):
        raise BenchmarkError(f"the children import {imported}, not the code in {expected_root}")
    return imported


def time_round_robin(
    commands: Sequence[Command], repeats: int, workdir: Path, env: dict[str, str]
) -> list[Medians]:
    """Runs one untimed round, then ``repeats`` timed ones, rotating the order each
    round; returns each command's medians, in the order of ``commands``."""
    runs: list[list[ChildRun]] = [[] for _ in commands]
    for round_index in range(repeats + 1):
        for offset in range(len(commands)):
            index = (round_index + offset) % len(commands)
            child = _run(commands[index].args, workdir, env)
            _check_exit(commands[index], child)
            if round_index:  # round 0 is the warm-up
                runs[index].append(child)
    medians = []
    for command, timed in zip(commands, runs, strict=True):
        returncodes = {child.returncode for child in timed}
        if len(returncodes) != 1:
            raise BenchmarkError(f"{command.label} exited with {sorted(returncodes)} by turns")
        medians.append(
            Medians(
                statistics.median(child.wall_seconds for child in timed),
                statistics.median(child.cpu_seconds for child in timed),
                returncodes.pop(),
            )
        )
    return medians


def _run(args: Sequence[str], workdir: Path, env: dict[str, str]) -> ChildRun:
    return measure.run_measured([sys.executable, *args], env, COMMAND_TIMEOUT, cwd=workdir)


def _check_exit(command: Command, child: ChildRun) -> None:
    """A command that failed did not do what is being timed: no figure is better."""
    usage_error = child.returncode == USAGE_ERROR and "usage:" in child.stderr
    if child.returncode not in command.exits or (child.returncode and not usage_error):
        raise BenchmarkError(
            f"{command.label} exited with {child.returncode}; stderr tail:\n{child.stderr[-2000:]}"
        )


def report(
    commands: Sequence[Command], medians: Sequence[Medians], repeats: int, imported: Path
) -> None:
    reference = medians[0]
    rows = [("code measured", str(imported.parent))]
    for command, median in zip(commands, medians, strict=True):
        value = f"wall {median.wall_s:.3f} s, CPU {median.cpu_s:.3f} s"
        if median is not reference:
            value += (
                f" (+{median.wall_s - reference.wall_s:.3f} s wall, "
                f"+{median.cpu_s - reference.cpu_s:.3f} s CPU over python -c pass)"
            )
        if command.target_s is not None:
            met = "met" if median.wall_s <= command.target_s else "MISSED"
            value += f"; target <= {command.target_s:.2f} s wall: {met}"
        if median.returncode:
            value += f"; exited {median.returncode} (usage error)"
        rows.append((command.label, value))
    record.print_table(f"startup: medians of {repeats} whole-process runs each, round-robin", rows)


def figures(commands: Sequence[Command], medians: Sequence[Medians]) -> list[Figure]:
    """Milliseconds, as the rows keep one decimal: seconds would round to nothing."""
    reference_command, reference = commands[0], medians[0]
    ref_label = f"`{reference_command.label}` ms"
    result = [
        Figure(
            NAME,
            f"{ref_label} median wall vs itself",
            reference.wall_s * 1000,
            reference.wall_s * 1000,
            "-",
            True,
        )
    ]
    for command, median in zip(commands[1:], medians[1:], strict=True):
        label = f"`{command.label}`"
        if median.returncode:
            label += f" (exits {median.returncode}, a usage error: this code lacks the flag)"
        target_met = command.target_s is None or median.wall_s <= command.target_s
        result += [
            Figure(
                NAME,
                f"{label} median wall ms vs {ref_label}",
                median.wall_s * 1000,
                reference.wall_s * 1000,
                "-" if command.target_s is None else f"<= {command.target_s * 1000:.0f} ms",
                target_met,
            ),
            Figure(
                NAME,
                f"{label} median user+sys CPU ms vs {ref_label}",
                median.cpu_s * 1000,
                reference.cpu_s * 1000,
                "-",
                True,
            ),
        ]
    return result
