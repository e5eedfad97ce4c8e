"""ECR's rules for repository names, checked before any request is sent."""

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
