"""The whole HTTP app in-process with the session API on: real aiohttp app, domain and SQLite.

As tests/web/test_web.py builds it (the Matrix side is a recorder), plus the session API with
`API_TOKEN`. `ApiApp.build` makes it on the running loop; `serve_in_thread` runs it on its own
loop in a thread at 127.0.0.1, for synchronous clients (schemathesis uses requests).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

import store.migrate
from bridge.deliveries import DeliveryService
from bridge.helpdesk.integration import Integration
from bridge.helpdesk.kinds.standard_webhooks import StandardWebhooksVerifier
from bridge.invites import InviteService
from bridge.registration import RegistrationService
from bridge.session_queries import SessionQueries
from bridge.sessions import SessionService
from bridge.web.api import session_api
from bridge.web.app import make_app
from bridge.web.keys import Readiness, Services, WebSettings
from store import Database
from tests.support.domain import AGENT, AGENT_ID, make_settings
from tests.support.fakes import Clock, FakeAccounts, FakeRegistrationTokens

WEBHOOK_SECRET = "whsec_" + "c2VhbHJvb20td2ViLXRlc3Qtc2lnbmluZy1rZXk="
API_TOKEN = "sealroom-api-test-token-" + "0123456789abcdef"
PUBLIC_BASE_URL = "https://sealroom.example.org"
MAX_BODY = 4096
T = TypeVar("T")


async def _ready() -> str | None:
    return None


@dataclass
class ApiApp:
    app: web.Application
    database: Database
    sessions: SessionService
    clock: Clock

    @classmethod
    async def build(
        cls,
        db_path: Path,
        *,
        api_token: str | None = API_TOKEN,
        serve_metrics: bool = True,
        can_purge: bool = True,
    ) -> ApiApp:
        """`can_purge` False: as if no homeserver.admin_token were configured."""
        database = Database(f"sqlite+aiosqlite:///{db_path}")
        await store.migrate.upgrade_to_head(database)
        clock = Clock()
        sessions = SessionService(
            database,
            make_settings(agents={AGENT: AGENT_ID}, registration_enabled=True),
            clock=clock,
        )
        invites = InviteService(database, sessions, FakeAccounts())
        app = make_app(
            Services(
                DeliveryService(database, sessions, invites),
                invites,
                RegistrationService(database, sessions, invites, FakeRegistrationTokens(clock)),
            ),
            {
                "helpdesk": Integration(
                    StandardWebhooksVerifier(WEBHOOK_SECRET, tolerance_seconds=300)
                )
            },
            WebSettings(
                public_base_url=PUBLIC_BASE_URL,
                homeserver_url="https://matrix.example.org",
                server_name="example.org",
                web_client_template="https://app.element.io/#/room/{room}",
                registration_enabled=True,
                homeserver_browser_url="https://matrix.example.org",
            ),
            Readiness({"database": _ready}, {}),
            max_body_bytes=MAX_BODY,
            session_api=session_api(
                SessionQueries(database, sessions, can_purge=can_purge), api_token
            ),
            serve_metrics=serve_metrics,
        )
        return cls(app, database, sessions, clock)


@contextmanager
def serve_in_thread(db_path: Path) -> Iterator[tuple[str, ApiApp]]:
    """The app on 127.0.0.1 (a free port) on its own loop in a thread: (base URL, app)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="api-app", daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    async def start() -> tuple[web.AppRunner, ApiApp, int]:
        built = await ApiApp.build(db_path)
        runner = web.AppRunner(built.app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return runner, built, port

    runner, built, port = run(start())
    try:
        yield f"http://127.0.0.1:{port}", built
    finally:

        async def stop() -> None:
            await runner.cleanup()
            await built.database.close()

        run(stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
