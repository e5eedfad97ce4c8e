"""The ``uploaderd`` command: the subcommands, each imported only when it is the one run.

``uploaderd --version`` and ``uploaderd status`` must not pay for botocore,
aiohttp or the local registry, so this module imports nothing heavy: it
finds the subcommand's name first, then builds and runs that one only.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from uploaderd import __version__
from uploaderd.cli.exits import ExitStatus
from uploaderd.errors import ConfigurationError, UploaderError, unwrap_group

COMMANDS = {
    "push": ("push", "push layer files or a whole image to one repository and exit"),
    "run": ("run", "watch a spool directory and push every layer dropped into it"),
    "status": ("status", "show the daemon's queue, uploads in flight and recent failures"),
    "retry-failed": ("retry_failed", "put the files in <state-dir>/failed/ back into the spool"),
    "local-registry": (
        "local_registry",
        "run an ECR-compatible registry on loopback (for tests and demos)",
    ),
    "demo": ("demo", "push sample layers to an embedded local registry and verify them"),
}
"""Subcommand -> (its module in uploaderd.cli, its one-line help)."""


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, before anything is parsed."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, ModuleType | None]:
    """The parser, with full arguments for the chosen subcommand only, and its module."""
    parser = argparse.ArgumentParser(
        prog="uploaderd",
        description="Push container image layers to Amazon ECR through its layer-push API.",
    )
    parser.add_argument("--version", action="version", version=f"uploaderd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen, module = _chosen(argv), None
    for name, (module_name, help_text) in COMMANDS.items():
        subparser = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"uploaderd.cli.{module_name}")
            module.add_arguments(subparser)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser, module = build_parser(words)
    args = parser.parse_args(words)
    assert module is not None  # argparse refused any other command
    import anyio  # noqa: PLC0415  # after parsing: --help and --version never need it

    # Everything imported so far lives as long as the process: keep the cyclic
    # garbage collector from scanning it again and again while parts churn.
    gc.freeze()
    try:
        try:
            status: int = anyio.run(module.run, args, backend_options={"use_uvloop": True})
            return status
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None
    except UploaderError as exc:
        print(f"uploaderd: error: {exc}", file=sys.stderr)
        if isinstance(exc, ConfigurationError):
            return ExitStatus.USAGE
        return ExitStatus.FAILED
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # Whoever read our output left (uploaderd status | head): no traceback for that.
        # stdout goes to /dev/null so the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.FAILED
