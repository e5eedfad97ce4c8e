import pytest

from uploaderd.naming import repository_name_problem
from uploaderd.sizes import parse_size


@pytest.mark.parametrize("name", ["ab", "team/app", "a.b-c_d/e2", "x" * 256])
def test_valid_repository_names(name: str) -> None:
    assert repository_name_problem(name) is None


@pytest.mark.parametrize("name", ["A", "Team/app", "app/", "/app", "a//b", "a..b", "a-", "x" * 257])
def test_invalid_repository_names_are_explained(name: str) -> None:
    problem = repository_name_problem(name)
    assert problem is not None
    assert repr(name) in problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1048576", 1048576), ("256MiB", 256 * 1024**2), ("20M", 20 * 1024**2), ("1 GB", 10**9)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "-5", "12 parsecs", "1.5GiB"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)
