"""Real processes on loopback: ``uploaderd local-registry`` and ``uploaderd push``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from uploaderd.testing import ecr_client

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEUPLOADERD",
    "AWS_SECRET_ACCESS_KEY": "uploaderd-test-secret-never-logged",
    "AWS_REGION": "us-east-1",
}


def uploaderd_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(CREDENTIALS)
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env.update(extra)
    return env


@dataclass
class RegistryProcess:
    """A running ``uploaderd local-registry`` and the ways tests look into it."""

    process: subprocess.Popen[str]
    url: str
    storage: Path

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=10) as answer:
            result: dict[str, Any] = json.loads(answer.read())
            return result

    def set_faults(self, *specs: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/_faults", data=json.dumps(list(specs)).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def create_repository(self, name: str) -> None:
        async def create() -> None:
            async with ecr_client(self.url) as client:
                await client.create_repository(repositoryName=name)

        asyncio.run(create())

    def fetch_layer(self, repository: str, digest: str) -> bytes:
        """The stored bytes, fetched the way ECR users do: GetDownloadUrlForLayer, then GET."""

        async def download_url() -> str:
            async with ecr_client(self.url) as client:
                answer = await client.get_download_url_for_layer(
                    repositoryName=repository, layerDigest=digest
                )
                return answer["downloadUrl"]

        url = asyncio.run(download_url())
        with urllib.request.urlopen(url, timeout=30) as answer:
            data: bytes = answer.read()
            return data


def start_registry(storage: Path, *options: str) -> RegistryProcess:
    command = [
        sys.executable,
        "-m",
        "uploaderd",
        "local-registry",
        "--storage",
        str(storage),
        "--port",
        "0",
        *options,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=uploaderd_env())
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"local registry did not start: {line!r}")
    return RegistryProcess(process, line.rsplit(" ", 1)[1].strip(), storage)


@contextmanager
def running_registry(storage: Path, *options: str) -> Iterator[RegistryProcess]:
    """A local registry for the duration of the block, stopped however the block ends."""
    server = start_registry(storage, *options)
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    with running_registry(tmp_path / "registry", "--auto-create-repositories") as server:
        yield server


@dataclass
class PushRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


def push(
    endpoint: str,
    repository: str,
    *files: Path,
    options: tuple[str, ...] = (),
    timeout: int = 300,
    env: dict[str, str] | None = None,
) -> PushRun:
    command = [
        sys.executable,
        "-m",
        "uploaderd",
        "push",
        "--repository",
        repository,
        "--endpoint-url",
        endpoint,
        "--json",
        *options,
        *map(str, files),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=uploaderd_env(**(env or {})),
        timeout=timeout,
        check=False,
    )
    return PushRun(done.returncode, done.stdout, done.stderr)
