"""The Node packages some tests drive (tests/interop: matrix-js-sdk; tests/a11y: axe-core),
installed with `npm ci` from their lock files when missing or not the pinned versions."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(what: str, reason: str) -> None:
    """Skip a test that needs `what`, or fail it under CI, where everything must run."""
    if in_ci():
        pytest.fail(f"{what} cannot run under CI: {reason}")
    pytest.skip(f"{what} unavailable: {reason}")


def _installed_version(folder: Path, package: str) -> str | None:
    path = folder / "node_modules" / package / "package.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def needs_install(folder: Path) -> bool:
    """node_modules missing, or not the versions package.json pins."""
    pinned = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    return any(
        _installed_version(folder, name) != version
        for name, version in pinned.get("dependencies", {}).items()
    )


async def npm_ci(folder: Path, what: str) -> None:
    """`npm ci` in `folder` if its pinned packages are not installed; the test fails with npm's
    output when it fails."""
    if not needs_install(folder):
        return
    npm = shutil.which("npm")
    if npm is None:
        unavailable(what, f"npm is not installed and {folder}/node_modules is missing")
        return
    process = await asyncio.create_subprocess_exec(
        npm,
        "ci",
        "--no-audit",
        "--no-fund",
        cwd=str(folder),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        pytest.fail(
            f"`npm ci` in {folder} failed ({process.returncode}):\n"
            + output.decode(errors="replace")[-4000:]
        )
