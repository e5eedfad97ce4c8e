"""The ``uploaderd`` command: ``push`` and ``local-registry`` subcommands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from uploaderd import localregistry, logs
from uploaderd.config import ENV_PREFIX, Settings, load_partial, load_settings
from uploaderd.daemon import run_daemon
from uploaderd.demo import run_demo
from uploaderd.engine import EngineSettings, UploadEngine, all_succeeded
from uploaderd.errors import ConfigurationError, UploaderError, unwrap_group
from uploaderd.image.command import add_image_arguments, push_image_command
from uploaderd.memory import return_freed_buffers_to_the_system, reuse_freed_buffers
from uploaderd.naming import repository_name_problem
from uploaderd.parts import MIB
from uploaderd.progress import LayerJob, LayerResult, SilentObserver
from uploaderd.registry.choice import add_registry_arguments, open_registry_for_args
from uploaderd.report import result_line, result_record, summary_line
from uploaderd.requeue import retry_failed
from uploaderd.retry import RetryPolicy
from uploaderd.sizes import parse_size
from uploaderd.status import open_journal_read, show_status
from uploaderd.terminal import PushProgress, watch_refreshing

EXIT_OK = 0
EXIT_LAYER_FAILED = 1
EXIT_USAGE = 2


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uploaderd",
        description="Push container image layers to Amazon ECR through its layer-push API.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_push_command(commands)
    registry = commands.add_parser(
        "local-registry",
        help="run an ECR-compatible registry on loopback (for tests and demos)",
        description="Serve ECR's layer-push API (AWS JSON 1.1) from a local directory.",
    )
    localregistry.add_arguments(registry)
    _add_run_command(commands)
    status = commands.add_parser(
        "status",
        help="show the daemon's queue, uploads in flight and recent failures",
        description="Read the daemon's journal (no running daemon needed).",
    )
    status.add_argument("--state-dir", type=Path, help="the daemon's state dir")
    status.add_argument("--config", type=Path, help="the daemon's config file")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--watch", action="store_true", help="refresh the view every second until Ctrl-C"
    )
    retry = commands.add_parser(
        "retry-failed",
        help="put the files in <state-dir>/failed/ back into the spool",
        description="Move every failed file back to <watch>/<repository>/ so the daemon "
        "tries it again; its .error.json is removed.",
    )
    retry.add_argument("--state-dir", type=Path, help="the daemon's state dir")
    retry.add_argument("--watch", type=Path, help="the daemon's spool directory")
    retry.add_argument("--config", type=Path, help="the daemon's config file")
    commands.add_parser(
        "demo",
        help="push sample layers to an embedded local registry and verify them",
        description="Start the embedded ECR-compatible registry, push sample layers with "
        "'uploaderd push', fetch them back and check their digests.",
    )
    return parser


def _add_push_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    push = commands.add_parser(
        "push",
        help="push layer files to one repository and exit",
        description="Push layer tarballs to an ECR repository; prints one line per layer. "
        "Credentials, region and endpoint come from the standard AWS chain "
        "(AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_ECR, ...) unless given here.",
    )
    push.add_argument("files", nargs="*", type=Path, metavar="FILE", help="layer files to push")
    push.add_argument("--repository", required=True, help="repository name")
    add_image_arguments(push)
    add_registry_arguments(push)
    push.add_argument("--endpoint-url", help="ECR endpoint (default: the AWS chain)")
    push.add_argument("--region", help="AWS region (default: the AWS chain)")
    push.add_argument(
        "--concurrency", type=_positive_int, default=4, help="layers in flight (default 4)"
    )
    push.add_argument(
        "--part-size",
        type=_size,
        help="bytes per part, clamped to 5MiB..20MiB (default: what the registry says)",
    )
    push.add_argument(
        "--memory-budget",
        type=_size,
        default=256 * MIB,
        help="bytes of layer data held at once across all layers (default 256MiB)",
    )
    push.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=8,
        help="attempts per request before a layer fails (default 8)",
    )
    push.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=120.0,
        help="seconds to wait for an answer to one request (default 120)",
    )
    push.add_argument("--json", action="store_true", help="one JSON object per layer")
    push.add_argument(
        "--no-progress",
        action="store_true",
        help="plain lines even on a terminal (the live display is used only on a TTY)",
    )


def _add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="watch a spool directory and push every layer dropped into it",
        description="Run the daemon: a file at <watch>/<repository>/<name> is pushed to ECR "
        "repository <repository>, then moved to <state-dir>/done/ (or failed/ with a reason). "
        "Settings come from --config FILE (TOML) < UPLOADERD_<NAME> environment < flags.",
    )
    run.add_argument("--config", type=Path, help="TOML file with any of the settings below")
    for name, spec in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = "" if spec.is_required() or spec.default is None else f" (default {spec.default})"
        help_text = f"{spec.description}{default}; env {ENV_PREFIX}{name.upper()}"
        if spec.annotation is bool:
            run.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            run.add_argument(flag, metavar=name.upper(), help=help_text)


class _LinePrinter(SilentObserver):
    """Prints each layer's line as soon as it ends, so long pushes show progress."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json

    def layer_finished(self, result: LayerResult) -> None:
        line = json.dumps(result_record(result)) if self.as_json else result_line(result)
        print(line, flush=True)


