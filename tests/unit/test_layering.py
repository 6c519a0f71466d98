"""The layering is enforced by tools: adapter libraries stay at their edges, no import loops."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint(path: str, source: str) -> subprocess.CompletedProcess[str]:
    """ruff on `source` as if it were the file at `path` (that folder's rules apply)."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "TID251", "--stdin-filename", path],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("bridge/sessions.py", "import nio\n"),
        ("bridge/sessions.py", "from sqlalchemy.exc import IntegrityError\n"),
        ("bridge/room_jobs.py", "from aiohttp import web\n"),
        ("bridge/web/hooks.py", "from nio import AsyncClient\n"),
        ("bridge/web/hooks.py", "import sqlalchemy\n"),
        ("bridge/helpdesk/outbound.py", "import nio\n"),
        ("bridge/ticket_notes.py", "import aiohttp\n"),
        ("bridge/matrix/rooms.py", "from sqlalchemy import select\n"),
        ("store/sessions.py", "from nio import AsyncClient\n"),
        ("store/sessions.py", "import aiohttp\n"),
    ],
)
def test_an_adapter_library_outside_its_folder_fails_the_lint(path: str, source: str) -> None:
    result = _lint(path, source)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "TID251" in result.stdout


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("bridge/matrix/client.py", "import nio\nfrom aiohttp import ClientSession\n"),
        ("bridge/web/hooks.py", "from aiohttp import web\n"),
        ("store/sessions.py", "from sqlalchemy import select\n"),
        ("bridge/devtools/localsynapse.py", "import aiohttp\n"),
        ("bridge/helpdesk/outbound.py", "import aiohttp\n"),
    ],
)
def test_each_library_is_allowed_in_its_own_folder(path: str, source: str) -> None:
    result = _lint(path, source)

    assert result.returncode == 0, result.stdout + result.stderr


def _imports(package_file: Path) -> set[str]:
    tree = ast.parse(package_file.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_bridge_and_store_have_no_import_loops() -> None:
    modules: dict[str, Path] = {}
    for package in ("bridge", "store"):
        for file in (ROOT / package).rglob("*.py"):
            parts = file.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = file
    graph = {
        name: {imported for imported in _imports(file) if imported in modules and imported != name}
        for name, file in modules.items()
    }
    # Only imports at module level form a loop at import time; ast.walk also sees imports inside
    # functions (deliberately lazy ones), so those are left out.
    for name, file in modules.items():
        lazy = {
            imported
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for inner in ast.walk(node)
            if isinstance(inner, ast.ImportFrom) and inner.module
            for imported in (inner.module, *(f"{inner.module}.{a.name}" for a in inner.names))
        }
        graph[name] -= lazy

    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import loop: {' -> '.join(err.args[1])}")
