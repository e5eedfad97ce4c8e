"""Reading request members the way ECR checks them.

botocore validates required members before sending, but other clients (and raw test
requests) do not, so each operation re-checks what it reads and answers
``InvalidParameterException`` naming the member, as ECR does.
"""

from __future__ import annotations

import base64
import binascii

from .protocol import EcrError, JsonObject


def invalid(member: str, constraint: str) -> EcrError:
    return EcrError(
        "InvalidParameterException",
        f"Invalid parameter at '{member}' failed to satisfy constraint: '{constraint}'",
    )


def string(body: JsonObject, member: str) -> str:
    value = body.get(member)
    if not isinstance(value, str) or not value:
        raise invalid(member, "must be a non-empty string")
    return value


def optional_string(body: JsonObject, member: str) -> str | None:
    value = body.get(member)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise invalid(member, "must be a non-empty string")
    return value


def integer(body: JsonObject, member: str) -> int:
    value = body.get(member)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise invalid(member, "must be a whole number >= 0")
    return value


def string_list(body: JsonObject, member: str, *, low: int, high: int) -> list[str]:
    value = body.get(member)
    if (
        not isinstance(value, list)
        or not low <= len(value) <= high
        or not all(isinstance(item, str) for item in value)
    ):
        raise invalid(member, f"must be a list of {low} to {high} strings")
    return value


def object_list(body: JsonObject, member: str, *, low: int, high: int) -> list[JsonObject]:
    value = body.get(member)
    if (
        not isinstance(value, list)
        or not low <= len(value) <= high
        or not all(isinstance(item, dict) for item in value)
    ):
        raise invalid(member, f"must be a list of {low} to {high} objects")
    return value


def member_choice(
    body: JsonObject, member: str, field: str, choices: frozenset[str], default: str
) -> str:
    """``member.field`` (e.g. DescribeImages' ``filter.tagStatus``), one of ``choices``."""
    given = body.get(member)
    if given is None:
        return default
    value = given.get(field, default) if isinstance(given, dict) else None
    if value not in choices:
        raise invalid(f"{member}.{field}", f"must be one of {sorted(choices)}")
    return str(value)


def page_size(body: JsonObject, default: int, high: int) -> int:
    """``maxResults``: 1 to ``high``, ``default`` when absent."""
    if "maxResults" not in body:
        return default
    size = integer(body, "maxResults")
    if not 1 <= size <= high:
        raise invalid("maxResults", f"must be between 1 and {high}")
    return size


def token_for(last: str) -> str:
    """An opaque ``nextToken`` naming the last item of a page."""
    return base64.urlsafe_b64encode(last.encode()).decode()


def next_token(body: JsonObject) -> str | None:
    """What a ``nextToken`` from :func:`token_for` named, or None without one."""
    token = optional_string(body, "nextToken")
    if token is None:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise invalid("nextToken", "not a token this registry gave") from None