async def _push(args: argparse.Namespace) -> int:
    return_freed_buffers_to_the_system()
    problem = repository_name_problem(args.repository)
    if problem is not None:
        raise ConfigurationError(problem + "; pass a valid --repository", code="InvalidRepository")
    try:
        settings = EngineSettings(
            concurrency=args.concurrency,
            memory_budget=args.memory_budget,
            part_size=args.part_size,
            retry=RetryPolicy(max_attempts=args.max_attempts),
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc), code="InvalidSetting") from None
    if args.image is not None or not args.files:
        return await push_image_command(args, settings, _LinePrinter(as_json=args.json))
    jobs = [LayerJob(path, args.repository) for path in args.files]
    started = time.monotonic()
    live = sys.stdout.isatty() and not args.json and not args.no_progress
    async with open_registry_for_args(args) as registry:
        if live:
            with PushProgress(jobs) as display:
                results = await UploadEngine(registry, settings, display).push_all(jobs)
        else:
            engine = UploadEngine(registry, settings, _LinePrinter(as_json=args.json))
            results = await engine.push_all(jobs)
    print(summary_line(results, time.monotonic() - started), file=sys.stderr, flush=True)
    return EXIT_OK if all_succeeded(results) else EXIT_LAYER_FAILED


async def _local_registry(args: argparse.Namespace) -> int:
    def announce(url: str) -> None:
        print(f"uploaderd local-registry listening on {url}", flush=True)

    reuse_freed_buffers()
    await localregistry.serve_forever(localregistry.config_from_args(args), announce)
    return EXIT_OK


async def _run(args: argparse.Namespace) -> int:
    flags = {name: getattr(args, name) for name in Settings.model_fields}

    def reload() -> Settings:
        return load_settings(flags, config_file=args.config)

    settings = reload()
    logs.configure(settings.log_format)
    return_freed_buffers_to_the_system()
    return await run_daemon(settings, reload)


async def _status(args: argparse.Namespace) -> int:
    found = load_partial(("state_dir",), vars(args), config_file=args.config)
    if args.watch and not args.json:
        await anyio.to_thread.run_sync(
            watch_refreshing, lambda: show_status(found["state_dir"], as_json=False)
        )
        return EXIT_OK
    print(show_status(found["state_dir"], as_json=args.json))
    return EXIT_OK


async def _retry_failed(args: argparse.Namespace) -> int:
    found = load_partial(("state_dir", "watch"), vars(args), config_file=args.config)
    journal = open_journal_read(found["state_dir"])
    try:
        report = retry_failed(journal, found["watch"], found["state_dir"])
    finally:
        journal.close()
    for relpath, what in report:
        print(f"{relpath}: {what}")
    print(f"{len(report)} failed files handled", file=sys.stderr)
    return EXIT_OK


async def _demo(args: argparse.Namespace) -> int:
    return await run_demo()


COMMANDS = {
    "push": _push,
    "local-registry": _local_registry,
    "demo": _demo,
    "run": _run,
    "status": _status,
    "retry-failed": _retry_failed,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        try:
            return anyio.run(command, args, backend_options={"use_uvloop": True})
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None
    except UploaderError as exc:
        print(f"uploaderd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigurationError) else EXIT_LAYER_FAILED
    except KeyboardInterrupt:
        return 130
