"""Who we are to an OCI registry: credentials, and the challenges that ask for them.

A registry says how it wants to be addressed in its 401 answer's
``WWW-Authenticate`` header: ``Basic`` (send the credentials on every
request) or ``Bearer realm=...,service=...,scope=...`` (trade the
credentials, or nothing for anonymous access, for a short-lived token at
``realm``).  Tokens are scoped to repositories and actions, so they are
cached per scope; one answered challenge serves every later request to the
same repository.

Credentials come from the flags (``--registry-username`` with
``UPLOADERD_REGISTRY_PASSWORD``, never a password on the command line where
``ps`` shows it) or from docker's ``config.json``, where ``docker login``
and credential helpers put them, so a build host set up for docker needs no
extra step.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from uploaderd.errors import ConfigurationError, ErrorCode, RegistryError, TransientRegistryError

PASSWORD_ENV = "UPLOADERD_REGISTRY_PASSWORD"  # noqa: S105  # a variable name, not a secret
TOKEN_MARGIN_SECONDS = 10.0
DEFAULT_TOKEN_SECONDS = 60.0
_CHALLENGE_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and its secret (a password or an identity token)."""

    username: str
    secret: str

    def basic_header(self) -> str:
        pair = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge:
    """``Bearer realm="https://auth",service="reg",scope="repository:a:pull"``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        match.group(1).lower(): match.group(2) if match.group(2) is not None else match.group(3)
        for match in _CHALLENGE_PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def docker_config_path() -> Path:
    """Where docker keeps ``config.json``: ``$DOCKER_CONFIG`` or ``~/.docker``."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _host_keys(host: str) -> list[str]:
    """The spellings ``docker login`` uses as keys for one registry host."""
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        keys.append("https://index.docker.io/v1/")
    return keys


async def credentials_for(
    host: str, username: str | None, config_path: Path | None = None
) -> Credentials | None:
    """Credentials for ``host``: the flags first, then docker's config.json, else None."""
    if username is not None:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            raise ConfigurationError(
                f"--registry-username given without a password; set {PASSWORD_ENV}",
                code=ErrorCode.NO_REGISTRY_PASSWORD,
            )
        return Credentials(username, password)
    path = config_path or docker_config_path()
    try:
        config: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read docker's credentials file {path}: {exc}; fix or remove it",
            code=ErrorCode.BAD_DOCKER_CONFIG,
        ) from None
    if not isinstance(config, dict):
        return None
    return await _from_docker_config(config, host, path)


async def _from_docker_config(config: dict[str, Any], host: str, path: Path) -> Credentials | None:
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict) and isinstance(helpers.get(host), str):
        return await _from_helper(helpers[host], host)
    auths = config.get("auths")
    if isinstance(auths, dict):
        for key in _host_keys(host):
            entry = auths.get(key)
            if isinstance(entry, dict):
                found = _from_auth_entry(entry, key, path)
                if found is not None:
                    return found
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return await _from_helper(store, host)
    return None


def _from_auth_entry(entry: dict[str, Any], key: str, path: Path) -> Credentials | None:
    if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
        return Credentials("<token>", entry["identitytoken"])
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            username, sep, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigurationError(
                f"the 'auth' entry for {key} in {path} is not base64 of 'user:password'; "
                "run docker login again",
                code=ErrorCode.BAD_DOCKER_CONFIG,
            )
        return Credentials(username, secret)
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str):
        return Credentials(user, password)
    return None


async def _from_helper(name: str, host: str) -> Credentials | None:
    """Ask ``docker-credential-<name> get``, the protocol docker itself speaks to helpers."""
    program = shutil.which(f"docker-credential-{name}")
    if program is None:
        return None  # docker skips a configured helper that is not installed, and so do we
    done = await anyio.run_process([program, "get"], input=host.encode(), check=False)
    if done.returncode != 0:
        return None  # "credentials not found in native keychain": anonymous, as docker does
    try:
        answer = json.loads(done.stdout)
        return Credentials(str(answer["Username"]), str(answer["Secret"]))
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(
            f"docker-credential-{name} answered something that is not its JSON protocol",
            code=ErrorCode.BAD_CREDENTIAL_HELPER,
        ) from None


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float


