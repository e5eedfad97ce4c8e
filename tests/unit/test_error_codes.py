"""One vocabulary of error codes: uploaderd's own are ``ErrorCode`` members, each documented.

A code written as a string where an error is raised would be a code no table
lists and no test knows; the scan below fails on it, naming the file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import uploaderd
from uploaderd.errors import ErrorCode

PACKAGE = Path(uploaderd.__file__).parent
README = PACKAGE.parent / "README.md"
TABLE_ROW = re.compile(r"^\| `(\w+)` \| [^|]+ \| [^|]+ \| [^|]+ \|$", re.MULTILINE)


def _is_literal_text(expression: ast.expr) -> bool:
    """Whether ``expression`` is written text: a string, an f-string, or a choice of them."""
    if isinstance(expression, ast.JoinedStr):
        return True
    if isinstance(expression, ast.Constant):
        return isinstance(expression.value, str)
    if isinstance(expression, ast.IfExp):
        return _is_literal_text(expression.body) or _is_literal_text(expression.orelse)
    if isinstance(expression, ast.BoolOp):
        return any(_is_literal_text(value) for value in expression.values)
    return False


def literal_codes(root: Path) -> list[str]:
    """Every code given as text, in ``code=`` or assigned to ``code``, but in test registries."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if "localregistry" in path.parts or path.name == "testing.py":
            continue  # registries for tests speak a registry's own names, as ECR does
        for node in ast.walk(ast.parse(path.read_text())):
            values: list[ast.expr] = []
            if isinstance(node, ast.Call):
                values = [k.value for k in node.keywords if k.arg == "code"]
            elif isinstance(node, ast.Assign):
                named = any(isinstance(t, ast.Name) and t.id == "code" for t in node.targets)
                values = [node.value] if named else []
            if any(_is_literal_text(value) for value in values):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return sorted(found)


def test_no_error_code_is_a_bare_string() -> None:
    assert literal_codes(PACKAGE) == []


def test_the_scan_finds_a_bare_string(tmp_path: Path) -> None:
    module = tmp_path / "uploaderd" / "bad.py"
    module.parent.mkdir()
    module.write_text(
        'raise RegistryError("gone", code="Gone")\n'
        'x = f(code=f"HTTP{s}")\n'
        'y = f(code=c.name if c else "Other")\n'
        'code = "Empty" if n == 0 else ErrorCode.LAYER_TOO_LARGE\n'
        "z = f(code=ErrorCode.USAGE, message='words are fine elsewhere')\n"
    )
    assert literal_codes(tmp_path / "uploaderd") == [
        "uploaderd/bad.py:1",
        "uploaderd/bad.py:2",
        "uploaderd/bad.py:3",
        "uploaderd/bad.py:4",
    ]


def test_the_readme_table_lists_every_code_once() -> None:
    section = README.read_text().split("### Error codes", 1)[1].split("\n## ", 1)[0]
    documented = TABLE_ROW.findall(section)
    assert sorted(documented) == sorted(code.value for code in ErrorCode)


def test_codes_are_unique() -> None:
    assert len({code.value for code in ErrorCode}) == len(ErrorCode)
