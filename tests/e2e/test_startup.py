"""Start-up failures as an operator meets them: the real CLI in a child process.

Each failure an operator can fix (a config file that is not UTF-8, a database that refuses or
does not exist, a data directory that cannot be created or written, a port in use) must end
with exit code 2 and one line on stderr naming the config key or path and what to do, never a
traceback. Every child process is bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.devtools.localsynapse import free_port
from tests.support.databases import PG_URL, postgres_unreachable

REPO = Path(__file__).resolve().parents[2]
GOOD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TIMEOUT = 120


def write_config(folder: Path, **sections: dict[str, Any]) -> Path:
    """A valid configuration (homeserver unreachable: nothing gets that far) with overrides."""
    config: dict[str, Any] = {
        "homeserver": {"url": "http://127.0.0.1:9", "server_name": "example.org"},
        "bot": {
            "user_id": "@sealroom:example.org",
            "password": "a-real-bot-password",
            "data_dir": "data",
        },
        "http": {"port": free_port()},
        "integrations": {"helpdesk": {"kind": "standard-webhooks", "secret": GOOD_SECRET}},
        "logging": {"format": "json"},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path = folder / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def sealroom(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(  # noqa: S603 (our own CLI)
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=REPO,
        check=False,
    )


def one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert exit 2 and a single stderr line, without a traceback, holding every needle."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert result.returncode == 2, (result.returncode, result.stderr)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_config_file_that_is_not_utf8(tmp_path: Path, command: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"homeserver:\n  url: https://matrix.example.org\n  server_name: caf\xe9\n")

    line = one_line_failure(sealroom(command, "-c", str(path)), str(path), "UTF-8", "line 3")

    assert "save it as UTF-8" in line


def test_a_postgresql_that_refuses_connections(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://sealroom:hunter2-db-password@127.0.0.1:{free_port()}/sealroom"
    path = write_config(tmp_path, database={"url": url})

    line = one_line_failure(sealroom("run", "-c", str(path)), "database.url", "refused")

    assert "hunter2-db-password" not in line
    assert not (tmp_path / "data" / "crypto").exists()  # nothing started


def test_migrate_reports_the_same_way(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://sealroom@127.0.0.1:{free_port()}/sealroom"
    path = write_config(tmp_path, database={"url": url})

    one_line_failure(sealroom("migrate", "-c", str(path)), "database.url", "refused")


async def test_a_database_that_does_not_exist(tmp_path: Path) -> None:
    reason = await postgres_unreachable()
    if reason:
        pytest.skip(reason)
    url = PG_URL.rsplit("/", 1)[0] + "/sealroom_no_such_database"
    path = write_config(tmp_path, database={"url": url})

    one_line_failure(
        sealroom("run", "-c", str(path)),
        "database.url",
        "sealroom_no_such_database",
        "does not exist",
        "create the database",
    )


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_data_dir_that_cannot_be_created(tmp_path: Path, command: str) -> None:
    (tmp_path / "occupied").write_text("a file where a folder should be")
    path = write_config(tmp_path, bot={"data_dir": "occupied/data"})

    one_line_failure(
        sealroom(command, "-c", str(path)),
        "bot.data_dir",
        str(tmp_path / "occupied" / "data"),
        "is a file, not a folder",
    )


def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    path = write_config(tmp_path)

    one_line_failure(
        sealroom("run", "-c", str(path)), "bot.data_dir", str(tmp_path / "data"), "not a folder"
    )


def test_a_data_dir_that_cannot_be_written(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # Permissions do not stop root; /proc is a folder no one can create files in.
        data_dir = Path("/proc")
        if not data_dir.is_dir():
            pytest.skip("no /proc to stand for an unwritable folder")
    else:
        data_dir = tmp_path / "read-only"
        data_dir.mkdir(mode=0o500)
    path = write_config(tmp_path, bot={"data_dir": str(data_dir)})

    one_line_failure(
        sealroom("run", "-c", str(path)), "bot.data_dir", f"cannot write in {data_dir}"
    )
    if os.geteuid() != 0:
        one_line_failure(sealroom("check-config", "-c", str(path)), "bot.data_dir")


def test_an_http_port_already_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path, http={"port": port})

        one_line_failure(
            sealroom("run", "-c", str(path)), "http.port", f"127.0.0.1:{port}", "already in use"
        )


def test_check_config_still_passes_a_good_file(tmp_path: Path) -> None:
    path = write_config(tmp_path)

    result = sealroom("check-config", "-c", str(path))

    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout
    assert not (tmp_path / "data").exists()  # checking creates nothing
