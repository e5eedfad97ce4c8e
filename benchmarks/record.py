"""What a run records: its figures, printed, and appended to RESULTS.md with the commit measured."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

RESULTS_PATH = Path(__file__).with_name("RESULTS.md")
#: The checkout these benchmarks belong to (and measure, unless told otherwise).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Files the benchmarks write themselves, relative to the repository root.
OUTPUTS = ("benchmarks/RESULTS.md", "benchmarks/concurrency.png")
RESULTS_INTRO = """\
# Benchmark results

Appended by `python -m benchmarks`, one row per figure, never edited by hand.

- **date**: when the run ended (UTC); **machine**: `uname -m` and the CPU count.
- **figure**: what was measured; **value**: the measurement.
- **reference**: what it is compared with, measured in the same run (a wire limit,
  a budget, the concurrency-1 throughput); **ratio**: value / reference.
- **target**: what the design promises; **met?**: whether this run met it.
- **command**: exactly what was run, from the repository root with the venv's python.
"""
#: Rows written before the commit was recorded have no commit column; rather than
#: rewrite them, a file that has only the old table gets this second table appended.
COMMIT_COLUMNS = "| date (UTC) | commit | machine |"
COMMIT_TABLE = f"""
## Rows that name the commit measured

From here on each row also names the commit measured (`git rev-parse --short HEAD`),
with `+dirty` when tracked files had uncommitted changes: such a figure cannot be
reproduced from the commit alone. The other columns are as above.

{COMMIT_COLUMNS} benchmark | figure | value | reference | ratio | target | met? | command |
|---|---|---|---|---|---|---|---|---|---|---|
"""


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure and the same-run reference it is judged against."""

    benchmark: str
    name: str
    value: float
    reference: float
    target: str
    met: bool

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else float("nan")


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs"


def print_table(title: str, rows: Sequence[tuple[str, str]], out: TextIO = sys.stdout) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}", file=out)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}", file=out)
    out.flush()


def git_commit(root: Path = REPO_ROOT) -> str:
    """The commit measured, ``+dirty`` if tracked files differ from it.

    Untracked files are ignored (scratch files beside the checkout do not change what
    was measured), and so are the benchmarks' own outputs, RESULTS.md and the plot:
    rows appended by an earlier run must not mark the next run's code as changed.
    ``root`` is another checkout when a benchmark measures that checkout's code."""
    try:
        head = _git(root, "rev-parse", "--short", "HEAD").strip()
        dirty = _git(
            root,
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            *(f":(exclude){output}" for output in OUTPUTS),
        ).strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
    ).stdout


def append_results(
    figures: Sequence[Figure], command: str, commit: str, path: Path = RESULTS_PATH
) -> None:
    """Appends one row per figure, starting the table with the commit column if needed."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    lines = [
        f"| {date} | {commit} | {machine()} | {f.benchmark} | {f.name} | {f.value:.1f} | "
        f"{f.reference:.1f} | {f.ratio:.2f} | {f.target} | {'yes' if f.met else 'NO'} | "
        f"`{command}` |\n"
        for f in figures
    ]
    existing = path.read_text(encoding="utf-8") if path.exists() else None
    with path.open("a", encoding="utf-8") as results:
        if existing is None:
            results.write(RESULTS_INTRO + COMMIT_TABLE)
        elif COMMIT_COLUMNS not in existing:
            results.write(COMMIT_TABLE)
        results.writelines(lines)