class Authenticator:
    """Answers a registry's challenges and remembers the answer per scope."""

    def __init__(
        self, session: aiohttp.ClientSession, registry: str, credentials: Credentials | None
    ) -> None:
        self._session = session
        self._registry = registry
        self._credentials = credentials
        self._tokens: dict[str, _Token] = {}
        self._basic = False

    def header(self, scope: str) -> str | None:
        """The ``Authorization`` value for a request in ``scope``, if one is known."""
        if self._basic and self._credentials is not None:
            return self._credentials.basic_header()
        token = self._tokens.get(scope)
        if token is not None and token.expires_at > time.monotonic():
            return f"Bearer {token.value}"
        return None

    async def answer(self, challenge_header: str, scope: str) -> None:
        """Prepare credentials for ``scope`` after a 401 carrying ``challenge_header``."""
        challenge = parse_challenge(challenge_header)
        if challenge.scheme == "basic":
            if self._credentials is None:
                raise self._refused("asks for a user name and password")
            self._basic = True
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise RegistryError(
                f"{self._registry} asks for authentication uploaderd does not speak "
                f"({challenge_header!r})",
                code=ErrorCode.UNSUPPORTED_AUTHENTICATION,
            )
        self._tokens[scope] = await self._fetch_token(challenge, scope)

    async def _fetch_token(self, challenge: Challenge, scope: str) -> _Token:
        # The challenge to a HEAD names only "pull"; asking for the whole push's
        # scope up front (as docker does) spares a second token for the PATCHes.
        query = [("scope", part) for part in scope.split()]
        if "service" in challenge.params:
            query.append(("service", challenge.params["service"]))
        headers = {}
        if self._credentials is not None:
            headers["Authorization"] = self._credentials.basic_header()
        realm = challenge.params["realm"]
        try:
            async with self._session.get(realm, params=query, headers=headers) as response:
                if response.status in (401, 403):
                    raise self._refused(f"refused a token at {realm} (HTTP {response.status})")
                if response.status == 429 or response.status >= 500:
                    raise TransientRegistryError(
                        f"token service {realm} answered HTTP {response.status}",
                        code=ErrorCode.TOKEN_REFUSED,
                    )
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientRegistryError(
                f"cannot reach the token service {realm}: {exc!r}", code=ErrorCode.TOKEN_UNREACHABLE
            ) from exc
        except ValueError:
            raise TransientRegistryError(
                f"token service {realm} answered something that is not JSON",
                code=ErrorCode.MALFORMED_TOKEN,
            ) from None
        value = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str):
            raise RegistryError(
                f"token service {realm} sent no token", code=ErrorCode.MALFORMED_TOKEN
            )
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else DEFAULT_TOKEN_SECONDS
        return _Token(value, time.monotonic() + max(seconds - TOKEN_MARGIN_SECONDS, 1.0))

    def forget(self, scope: str) -> None:
        """Drop a token the registry no longer takes, so the next challenge fetches anew."""
        self._tokens.pop(scope, None)

    def refused(self, status: int) -> RegistryError:
        """The error for a request refused although we answered the challenge."""
        return self._refused(f"refused the request (HTTP {status})")

    def _refused(self, what: str) -> RegistryError:
        if self._credentials is None:
            advice = "log in (docker login), or pass --registry-username and set " + PASSWORD_ENV
        else:
            advice = (
                "check the user name and password (--registry-username / "
                f"{PASSWORD_ENV}, or docker's config.json) and that this user may push here"
            )
        return RegistryError(
            f"registry {self._registry} {what}; {advice}", code=ErrorCode.UNAUTHORIZED
        )
