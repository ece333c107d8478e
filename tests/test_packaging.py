"""pyproject.toml tells the truth about the imports: every third-party module the package imports
is a declared runtime dependency (or an optional extra's), every one the tests import is declared
(mostly in the dev extra), and no dependency is declared that nothing imports."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("curator", "db", "trainer", "annotate_ui", "migrations")
# Declared, never imported by name: the PostgreSQL driver SQLAlchemy loads for a postgresql:// URL.
LOADED_BY_NAME = {"psycopg"}
# Extras whose packages are loaded by a library from a setting, not imported by our code
# (accelerate's log_with for report_to).
TRACKER_EXTRAS = {"tensorboard", "wandb", "trackio", "mlflow"}


def _name(requirement: str) -> str:
    """The canonical distribution name of a requirement string (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)).lower()


def _imports(folders) -> dict[str, set[str]]:
    """{top-level module: {files importing it}} of absolute imports in the .py files under FOLDERS."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _third_party(found: dict[str, set[str]], own: set[str]) -> dict[str, set[str]]:
    return {m: f for m, f in found.items()
            if m not in sys.stdlib_module_names and m not in own and m != "__future__"}


@lru_cache(maxsize=None)
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distribution(module: str) -> str:
    """The distribution that installs MODULE; an optional one that is not installed here
    (bitsandbytes of the lowmem extra) is taken to be named as its module."""
    dists = _distributions().get(module)
    return _name(dists[0] if dists else module)


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_imported_package_is_declared_and_every_declared_one_imported():
    project = _project()
    runtime = {_name(r) for r in project["dependencies"]}
    extras = {name: {_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    optional = set().union(*(reqs for name, reqs in extras.items() if name != "dev"))
    used = _third_party(_imports(PACKAGES), set(PACKAGES))
    missing = {m: sorted(f) for m, f in used.items() if _distribution(m) not in runtime | optional}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    imported = {_distribution(m) for m, f in used.items()}
    unused = runtime - imported - LOADED_BY_NAME
    assert not unused, f"declared but never imported: {sorted(unused)}"
    tracker_only = set().union(*(extras[n] for n in TRACKER_EXTRAS))
    assert not (optional - imported - tracker_only), "an extra declares a package nothing imports"


def test_what_the_tests_import_is_declared():
    """In the runtime dependencies, the dev extra, or the extra whose absence a test checks."""
    project = _project()
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    own = set(PACKAGES) | {"builders", "benchmarks", "conftest", "experiments"}
    own |= {p.stem for p in (ROOT / "tests").glob("*.py")}
    used = _third_party(_imports(["tests"]), own)
    missing = {m: sorted(f) for m, f in used.items() if _distribution(m) not in declared}
    assert not missing, f"imported by the tests but not in the runtime or dev dependencies: {missing}"


def test_requires_python_allows_only_versions_with_tomllib():
    assert _project()["requires-python"] == ">=3.11"
