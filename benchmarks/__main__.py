"""``python -m benchmarks [NAME ...] [--quick]``: run benchmarks, print and record figures.

Each benchmark is one module with ``run(quick=...) -> list[Figure]``; this dispatcher
only chooses which to run and appends their figures to RESULTS.md with the exact
command and the commit measured, so a row can always be reproduced. A benchmark that
fails says why and records nothing; the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import (
    concurrency,
    memory,
    network,
    overlap,
    pickup,
    push,
    record,
    skopeo,
    small,
    startup,
    throttling,
)
from benchmarks.record import Figure

BENCHMARKS: dict[str, Callable[..., list[Figure]]] = {
    push.NAME: push.run,
    concurrency.NAME: concurrency.run,
    skopeo.NAME: skopeo.run,
    memory.NAME: memory.run,
    pickup.NAME: pickup.run,
    small.NAME: small.run,
    startup.NAME: startup.run,
    overlap.NAME: overlap.run,
    network.NAME: network.run,
    throttling.NAME: throttling.run,
}
#: Benchmarks that can measure another checkout's code (UPLOADERD_BENCH_SOURCE): each
#: turns the main checkout's commit into the one its rows should name.
MEASURED_COMMIT: dict[str, Callable[[str], str]] = {startup.NAME: startup.measured_commit}
#: Benchmarks whose rows name the commit of the uploaderd package they ran, dirty only if
#: that package is: they are run from a clone with newer benchmark files copied in.
PACKAGE_COMMIT: dict[str, Callable[[str], str]] = {
    network.NAME: network.measured_commit,
    skopeo.NAME: network.measured_commit,
}


def compile_measured_code(checkout: Path) -> None:
    """Byte-compile the package measured, as an installed uploaderd is.

    A fresh checkout run with PYTHONDONTWRITEBYTECODE (set on these machines)
    compiles every uploaderd module at each start: ~0.25 CPU-s that no
    installed copy pays, added to every push's CPU.
    """
    compileall.compile_dir(checkout / "uploaderd", quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run uploaderd's benchmarks; figures are ratios against a reference "
        "measured in the same run, appended to benchmarks/RESULTS.md.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    options = parser.parse_args(args)
    unknown = [name for name in options.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    names = options.names or list(BENCHMARKS)
    source = os.environ.get(startup.SOURCE_ENV)
    # The variable changes what is measured, so it is part of the command to reproduce.
    prefix = [f"{startup.SOURCE_ENV}={source}"] if source else []
    # So does PYTHONPATH, when it points the pushes at a clone (network.check_measured_code).
    if os.environ.get("PYTHONPATH"):
        prefix.insert(0, f"PYTHONPATH={os.environ['PYTHONPATH']}")
    command = shlex.join([*prefix, "python", "-m", "benchmarks", *args])
    if source and set(names) - set(MEASURED_COMMIT):
        print(
            f"note: {startup.SOURCE_ENV} applies only to {', '.join(MEASURED_COMMIT)}; "
            "the others measure this checkout and name its commit",
            file=sys.stderr,
        )
    compile_measured_code(Path(source) if source else record.REPO_ROOT)
    # Taken before running: the figures describe the code as it was when they started.
    commit = record.git_commit()
    commit_of = {**PACKAGE_COMMIT, **MEASURED_COMMIT}
    commits = {name: commit_of.get(name, str)(commit) for name in names}
    failed = []
    for name in names:
        try:
            figures = BENCHMARKS[name](quick=options.quick)
        # BenchmarkError is a RuntimeError, as is the registry not starting; OSError is
        # the registry going away mid-run.
        except (RuntimeError, OSError) as exc:
            print(f"\nbenchmark {name} FAILED, nothing recorded: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        record.append_results(figures, command, commits[name])
    print(
        f"\nrecorded in {record.RESULTS_PATH} (commit {', '.join(sorted(set(commits.values())))})"
    )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
