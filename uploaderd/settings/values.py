"""How each kind of setting is read from a TOML value or a string, and what is wrong if not.

Small and strict on purpose: a setting is a number, a size, a path, a word or
a flag, and the message for a bad one is the parser's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uploaderd.sizes import MIB, parse_size

Parse = Callable[[object], Any]


def whole(low: int, high: int | None = None) -> Parse:
    def parse(value: object) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not a whole number")
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{value} is out of range: give a whole number {bound}")
        return value

    return parse


def seconds(*, minimum: float, allow_minimum: bool) -> Parse:
    def parse(value: object) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a number of seconds") from None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number of seconds")
        number = float(value)
        too_small = number < minimum if allow_minimum else number <= minimum
        if not math.isfinite(number) or too_small:
            relation = "at least" if allow_minimum else "more than"
            raise ValueError(f"{value!r} is out of range: give {relation} {minimum:g} seconds")
        return number

    return parse


def size(minimum: int) -> Parse:
    def parse(value: object) -> int:
        if isinstance(value, str):
            value = parse_size(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not a size; write bytes or a string like '256MiB'")
        if value < minimum:
            raise ValueError(f"{value} bytes is too small: give at least {minimum} bytes")
        return value

    return parse


def show_size(nbytes: int) -> str:
    return f"{nbytes // MIB}MiB" if nbytes % MIB == 0 else str(nbytes)


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    words = {"true": True, "1": True, "yes": True, "on": True}
    words |= {"false": False, "0": False, "no": False, "off": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ValueError(f"{value!r} is not true or false")


def text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def path(value: object) -> Path:
    """A path from TOML or the environment (a string) or from argparse (a Path)."""
    return value if isinstance(value, Path) and str(value) else Path(text(value))


def choice(*allowed: str) -> Parse:
    def parse(value: object) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, allowed))}")
        return str(value)

    return parse


def host_port(value: object) -> str:
    address = text(value)
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return address
