import itertools

import pytest

from uploaderd.engine.parts import (
    MAX_PART_SIZE,
    PartRange,
    choose_part_size,
    layer_size_problem,
    part_ranges,
)
from uploaderd.registry.limits import ECR_LIMITS, ECR_PUBLIC_LIMITS, OCI_LIMITS, RegistryLimits
from uploaderd.sizes import MIB

MIN_PART_SIZE = ECR_LIMITS.min_part_size
MAX_LAYER_SIZE = 52_000 * MIB


@pytest.mark.parametrize(
    ("size", "part", "expected"),
    [
        (1, 5 * MIB, [PartRange(0, 0)]),
        (10 * MIB, 5 * MIB, [PartRange(0, 5 * MIB - 1), PartRange(5 * MIB, 10 * MIB - 1)]),
        (
            10 * MIB + 1,
            5 * MIB,
            [
                PartRange(0, 5 * MIB - 1),
                PartRange(5 * MIB, 10 * MIB - 1),
                PartRange(10 * MIB, 10 * MIB),
            ],
        ),
    ],
)
def test_part_ranges_are_contiguous_and_cover_the_layer(
    size: int, part: int, expected: list[PartRange]
) -> None:
    assert list(part_ranges(size, part)) == expected


def test_part_ranges_resume_from_a_byte() -> None:
    ranges = list(part_ranges(12, 5, start=7))
    assert ranges == [PartRange(7, 11)]


def test_every_part_but_the_last_is_full_size() -> None:
    ranges = list(part_ranges(123_456_789, 7 * MIB))
    assert all(r.length == 7 * MIB for r in ranges[:-1])
    assert sum(r.length for r in ranges) == 123_456_789
    assert all(b.first == a.last + 1 for a, b in itertools.pairwise(ranges))


def ecr_part_size(size: int, requested: int | None, offered: int) -> int:
    return choose_part_size(size, requested=requested, registry_default=offered, limits=ECR_LIMITS)


def test_registry_part_size_is_the_default() -> None:
    assert ecr_part_size(100 * MIB, None, 10 * MIB) == 10 * MIB


def test_requested_part_size_is_clamped_to_ecr_limits() -> None:
    assert ecr_part_size(100 * MIB, 1, 10 * MIB) == MIN_PART_SIZE
    assert ecr_part_size(100 * MIB, 64 * MIB, 10 * MIB) == MAX_PART_SIZE


def test_part_size_grows_so_a_large_layer_fits_in_4200_parts() -> None:
    size = 50_000 * MIB
    part = ecr_part_size(size, None, 5 * MIB)
    assert MIN_PART_SIZE <= part <= MAX_PART_SIZE
    assert len(list(part_ranges(size, part))) <= 4200


@pytest.mark.parametrize("requested", [None, 5 * MIB, 8 * MIB])
def test_a_9000_mib_layer_fits_ecr_publics_1000_parts(requested: int | None) -> None:
    size = 9_000 * MIB
    part = choose_part_size(
        size, requested=requested, registry_default=5 * MIB, limits=ECR_PUBLIC_LIMITS
    )
    assert ECR_PUBLIC_LIMITS.min_part_size <= part <= ECR_PUBLIC_LIMITS.max_part_size
    assert len(list(part_ranges(size, part))) <= 1000
    assert part == 9 * MIB  # the smallest whole-MiB size that fits: parts stay small


def test_the_largest_ecr_public_layer_still_fits_its_parts() -> None:
    size = 10_000 * MIB
    part = choose_part_size(
        size, requested=None, registry_default=5 * MIB, limits=ECR_PUBLIC_LIMITS
    )
    assert len(list(part_ranges(size, part))) == 1000
    assert layer_size_problem(size, ECR_PUBLIC_LIMITS) is None


def test_an_oci_registry_counts_no_parts() -> None:
    size = 60_000 * MIB
    assert choose_part_size(size, requested=None, registry_default=5 * MIB, limits=OCI_LIMITS) == (
        5 * MIB
    )
    assert layer_size_problem(size, OCI_LIMITS) is None


def test_layer_size_problems_are_specific() -> None:
    assert layer_size_problem(1, ECR_LIMITS) is None
    assert layer_size_problem(MAX_LAYER_SIZE, ECR_LIMITS) is None
    assert "empty" in (layer_size_problem(0, ECR_LIMITS) or "")
    assert "52,000 MiB" in (layer_size_problem(MAX_LAYER_SIZE + 1, ECR_LIMITS) or "")


def test_too_large_names_the_size_the_limit_and_the_registry() -> None:
    size = 10_000 * MIB + 1
    problem = layer_size_problem(size, ECR_PUBLIC_LIMITS) or ""
    assert f"{size:,} bytes" in problem
    assert "10,000 MiB" in problem
    assert "ECR Public" in problem


def test_a_layer_too_big_for_the_parts_is_too_large_even_without_a_byte_limit() -> None:
    few_parts = RegistryLimits(
        kind="a small registry", max_parts=2, max_layer_bytes=None, min_part_size=MIB
    )
    assert layer_size_problem(2 * MAX_PART_SIZE, few_parts) is None
    assert "a small registry" in (layer_size_problem(2 * MAX_PART_SIZE + 1, few_parts) or "")
