"""Imports follow the data flow: spool -> journal -> engine -> reader -> registry.

The rooms of the package and who may enter which, checked over the source
with ``ast`` (nothing is imported or executed), every ``import`` counted:
top-level, inside functions, and under ``TYPE_CHECKING``.  A wrong arrow
fails with the file, the line, the import and the rule it breaks.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import uploaderd

PACKAGE = Path(uploaderd.__file__).parent

FOUNDATION = "foundation"
ROOMS_OF_TOP_MODULES = {
    "uploaderd": FOUNDATION,
    "uploaderd.errors": FOUNDATION,
    "uploaderd.model": FOUNDATION,
    "uploaderd.sizes": FOUNDATION,
    "uploaderd.naming": FOUNDATION,
    "uploaderd.sidecar": FOUNDATION,
    "uploaderd.settings": "settings",
    "uploaderd.testing": "testing",
    "uploaderd.__main__": "main",
}
"""Modules directly in the package; a subpackage is a room of its own name."""

MAY_IMPORT = {
    FOUNDATION: {FOUNDATION},
    "registry": {FOUNDATION, "registry"},
    "engine": {FOUNDATION, "registry", "engine"},
    "image": {FOUNDATION, "registry", "engine", "image"},
    "settings": {FOUNDATION, "registry", "engine", "settings"},
    "daemon": {FOUNDATION, "registry", "engine", "image", "settings", "daemon"},
    "cli": {FOUNDATION, "registry", "engine", "image", "settings", "daemon", "cli"},
    "localregistry": {"localregistry"},
    "testing": {FOUNDATION, "registry", "engine", "localregistry", "testing"},
    "main": {"cli"},
}
"""Room -> the rooms it may import.  The local registry imports nothing of the product,
so it stays a fair judge of it; the product enters the local registry only where
the exceptions below say."""

WHY = {
    "registry": "a registry knows nothing of the engine, the daemon or the command line "
    "that drive it",
    "engine": "the engine pushes LayerJobs through a Registry and tells an observer; it "
    "knows nothing of images, settings, the daemon or the command line",
    "image": "an image is pushed through the engine and a Registry only",
    "settings": "settings build the engine and the registry, never the programs using them",
    "daemon": "the daemon knows nothing of the command line",
    "localregistry": "the local registry imports nothing of the product, so it stays a fair judge",
    FOUNDATION: "the shared model imports nothing above it",
    "cli": "the command line runs the programs; the local registry is for the demo and "
    "its own subcommand",
    "testing": "testing offers registries to test against, not the programs",
    "main": "python -m uploaderd runs the command line",
}
INTO_LOCALREGISTRY = (
    "only the demo, 'uploaderd local-registry' and uploaderd.testing run the local "
    "registry, so it stays an independent judge of the product"
)

EXCEPTIONS = {
    "uploaderd.cli.demo": {"localregistry", "testing"},
    "uploaderd.cli.local_registry": {"localregistry"},
}
"""The modules that run the local registry beside uploaderd.testing: the demo and its own
subcommand (the demo also takes a free port from testing)."""


@dataclass(frozen=True, slots=True)
class Violation:
    path: Path
    line: int
    module: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} imports {self.imported}: {self.rule}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(module: str) -> str | None:
    """The room of a module of the package; None for anything outside it."""
    if module in ROOMS_OF_TOP_MODULES:
        return ROOMS_OF_TOP_MODULES[module]
    parts = module.split(".")
    if parts[0] != "uploaderd" or len(parts) < 2:
        return None
    return parts[1]


def imports_of(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module ``tree`` imports, absolute, with its line."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from uploaderd import logs" imports the module uploaderd.logs
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def imported_module(imported: str, modules: set[str]) -> str | None:
    """The package's module an imported name lives in: the longest prefix that is a module."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def violations(root: Path) -> list[Violation]:
    found: list[Violation] = []
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(root, path) for path in paths}
    for path in paths:
        module = module_name(root, path)
        room = room_of(module)
        if room is None:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, imported in imports_of(tree, module, path.name == "__init__.py"):
            target_module = imported_module(imported, modules)
            target = room_of(target_module) if target_module is not None else None
            if target is None or target in MAY_IMPORT[room]:
                continue
            if target in EXCEPTIONS.get(module, set()):
                continue
            why = INTO_LOCALREGISTRY if target == "localregistry" else WHY[room]
            rule = f"{room} must not import {target}: {why}"
            found.append(Violation(path, line, module, imported, rule))
    return found


def test_every_import_follows_the_flow() -> None:
    broken = violations(PACKAGE)
    assert not broken, "imports against the flow:\n" + "\n".join(map(str, broken))


def test_every_module_is_in_a_room() -> None:
    rooms = {room_of(module_name(PACKAGE, path)) for path in PACKAGE.rglob("*.py")}
    assert rooms <= set(MAY_IMPORT), rooms - set(MAY_IMPORT)


def plant(root: Path, relpath: str, source: str) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


def test_a_wrong_import_is_named_with_its_rule(tmp_path: Path) -> None:
    root = tmp_path / "uploaderd"
    plant(root, "__init__.py", "")
    plant(root, "engine/__init__.py", "")
    plant(root, "engine/budget.py", "import anyio\n")
    plant(root, "registry/__init__.py", "")
    plant(root, "registry/base.py", "from uploaderd.engine.budget import ByteBudget\n")
    plant(root, "daemon/__init__.py", "")
    plant(
        root,
        "daemon/service.py",
        """\
        from typing import TYPE_CHECKING
        from uploaderd.engine import budget
        if TYPE_CHECKING:
            from uploaderd.cli.main import main
        def late():
            from uploaderd import localregistry
        """,
    )
    plant(root, "localregistry/__init__.py", "from .server import serve\n")
    plant(root, "localregistry/server.py", "from uploaderd.errors import ErrorCode\n")
    plant(root, "cli/__init__.py", "")
    plant(root, "cli/demo.py", "from uploaderd.localregistry import LocalRegistry\n")
    found = [str(v).removeprefix(str(root.parent) + "/") for v in violations(root)]
    assert found == [
        "uploaderd/daemon/service.py:4: uploaderd.daemon.service imports uploaderd.cli.main.main:"
        " daemon must not import cli: the daemon knows nothing of the command line",
        "uploaderd/daemon/service.py:6: uploaderd.daemon.service imports "
        "uploaderd.localregistry: daemon must not import localregistry: only the demo, "
        "'uploaderd local-registry' and uploaderd.testing run the local registry, so it "
        "stays an independent judge of the product",
        "uploaderd/localregistry/server.py:1: uploaderd.localregistry.server imports "
        "uploaderd.errors.ErrorCode: localregistry must not import foundation: the local "
        "registry imports nothing of the product, so it stays a fair judge",
        "uploaderd/registry/base.py:1: uploaderd.registry.base imports "
        "uploaderd.engine.budget.ByteBudget: registry must not import engine: a registry "
        "knows nothing of the engine, the daemon or the command line that drive it",
    ]


def test_the_readme_layout_names_every_module() -> None:
    readme = (PACKAGE.parent / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    listed, directory = set(), ""
    for line in block.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0].endswith("/") and line.startswith("  ") and not line.startswith("    "):
            directory = words[0]
        elif words[0].endswith(".py"):
            nested = line.startswith("    ")
            listed.add(f"{directory}{words[0]}" if nested else words[0])
    modules = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py"
    }
    assert listed == modules, (
        f"not in the README: {sorted(modules - listed)}; gone: {sorted(listed - modules)}"
    )
