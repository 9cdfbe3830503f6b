"""The import contract: the folders show the architecture, and this keeps them honest.

`core` is the pure domain and imports nothing of ours; `db` speaks SQL on top of it;
`stack` runs the embedded processes; `ingest`, `api`, `devices`, `dashboards` (and
`web`, the website `api` serves, once it exists) use `core` and `db` but never each
other; `smartby`, the composition root, may use them all, and only it, `bench` and the
tests start the stack.  Every import counts: top-level, inside a function, or under
``TYPE_CHECKING``.  (DESIGN.md, "Top-level layout"; STYLE.md, "Layout and boundaries".)
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What each room may import of ours.  A new package gets a line here, or the
#: test that every package is in the contract fails.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "db": frozenset({"core"}),
    "stack": frozenset({"core"}),
    "ingest": frozenset({"core", "db"}),
    "api": frozenset({"core", "db", "web"}),
    "devices": frozenset({"core", "db"}),
    "dashboards": frozenset({"core", "db"}),
    "web": frozenset({"core", "db"}),
    "smartby": frozenset({"core", "db", "stack", "ingest", "api", "devices", "dashboards", "web"}),
    "bench": frozenset(
        {"core", "db", "stack", "ingest", "api", "devices", "dashboards", "web", "smartby"}
    ),
}
#: Everything of ours a module could import; the tests may import any of it.
OURS = frozenset(ALLOWED) | {"tests"}
#: No I/O in the domain: no database driver, no processes, no sockets.
CORE_FORBIDDEN = frozenset({"psycopg", "psycopg_pool", "subprocess", "socket"})
#: Past this a module usually does two things (STYLE.md); generated dashboards JSON and
#: SQL migrations are not Python and not counted.
MAX_LINES = 800


def package_folders() -> list[str]:
    return sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests")


def modules(package: str) -> Iterator[Path]:
    yield from sorted((ROOT / package).rglob("*.py"))


def imported(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in ``source``; a relative import is resolved
    against ``module`` (``pkg.sub.mod``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            else:
                assert node.module is not None
                yield node.lineno, node.module


def violations(package: str, source: str, module: str) -> list[str]:
    """The imports of ``source`` (a module of ``package``) that break the contract."""
    found = []
    for line, name in imported(source, module):
        top = name.split(".")[0]
        if top in OURS and top != package and top not in ALLOWED[package]:
            found.append(f"{module}:{line} imports {name}")
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_every_package_is_in_the_contract() -> None:
    missing = set(package_folders()) - set(ALLOWED)
    assert not missing, f"add {sorted(missing)} to ALLOWED in tests/test_layout.py"


# web/ has its line in ALLOWED before the folder exists; it is checked once it does
@pytest.mark.parametrize("package", [p for p in sorted(ALLOWED) if (ROOT / p).is_dir()])
def test_a_package_imports_only_what_the_contract_allows(package: str) -> None:
    found = [
        problem
        for path in modules(package)
        for problem in violations(package, path.read_text(encoding="utf-8"), module_name(path))
    ]
    assert not found, "\n".join(found)


def test_core_does_no_io() -> None:
    found = [
        f"{module_name(path)}:{line} imports {name}"
        for path in modules("core")
        for line, name in imported(path.read_text(encoding="utf-8"), module_name(path))
        if name.split(".")[0] in CORE_FORBIDDEN
    ]
    assert not found, "\n".join(found)


def test_the_contract_catches_what_it_forbids() -> None:
    """The checker itself: a sibling import, a lazy one, one for type checking only, and
    core reaching into db are all caught; what the contract allows (relative imports
    stay inside their own package) is not."""
    lazy = "def f() -> None:\n    from api.queries import Query\n"
    assert violations("ingest", lazy, "ingest.worker") == ["ingest.worker:2 imports api.queries"]
    assert violations("core", "import db.connect\n", "core.qc") == ["core.qc:1 imports db.connect"]
    typing_only = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ingest.pipeline\n"
    )
    assert violations("dashboards", typing_only, "dashboards.sql") == [
        "dashboards.sql:3 imports ingest.pipeline"
    ]
    assert violations("devices", "from stack.ports import free_port\n", "devices.x") == [
        "devices.x:1 imports stack.ports"
    ]
    allowed = "from core import qc\nfrom db.rollups import rebuild\nfrom . import models\n"
    assert violations("api", allowed, "api.routes.timeseries") == []


def test_no_benchmark_imports_another() -> None:
    """What the benchmarks share lives in bench/common.py."""
    found = [
        f"{module_name(path)}:{line} imports {name}"
        for path in modules("bench")
        for line, name in imported(path.read_text(encoding="utf-8"), module_name(path))
        if name.startswith("bench.") and name != "bench.common"
    ]
    assert not found, "\n".join(found)


def shipped_packages() -> list[str]:
    """The package folders that ship (bench/ holds scripts that are run, not imported)."""
    return [p for p in package_folders() if p != "bench"]


def test_no_module_in_the_package_folders_is_over_800_lines() -> None:
    long = {
        module_name(path): lines
        for package in shipped_packages()
        for path in modules(package)
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these by what a reader looks for: {long}"


def test_the_build_and_the_type_check_cover_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    included = {
        name.rstrip("*") for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    checked = set(pyproject["tool"]["mypy"]["packages"])
    shipped = set(shipped_packages())
    assert shipped <= included, f"not in [tool.setuptools.packages.find]: {shipped - included}"
    assert shipped <= checked, f"not in [tool.mypy] packages: {shipped - checked}"
    assert "db" in pyproject["tool"]["setuptools"]["package-data"], "the migrations ship with db"
