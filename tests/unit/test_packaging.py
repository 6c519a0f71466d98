"""`pip install .` (not editable) ships what the admin's commands need: config.example.yaml
inside the package (for `sealroom example-config`), the licence, and the SPDX licence metadata.
"""

from __future__ import annotations

import email
import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What the Dockerfile copies into the image before `pip install .`.
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "config.example.yaml", "bridge", "store"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a copy of the sources, as pip builds one for `pip install .`."""
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    setuptools = importlib.metadata.version("setuptools")
    if int(setuptools.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools} here; the build needs {required} (test extra)")
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name,
                source / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("sealroom-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_carries_the_example_config(wheel: zipfile.ZipFile) -> None:
    shipped = wheel.read("bridge/config.example.yaml").decode("utf-8")

    assert shipped == (REPO / "config.example.yaml").read_text("utf-8")


def test_the_wheel_carries_the_licence_and_its_spdx_expression(wheel: zipfile.ZipFile) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    [metadata_name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = email.message_from_bytes(wheel.read(metadata_name))
    [licence_name] = [n for n in wheel.namelist() if n.endswith("/licenses/LICENSE")]

    assert project["license"] == "AGPL-3.0-or-later"
    assert metadata["License-Expression"] == project["license"]
    assert wheel.read(licence_name) == (REPO / "LICENSE").read_bytes()
    assert b"GNU AFFERO GENERAL PUBLIC LICENSE" in wheel.read(licence_name)


def test_the_wheel_carries_templates_static_files_and_migrations(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())

    assert "bridge/web/templates/landing.html" in names
    assert "store/migrations/env.py" in names
    assert any(n.startswith("store/migrations/versions/0001") for n in names)


def test_every_package_data_pattern_names_files_that_exist() -> None:
    """A pattern that matches nothing (a file renamed or never written) ships nothing silently."""
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    missing = [
        f"{package}: {pattern}"
        for package, patterns in package_data.items()
        for pattern in patterns
        if not any((REPO / package).glob(pattern))
    ]
    assert missing == []


def test_the_wheel_carries_every_migration_sealroom_migrate_runs(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    shipped = {n for n in names if n.startswith("store/migrations/versions/0")}
    on_disk = {
        f"store/migrations/versions/{path.name}"
        for path in (REPO / "store" / "migrations" / "versions").glob("0*.py")
    }
    assert on_disk
    assert shipped == on_disk
    assert {"store/migrations/env.py", "store/migrate.py", "bridge/cli_migrate.py"} <= names
