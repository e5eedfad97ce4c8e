"""ECR's rules for repository names, and what a layer file's name may claim."""

from __future__ import annotations

import re

# From the CreateRepository API reference: lowercase components separated by
# '/', each made of alphanumerics joined by single '.', '_' or '-'.
REPOSITORY_PATTERN = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
MIN_REPOSITORY_LENGTH = 2
MAX_REPOSITORY_LENGTH = 256


def repository_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid ECR repository name, or None if it is."""
    if not MIN_REPOSITORY_LENGTH <= len(name) <= MAX_REPOSITORY_LENGTH:
        return (
            f"repository name {name!r} must be {MIN_REPOSITORY_LENGTH} to "
            f"{MAX_REPOSITORY_LENGTH} characters long, not {len(name)}"
        )
    if REPOSITORY_PATTERN.fullmatch(name) is None:
        return (
            f"repository name {name!r} is not valid for ECR: use lowercase letters, digits, "
            "and single '.', '_' or '-' between them, with '/' between path components"
        )
    return None


DIGEST_NAME = re.compile(r"sha256-(?P<hex>[0-9a-f]{64})(?:\.[A-Za-z0-9.]+)?")
"""A layer file named by its digest, as build systems write them: ``sha256-<hex>[.tar...]``."""


def claimed_digest(name: str) -> str | None:
    """The digest a layer file's name claims, or None; checked as the file is sent.

    A file so named is asked for at the registry before a byte of it is read,
    and hashed only while it is sent, if it must be sent at all.
    """
    match = DIGEST_NAME.fullmatch(name)
    return f"sha256:{match.group('hex')}" if match else None
