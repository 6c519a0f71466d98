"""`sealroom --version`, `example-config`, `check-config` in one run, and `healthcheck`.

What an admin (or a container's HEALTHCHECK) runs before and around `sealroom run`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

import store.migrate
from bridge import cli
from bridge.web import health

REPO = Path(__file__).resolve().parents[2]
GOOD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def minimal(tmp_path: Path) -> dict[str, Any]:
    return {
        "homeserver": {"url": "https://matrix.example.org", "server_name": "example.org"},
        "bot": {
            "user_id": "@sealroom:example.org",
            "password": "a-real-bot-password",
            "data_dir": str(tmp_path / "data"),
        },
        "integrations": {"helpdesk": {"kind": "standard-webhooks", "secret": GOOD_SECRET}},
        "agents": {"alice@example.com": "@alice:example.org"},
    }


def write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_version_is_the_projects(capsys: pytest.CaptureFixture[str]) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])

    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sealroom {project['version']}"


def test_example_config_prints_the_commented_example(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["example-config"])

    assert code == 0
    assert capsys.readouterr().out == (REPO / "config.example.yaml").read_text("utf-8")


def test_the_packaged_example_is_the_root_file() -> None:
    """One source: bridge/config.example.yaml is the root file (a symlink), not a copy."""
    packaged = REPO / "bridge" / "config.example.yaml"

    assert packaged.is_symlink()
    assert packaged.resolve() == (REPO / "config.example.yaml").resolve()


def test_check_config_reports_every_kind_of_problem_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value, a secret, a secret file and the data directory: one run, four lines."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    raw = minimal(tmp_path)
    raw["http"] = {"port": "eighty"}
    raw["bot"]["password"] = "change-me"
    raw["bot"]["data_dir"] = str(blocker / "data")
    raw["integrations"]["helpdesk"] = {
        "kind": "standard-webhooks",
        "secret_file": str(tmp_path / "missing-secret"),
    }
    path = write(tmp_path, raw)

    code = cli.main(["check-config", "-c", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}: 4 problems:" in err
    assert "http.port:" in err
    assert "bot.password: replace the example value" in err
    assert "integrations.helpdesk.secret_file: cannot read" in err
    assert "bot.data_dir: cannot create" in err
    assert "change-me" not in err


def test_check_config_refuses_metrics_on_the_public_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = minimal(tmp_path)
    raw["metrics"] = {"port": 8080}

    code = cli.main(["check-config", "-c", str(write(tmp_path, raw))])

    assert code == 2
    assert "metrics.port: 8080 is http.port too" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"port": 0}, "metrics.port: Input should be greater than or equal to 1"),
        ({"port": 70000}, "metrics.port: Input should be less than or equal to 65535"),
        ({"bind": "127.0.0.1", "colour": "red"}, "metrics.colour: unknown option"),
    ],
)
def test_check_config_names_a_bad_metrics_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metrics: dict[str, Any], message: str
) -> None:
    raw = minimal(tmp_path)
    raw["metrics"] = metrics

    assert cli.main(["check-config", "-c", str(write(tmp_path, raw))]) == 2
    assert message in capsys.readouterr().err


def test_check_config_accepts_a_private_metrics_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = minimal(tmp_path)
    raw["metrics"] = {"bind": "127.0.0.1", "port": 9090}

    assert cli.main(["check-config", "-c", str(write(tmp_path, raw))]) == 0


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
async def test_healthcheck_asks_the_configured_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bind: str
) -> None:
    """The real /healthz handler on a free loopback port; a wildcard bind is asked on loopback."""
    app = web.Application()
    app.add_routes(health.routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    raw = minimal(tmp_path)
    raw["http"] = {"bind": bind, "port": port}
    path = write(tmp_path, raw)
    try:
        up = await asyncio.to_thread(cli.main, ["healthcheck", "-c", str(path)])
    finally:
        await runner.cleanup()
    down = await asyncio.to_thread(cli.main, ["healthcheck", "-c", str(path)])

    out = capsys.readouterr().out
    assert (up, down) == (0, 1)
    assert "healthy" in out
    assert f"unhealthy: http://127.0.0.1:{port}/healthz" in out


# -- sealroom migrate --downgrade-to (rolling back an upgrade) ---------------------------------


def _sqlite_config(tmp_path: Path) -> Path:
    raw = minimal(tmp_path)
    raw["database"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'sealroom.db'}"}
    return write(tmp_path, raw)


def _revision(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "sealroom.db") as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_migrate_downgrades_for_a_rollback_and_upgrades_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sqlite_config(tmp_path)
    known = store.migrate.known_revisions()
    assert cli.main(["migrate", "-c", str(path)]) == 0
    assert _revision(tmp_path) == known[-1]

    assert cli.main(["migrate", "-c", str(path), "--downgrade-to", known[0]]) == 0
    assert _revision(tmp_path) == known[0]
    assert cli.main(["migrate", "-c", str(path)]) == 0

    assert _revision(tmp_path) == known[-1]
    assert f"database at revision {known[0]}" in capsys.readouterr().out


def test_migrate_refuses_an_unknown_downgrade_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sqlite_config(tmp_path)
    assert cli.main(["migrate", "-c", str(path)]) == 0

    code = cli.main(["migrate", "-c", str(path), "--downgrade-to", "0abc"])

    assert code == 1
    assert "--downgrade-to: '0abc' is not a migration of this version" in capsys.readouterr().err
    assert _revision(tmp_path) == store.migrate.head_revision()


def test_a_database_from_a_newer_version_is_one_line_naming_the_way_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sqlite_config(tmp_path)
    assert cli.main(["migrate", "-c", str(path)]) == 0
    with sqlite3.connect(tmp_path / "sealroom.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")

    code = cli.main(["migrate", "-c", str(path)])

    err = capsys.readouterr().err.splitlines()
    [line] = [line for line in err if line.startswith("sealroom:")]  # besides Alembic's log
    assert code == 2
    assert line.startswith("sealroom: database.url: the database is at migration 9999")
    assert f"sealroom migrate --downgrade-to {store.migrate.head_revision()}" in line
