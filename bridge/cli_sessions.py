"""`sealroom sessions list|show|close|wipe`: the session API's read and close, from a terminal.

Works on the service's database as it is (never creates or migrates it); exit codes as in
`bridge.cli`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge import preflight
from bridge.config import Config
from bridge.config_file import default_path
from bridge.errors import SealroomError
from bridge.preflight import StartupProblem

if TYPE_CHECKING:
    from bridge.session_queries import SessionDetail, SessionQueries, Wiped
    from store import Database

EXIT_OK = 0
EXIT_FAILED = 1


SESSIONS_HELP = """\
See and close secure sessions, from the database the service uses (no homeserver needed).

  list   newest first; --state, --integration, --limit; the last line names the next page
  show   one session: state, ticket, agent, customer, room, times, and its audit trail
  close  close a live session: the close is recorded now (reason "admin"), and the running
         service's job runner carries it out within jobs.poll_seconds: a closing notice,
         everyone removed, the bot leaves. The service must be running for that to happen.
  wipe   wipe the session's room, whatever its state; asking twice does no harm. A live
         session is closed (as `close` does: its close is the whole wipe). The room of a
         session closed without a purge (for example before homeserver.admin_token was
         configured) is purged from the homeserver by the running service (needs
         homeserver.admin_token). A room already purged, or never made, needs nothing.

Metadata only: never a token, a ticket's subject or anything said in a room. --json prints
the same data as the session API (GET /api/v1/sessions...) for scripts."""


def sessions_parser(sub: Any) -> None:
    sessions = sub.add_parser(
        "sessions",
        help="list, show, close or wipe secure sessions",
        description=SESSIONS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = sessions.add_subparsers(dest="action", required=True)
    for name, text in (
        ("list", "list sessions, newest first"),
        ("show", "show one session and its audit trail"),
        ("close", "close a live session (the running service carries it out)"),
        ("wipe", "wipe the session's room: close it if live, purge it if closed"),
    ):
        action = actions.add_parser(
            name,
            help=text,
            description=SESSIONS_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        action.add_argument(
            "-c",
            "--config",
            type=Path,
            default=default_path(),
            help="YAML configuration (default: $SEALROOM_CONFIG, else config.yaml)",
        )
        action.add_argument("--json", action="store_true", help="print JSON (for scripts)")
        if name == "list":
            action.add_argument("--state", choices=["pending", "open", "closing", "closed"])
            action.add_argument("--integration", help="only this integration's sessions")
            action.add_argument("--limit", type=int, default=50, help="at most (1-200)")
            action.add_argument("--cursor", help="the next page, as the previous page named it")
        else:
            action.add_argument("session_id", help="the session's id (a UUID)")


async def run_sessions(config: Config, args: argparse.Namespace) -> int:
    from bridge.app import domain_settings
    from bridge.session_queries import SessionQueries
    from bridge.sessions import SessionService

    database = await _existing_database(config)
    try:
        queries = SessionQueries(
            database,
            SessionService(database, domain_settings(config)),
            can_purge=config.homeserver.admin_token_value() is not None,
        )
        return await _session_action(queries, args)
    except SealroomError as err:
        print(f"sessions {args.action}: {err.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await database.close()


async def _existing_database(config: Config) -> Database:
    """The service's database as it is: never created or migrated here.

    Raises:
        StartupProblem: unreachable, or no sealroom schema in it yet.
    """
    import store.migrate
    from store import Database

    url = config.database_url
    if url.startswith("sqlite") and not Path(url.split(":///", 1)[1]).exists():
        raise StartupProblem(
            f"database.url: there is no database at {url.split(':///', 1)[1]} yet; start "
            "sealroom once (or run `sealroom migrate`)"
        )
    await preflight.check_database(url)
    database = Database(url)
    # Alembic says which dialect it found at INFO: noise on an admin's terminal.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    if await store.migrate.current_revision(database) is None:
        await database.close()
        raise StartupProblem(
            "database.url: the database has no sealroom tables yet; run `sealroom migrate`"
        )
    return database


async def _session_action(queries: SessionQueries, args: argparse.Namespace) -> int:
    if args.action == "list":
        page = await queries.list(
            state=args.state, integration=args.integration, limit=args.limit, cursor=args.cursor
        )
        if args.json:
            _print_json(page.as_json())
        else:
            _print_page(page.as_json())
        return EXIT_OK
    if args.action == "show":
        detail = await queries.show(args.session_id)
        if args.json:
            _print_json(detail.as_json())
        else:
            _print_detail(detail)
        return EXIT_OK
    if args.action == "wipe":
        return _wiped(args, await queries.wipe(args.session_id, "cli"))
    before = await queries.show(args.session_id)
    state = before.summary.state
    after = await queries.close(args.session_id, "cli")
    return _done(
        args,
        after,
        "closing",
        f"was {state} and is now closing: the running service removes everyone and closes the "
        "room (within jobs.poll_seconds)",
    )


WIPE_TEXT = {
    "closing": "is now closing: the running service wipes its room (within jobs.poll_seconds)",
    "already_closing": "is already being closed; its room is being wiped",
    "purging": "is closed; the running service now purges its room from the homeserver "
    "(within jobs.poll_seconds)",
    "already_wiped": "is closed and its room purged already; nothing to do",
    "no_room": "was closed before its room was made; nothing to wipe",
}


def _wiped(args: argparse.Namespace, wiped: Wiped) -> int:
    if args.json:
        _print_json(wiped.as_json())
    else:
        summary = wiped.session.summary
        print(f"Session {summary.id} (ticket {summary.ticket_ref}) {WIPE_TEXT[wiped.outcome]}.")
    return EXIT_OK


def _done(args: argparse.Namespace, detail: SessionDetail, outcome: str, text: str) -> int:
    if args.json:
        _print_json({"outcome": outcome, "session": detail.as_json()})
    else:
        print(f"Session {detail.summary.id} (ticket {detail.summary.ticket_ref}) {text}.")
    return EXIT_OK


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _when(value: str | None) -> str:
    """ISO 8601 to the minute, in UTC: short enough for a table."""
    return "-" if value is None else value[:16].replace("T", " ")


def _print_page(page: dict[str, Any]) -> None:
    rows = [("ID", "STATE", "INTEGRATION", "TICKET", "CREATED (UTC)", "EXPIRES (UTC)")]
    rows += [
        (
            s["id"],
            s["state"],
            s["integration"],
            s["ticket_ref"],
            _when(s["created_at"]),
            _when(s["expires_at"]),
        )
        for s in page["sessions"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())
    if not page["sessions"]:
        print("(no sessions)")
    if page["next_cursor"]:
        print(f"More: sealroom sessions list --cursor {page['next_cursor']}")


def _print_detail(detail: SessionDetail) -> None:
    data = detail.as_json()
    for key in (
        "id",
        "state",
        "integration",
        "ticket_ref",
        "agent_ref",
        "agent_user_id",
        "customer_user_id",
        "room_id",
        "room_alias",
        "created_at",
        "updated_at",
        "expires_at",
        "closed_at",
        "close_reason",
        "bot_left_at",
        "purged_at",
    ):
        print(f"{key + ':':<18}{'-' if data[key] is None else data[key]}")
    print("audit trail:")
    for entry in data["audit"]:
        detail_text = json.dumps(entry["detail"], ensure_ascii=False) if entry["detail"] else ""
        line = f"  {_when(entry['at'])}  {entry['actor']}  {entry['action']}  {detail_text}"
        print(line.rstrip())
