"""`sealroom sessions list|show|close|wipe` on a real configuration and SQLite database.

The sessions are made by the real flow (tests.support.domain), then the command line reads and
closes them as an admin would, with no homeserver anywhere.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

import store.migrate
import store.sessions
from bridge import cli
from store import Database, Job, SecureSession
from tests.support.domain import START, build_world
from tests.support.logs import captured


@dataclass
class Setup:
    config: Path
    db_path: Path
    ids: list[str]  # T-0, T-1, T-2 in the order they were opened (T-2 newest)


def _write_config(tmp_path: Path, db_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "homeserver": {"url": "https://matrix.example.org", "server_name": "example.org"},
                "bot": {
                    "user_id": "@sealroom:example.org",
                    "password": "a-long-bot-password-for-tests",
                    "data_dir": str(tmp_path / "data"),
                },
                "database": {"url": f"sqlite+aiosqlite:///{db_path}"},
                "agents": {"alice@example.com": "@alice:example.org"},
            }
        )
    )
    return path


async def _seed(db_path: Path) -> list[str]:
    database = Database(f"sqlite+aiosqlite:///{db_path}")
    try:
        await store.migrate.upgrade_to_head(database)
        world = build_world(database)
        ids = []
        for n in range(3):
            world.clock.advance(minutes=1)
            ids.append((await world.open_ticket(f"T-{n}")).session_id)
        return ids
    finally:
        await database.close()


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    db_path = tmp_path / "sealroom.db"
    ids = asyncio.run(_seed(db_path))
    return Setup(_write_config(tmp_path, db_path), db_path, ids)


@pytest.fixture(autouse=True)
def _logging_put_back() -> Iterator[None]:
    """`sealroom` configures logging for the process: give the next test its own back."""
    with captured():
        yield


def sealroom(capsys: pytest.CaptureFixture[str], setup: Setup, *args: str) -> tuple[int, str, str]:
    code = cli.main(["sessions", args[0], "-c", str(setup.config), *args[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def _query(setup: Setup, model: Any, *where: Any) -> list[Any]:
    async def run() -> list[Any]:
        database = Database(f"sqlite+aiosqlite:///{setup.db_path}")
        try:
            async with database.transaction() as db:
                return list((await db.execute(select(model).where(*where))).scalars())
        finally:
            await database.close()

    return asyncio.run(run())


def _set_state(setup: Setup, session_id: str, state: str) -> None:
    async def run() -> None:
        database = Database(f"sqlite+aiosqlite:///{setup.db_path}")
        try:
            async with database.transaction() as db:
                assert await store.sessions.set_state(
                    db, session_id, state, START, from_states=("pending", "open", "closing")
                )
        finally:
            await database.close()

    asyncio.run(run())


def test_list_is_a_table_newest_first(capsys: pytest.CaptureFixture[str], setup: Setup) -> None:
    code, out, err = sealroom(capsys, setup, "list")

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATE",
        "INTEGRATION",
        "TICKET",
        "CREATED",
        "(UTC)",
        "EXPIRES",
        "(UTC)",
    ]
    assert [line.split()[0] for line in lines[1:]] == setup.ids[::-1]
    assert lines[1].split()[1:4] == ["pending", "helpdesk", "T-2"]


def test_list_pages_with_the_cursor_it_prints(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    code, out, _ = sealroom(capsys, setup, "list", "--limit", "2")
    more = out.splitlines()[-1]
    cursor = more.rsplit(" ", 1)[1]
    code_next, out_next, _ = sealroom(capsys, setup, "list", "--limit", "2", "--cursor", cursor)

    assert (code, code_next) == (0, 0)
    assert more.startswith("More: sealroom sessions list --cursor ")
    assert [line.split()[0] for line in out.splitlines()[1:3]] == setup.ids[:0:-1]
    assert [line.split()[0] for line in out_next.splitlines()[1:]] == setup.ids[:1]


def test_list_json_is_what_the_api_answers(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    code, out, _ = sealroom(capsys, setup, "list", "--json", "--state", "pending", "--limit", "1")

    assert code == 0
    page = json.loads(out)
    assert [s["id"] for s in page["sessions"]] == [setup.ids[2]]
    assert page["next_cursor"]
    assert set(page["sessions"][0]) >= {"state", "ticket_ref", "agent_user_id", "expires_at"}


def test_show_prints_the_session_and_its_audit_trail(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    code, out, _ = sealroom(capsys, setup, "show", setup.ids[0])
    code_json, out_json, _ = sealroom(capsys, setup, "show", setup.ids[0], "--json")

    assert (code, code_json) == (0, 0)
    assert f"id:               {setup.ids[0]}" in out
    assert "ticket_ref:       T-0" in out
    assert "customer_user_id: -" in out
    assert "alice@example.com  session.opened" in out
    detail = json.loads(out_json)
    assert [entry["action"] for entry in detail["audit"]] == ["session.opened"]


def test_close_records_the_close_for_the_running_service_and_says_so(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    code, out, err = sealroom(capsys, setup, "close", setup.ids[1])
    again, _, again_err = sealroom(capsys, setup, "close", setup.ids[1])

    assert code == 0
    assert "sessions close:" not in err  # the service's own log line (session.closing) may be
    assert "was pending and is now closing" in out
    assert "running service" in out
    [session] = _query(setup, SecureSession, SecureSession.id == setup.ids[1])
    assert (session.state, session.close_reason) == ("closing", "admin")
    jobs = _query(setup, Job, Job.session_id == setup.ids[1], Job.action == "close_room")
    assert len(jobs) == 1
    assert again == 1
    assert "already closing" in again_err


def test_wipe_closes_a_live_session_and_says_what_it_did(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    code, out, _ = sealroom(capsys, setup, "wipe", setup.ids[0], "--json")
    closing, closing_out, _ = sealroom(capsys, setup, "wipe", setup.ids[0])
    _set_state(setup, setup.ids[0], "closed")
    closed, closed_out, _ = sealroom(capsys, setup, "wipe", setup.ids[0])

    assert code == 0
    answer = json.loads(out)
    assert answer["outcome"] == "closing"
    assert answer["session"]["state"] == "closing"
    assert closing == 0
    assert "already being closed; its room is being wiped" in closing_out
    assert closed == 0
    assert "closed before its room was made; nothing to wipe" in closed_out


def _update(setup: Setup, session_id: str, **values: Any) -> None:
    async def run() -> None:
        database = Database(f"sqlite+aiosqlite:///{setup.db_path}")
        try:
            async with database.transaction() as db:
                session = await store.sessions.get(db, session_id)
                assert session is not None
                for key, value in values.items():
                    setattr(session, key, value)
        finally:
            await database.close()

    asyncio.run(run())


def _with_admin_token(setup: Setup) -> None:
    raw = yaml.safe_load(setup.config.read_text())
    raw["homeserver"]["admin_token"] = "syt_an-admin-token-for-the-tests"
    setup.config.write_text(yaml.safe_dump(raw))


def test_wipe_of_a_closed_unpurged_room_needs_an_admin_token(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    _set_state(setup, setup.ids[1], "closed")
    _update(setup, setup.ids[1], room_id="!closed-unpurged:example.org")

    code, out, err = sealroom(capsys, setup, "wipe", setup.ids[1])

    assert code == cli.EXIT_FAILED
    assert out == ""
    assert "homeserver.admin_token" in err
    assert _query(setup, Job, Job.action == "purge_room") == []


def test_wipe_of_a_closed_room_schedules_one_purge_and_is_idempotent(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    _with_admin_token(setup)
    _set_state(setup, setup.ids[1], "closed")
    _update(setup, setup.ids[1], room_id="!closed-unpurged:example.org")

    code, out, _ = sealroom(capsys, setup, "wipe", setup.ids[1], "--json")
    again, again_out, _ = sealroom(capsys, setup, "wipe", setup.ids[1])
    _update(setup, setup.ids[1], purged_at=START)
    done, done_out, _ = sealroom(capsys, setup, "wipe", setup.ids[1], "--json")

    assert (code, again, done) == (0, 0, 0)
    assert json.loads(out)["outcome"] == "purging"
    assert "purges its room from the homeserver" in again_out
    jobs = _query(setup, Job, Job.session_id == setup.ids[1], Job.action == "purge_room")
    assert [(job.state, job.params) for job in jobs] == [("pending", {"actor": "cli"})]
    answer = json.loads(done_out)
    assert answer["outcome"] == "already_wiped"
    assert answer["session"]["purged_at"] == START.isoformat()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "00000000-0000-4000-8000-000000000000"], "no secure session"),
        (["close", "not-an-id"], "no secure session"),
        (["list", "--limit", "0"], "limit must be between 1 and 200"),
        (["list", "--integration", "Not A Name"], "integration must be"),
        (["list", "--cursor", "bogus"], "cursor is not a cursor"),
    ],
)
def test_a_wrong_argument_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str], setup: Setup, args: list[str], message: str
) -> None:
    code, out, err = sealroom(capsys, setup, *args)

    assert code == cli.EXIT_FAILED
    assert out == ""
    assert len(err.splitlines()) == 1
    assert message in err


def test_without_a_database_it_exits_2_and_creates_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db_path = tmp_path / "missing.db"
    setup = Setup(_write_config(tmp_path, db_path), db_path, [])

    code, out, err = sealroom(capsys, setup, "list")

    assert code == cli.EXIT_CONFIG
    assert err.startswith("sealroom: database.url: there is no database")
    assert not db_path.exists()


def test_the_help_explains_that_the_running_service_carries_out_a_close(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["sessions", "close", "--help"])

    out = capsys.readouterr().out
    assert "job runner carries it out" in out
    assert "--json" in out
