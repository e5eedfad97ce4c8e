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
from uploaderd.image.platforms import parse_platform
from uploaderd.image.push import push_image
from uploaderd.image.source import ImageChoice, open_image
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
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="add a tag to --image, besides its ref.name annotations or RepoTags (repeatable); "
        "in a layout of several images, names the one to push",
    )
    parser.add_argument(
        "--platform",
        action="append",
        default=[],
        type=parse_platform,
        metavar="OS/ARCH[/VARIANT]",
        help="push only these platforms of a multi-platform --image (repeatable; default: "
        "all, with attestations and signatures); several make a new index with a new digest",
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
        choice = ImageChoice(tags=args.tag, platforms=args.platform)
        image = await open_image(args.image, choice, Path(workdir))
        async with open_registry(settings.registry_choice()) as registry:
            engine = UploadEngine(registry, settings.engine_settings(), observer)
            pushed = await push_image(image, args.repository, registry, engine)
    print(summary_line(pushed.blobs, time.monotonic() - started), file=sys.stderr, flush=True)
    if not pushed.tagged:
        failures = [result.error for result in pushed.blobs if result.error is not None]
        reason = f": {failures[0]} [{failures[0].code}]" if failures else ""
        names = ", ".join(f"{args.repository}:{tag}" for tag in image.tags)
        verb = "was" if len(image.tags) == 1 else "were"
        print(
            f"uploaderd: error: {names} {verb} not tagged, a blob failed{reason}", file=sys.stderr
        )
        return ExitStatus.FAILED
    for tag, digest in pushed.tagged.items():
        print(f"tagged {args.repository}:{tag} {digest}", file=sys.stderr, flush=True)
    return ExitStatus.OK
