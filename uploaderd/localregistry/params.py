"""Reading request members the way ECR checks them.

botocore validates required members before sending, but other clients (and raw test
requests) do not, so each operation re-checks what it reads and answers
``InvalidParameterException`` naming the member, as ECR does.
"""

from __future__ import annotations

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
