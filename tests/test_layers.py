"""Imports point down: db/ <- curator/ <- annotate_ui/, trainer/, and inside annotate_ui/ the
Gradio wiring (web/) sits on the plain logic (logic/). Only CLI modules (a `cli.py`, a module
under a `cli/` folder, a `__main__.py`) sit above several packages. Every import of every module is read with
`ast`, the ones inside functions included, so an upward arrow cannot hide in a function body."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("db", "curator", "annotate_ui", "trainer")

# module prefix -> prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "db": ("curator", "annotate_ui", "trainer"),
    "curator": ("annotate_ui", "trainer", "curator.cli"),
    "trainer": ("annotate_ui",),
    "annotate_ui": ("trainer",),
    "annotate_ui.logic": ("annotate_ui.web", "annotate_ui.cli", "gradio"),
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_cli(module: str) -> bool:
    parts = module.split(".")
    return "cli" in parts[1:] or parts[-1] == "__main__"  # curator.cli.*, annotate_ui.cli, trainer.cli, python -m


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _imports(path: Path, module: str, is_package: bool) -> list[tuple[int, list[str]]]:
    """(line, modules it may name) for every import statement of the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, [a.name]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from curator import cli` names a module as well as a package
            out.append((node.lineno, [target] + [f"{target}.{a.name}" for a in node.names if a.name != "*"]))
    return out


def upward_imports(root: Path = ROOT) -> list[str]:
    """One line per import that points up a layer."""
    bad: list[str] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = _module_name(path, root)
            if _is_cli(module):
                continue
            rules = [(prefix, banned) for prefix, banned in FORBIDDEN.items() if _within(module, prefix)]
            for line, targets in _imports(path, module, path.name == "__init__.py"):
                hits = [(t, prefix, b) for t in targets for prefix, banned in rules for b in banned if _within(t, b)]
                if hits:
                    target, prefix, hit = hits[0]
                    bad.append(f"{path.relative_to(root)}:{line}: {module} imports {target} ({prefix} must not import {hit})")
    return bad


def test_every_import_points_down():
    bad = upward_imports()
    assert not bad, "imports that point up a layer:\n" + "\n".join(bad)


@pytest.mark.parametrize("package, source, banned", [
    ("db", "from curator.fsutil import atomic_write\n", "curator"),
    ("curator", "def f():\n    from annotate_ui.logic import auth\n", "annotate_ui"),
    ("trainer", "import annotate_ui.logic.audit\n", "annotate_ui"),
    ("annotate_ui/logic", "import gradio as gr\n", "gradio"),
])
def test_an_upward_import_is_found(tmp_path, package, source, banned):
    """The scan itself: a planted upward import (inside a function too) is reported."""
    for name in PACKAGES:
        (tmp_path / name).mkdir(exist_ok=True)
    folder = tmp_path / package
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "planted.py").write_text(source, encoding="utf-8")
    bad = upward_imports(tmp_path)
    assert len(bad) == 1 and "planted.py" in bad[0] and f"must not import {banned}" in bad[0], bad
