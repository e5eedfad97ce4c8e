"""``uploaderd push --image PATH``: read and check the image, push it, say what was tagged."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from uploaderd.cli.exits import ExitStatus
from uploaderd.cli.report import summary_line
from uploaderd.engine.observer import EngineObserver
from uploaderd.engine.scheduler import UploadEngine
from uploaderd.errors import ConfigurationError, ErrorCode
from uploaderd.image.push import push_image
from uploaderd.image.source import open_image
from uploaderd.registry.choice import open_registry
from uploaderd.settings import PushSettings


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image",
        type=Path,
        metavar="PATH",
        help="push a whole image instead of FILEs: an OCI layout directory, or a docker save "
        "or OCI layout tarball; the manifest is tagged only once every blob has arrived",
    )
    parser.add_argument(
        "--tag", help="tag for --image (default: its ref.name annotation or RepoTags)"
    )


async def push_image_command(
    args: argparse.Namespace, settings: PushSettings, observer: EngineObserver
) -> int:
    """Push ``args.image`` to ``args.repository``; the exit status for ``uploaderd push``."""
    if args.files:
        raise ConfigurationError(
            "give either layer FILEs or --image PATH, not both", code=ErrorCode.USAGE
        )
    if args.image is None:
        raise ConfigurationError("give layer FILEs or --image PATH", code=ErrorCode.USAGE)
    started = time.monotonic()
    # Blobs unpacked from a tarball live here until the push ends, then go.
    with tempfile.TemporaryDirectory(prefix="uploaderd-image-") as workdir:
        image = await open_image(args.image, args.tag, Path(workdir))
        async with open_registry(settings.registry_choice()) as registry:
            engine = UploadEngine(registry, settings.engine_settings(), observer)
            pushed = await push_image(image, args.repository, registry, engine)
    print(summary_line(pushed.blobs, time.monotonic() - started), file=sys.stderr, flush=True)
    name = f"{args.repository}:{image.tag}"
    if pushed.manifest_digest is None:
        failures = [result.error for result in pushed.blobs if result.error is not None]
        reason = f": {failures[0]} [{failures[0].code}]" if failures else ""
        print(f"uploaderd: error: {name} was not tagged, a blob failed{reason}", file=sys.stderr)
        return ExitStatus.FAILED
    print(f"tagged {name} {pushed.manifest_digest}", file=sys.stderr, flush=True)
    return ExitStatus.OK
