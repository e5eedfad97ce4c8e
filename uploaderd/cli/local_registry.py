"""``uploaderd local-registry``: the embedded ECR-compatible server, in the foreground."""

from __future__ import annotations

import argparse

from uploaderd import localregistry
from uploaderd.cli.exits import ExitStatus
from uploaderd.engine.memory import reuse_freed_buffers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Serve ECR's layer-push API (AWS JSON 1.1) from a local directory."
    localregistry.add_arguments(parser)


async def run(args: argparse.Namespace) -> int:
    def announce(url: str) -> None:
        print(f"uploaderd local-registry listening on {url}", flush=True)

    reuse_freed_buffers()
    await localregistry.serve_forever(localregistry.config_from_args(args), announce)
    return ExitStatus.OK
