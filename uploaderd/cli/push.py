"""``uploaderd push``: layer files (or a whole image) to one repository, then exit."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from uploaderd.cli.exits import ExitStatus
from uploaderd.cli.options import add_setting_flags, given_settings
from uploaderd.cli.push_image import add_image_arguments, push_image_command
from uploaderd.cli.report import result_line, result_record, summary_line
from uploaderd.cli.terminal import PushProgress
from uploaderd.engine.memory import return_freed_buffers_to_the_system
from uploaderd.engine.observer import SilentObserver
from uploaderd.engine.scheduler import UploadEngine, all_succeeded
from uploaderd.errors import ConfigurationError, ErrorCode, LayerFileError
from uploaderd.model import LayerJob, LayerResult, Outcome
from uploaderd.naming import repository_name_problem
from uploaderd.registry.choice import open_registry
from uploaderd.settings import PushSettings, load_settings
from uploaderd.sidecar import claimed_job


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Push layer tarballs to an ECR repository; prints one line per layer. "
        "Credentials, region and endpoint come from the standard AWS chain "
        "(AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_ECR, ...) unless given here. "
        "Settings come from --config FILE (TOML) < UPLOADERD_<NAME> environment < flags."
    )
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help="layer files to push")
    parser.add_argument("--repository", required=True, help="repository name")
    add_image_arguments(parser)
    add_setting_flags(parser, PushSettings)
    parser.add_argument("--json", action="store_true", help="one JSON object per layer")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="plain lines even on a terminal (the live display is used only on a TTY)",
    )


class LinePrinter(SilentObserver):
    """Prints each layer's line as soon as it ends, so long pushes show progress."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json

    def layer_finished(self, result: LayerResult) -> None:
        line = json.dumps(result_record(result)) if self.as_json else result_line(result)
        print(line, flush=True)


class LayerJobs:
    """The layer files to push, each with the digest its name or sidecar claims.

    A file whose sidecar cannot be used is not pushed: it fails at once with
    the sidecar's fault, and the other files go on.
    """

    def __init__(self, jobs: list[LayerJob], refused: Mapping[int, LayerResult]) -> None:
        self.jobs = jobs
        self.refused = refused
        """The failed results of the jobs (by index) whose sidecar cannot be used."""

    @classmethod
    def of(cls, paths: list[Path], repository: str) -> LayerJobs:
        jobs: list[LayerJob] = []
        refused: dict[int, LayerResult] = {}
        for index, path in enumerate(paths):
            job = LayerJob(path, repository)
            try:
                job = claimed_job(job)
            except LayerFileError as exc:
                exc.repository = repository
                refused[index] = LayerResult(job, Outcome.FAILED, 0, None, 0.0, 1, exc)
            jobs.append(job)
        return cls(jobs, refused)

    async def push(self, engine: UploadEngine) -> list[LayerResult]:
        """Every job's result in the jobs' order: the refused ones, and the pushed ones."""
        for result in self.refused.values():
            engine.observer.layer_started(result.job)
            engine.observer.layer_finished(result)
        wanted = [job for index, job in enumerate(self.jobs) if index not in self.refused]
        pushed = iter(await engine.push_all(wanted))
        return [
            self.refused[index] if index in self.refused else next(pushed)
            for index in range(len(self.jobs))
        ]


async def run(args: argparse.Namespace) -> int:
    return_freed_buffers_to_the_system()
    problem = repository_name_problem(args.repository)
    if problem is not None:
        raise ConfigurationError(
            problem + "; pass a valid --repository", code=ErrorCode.INVALID_REPOSITORY
        )
    settings = load_settings(
        PushSettings, given_settings(args, PushSettings), config_file=args.config
    )
    if args.image is not None or not args.files:
        return await push_image_command(args, settings, LinePrinter(as_json=args.json))
    layers = LayerJobs.of(args.files, args.repository)
    started = time.monotonic()
    live = sys.stdout.isatty() and not args.json and not args.no_progress
    async with open_registry(settings.registry_choice()) as registry:
        if live:
            with PushProgress(layers.jobs) as display:
                engine = UploadEngine(registry, settings.engine_settings(), display)
                results = await layers.push(engine)
        else:
            printer = LinePrinter(as_json=args.json)
            engine = UploadEngine(registry, settings.engine_settings(), printer)
            results = await layers.push(engine)
    print(summary_line(results, time.monotonic() - started), file=sys.stderr, flush=True)
    return ExitStatus.OK if all_succeeded(results) else ExitStatus.FAILED
