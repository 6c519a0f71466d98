"""A real sealroom service per test, against the session's real Synapse."""

from __future__ import annotations

import asyncio
import io
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import store.sessions
from bridge import logs
from bridge.app import App
from bridge.config import Config
from bridge.config_file import parse
from bridge.devtools.localsynapse import LocalSynapse, free_port
from bridge.sessions import utcnow
from tests.support.http_json import post_json, post_webhook
from tests.support.matrix_users import MatrixUser
from tests.support.service_config import fresh_agents, service_config, webhook_secret

_counter = itertools.count(1)


@dataclass
class Sealroom:
    """A running sealroom service and the handles a test needs."""

    config: Config
    app: App
    url: str
    secret: str
    folder: Path
    log_stream: io.TextIOBase
    tokens: list[str] = field(default_factory=list)
    # The time the service goes by (a test may move it: tests/e2e/test_lifecycle_clock.py).
    clock: Callable[[], datetime] = utcnow

    @property
    def log_path(self) -> Path:
        return self.folder / "sealroom.log"

    async def webhook(
        self,
        payload: dict[str, Any] | bytes,
        *,
        webhook_id: str | None = None,
        timestamp: int | None = None,
        integration: str = "test",
    ) -> tuple[int, dict[str, Any]]:
        status, data = await post_webhook(
            self.url,
            self.secret,
            payload,
            integration=integration,
            webhook_id=webhook_id,
            timestamp=timestamp,
        )
        if isinstance(data, dict) and "invite_url" in data:
            self.tokens.append(str(data["invite_url"]).split("#", 1)[1])
        return status, data

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST to the service as a browser's script does: (status, the JSON answer)."""
        return await post_json(self.url, path, body)

    async def redeem(self, user_id: str, token: str | None = None) -> tuple[int, Any]:
        """Redeem an invite (the newest one unless `token` is given) for `user_id`."""
        token = self.tokens[-1] if token is None else token
        return await self.post_json("/i/redeem", {"token": token, "user_id": user_id})

    async def open_ticket(
        self, ticket: str = "T-1", agent: str = "agent@example.com"
    ) -> dict[str, Any]:
        status, data = await self.webhook(
            {
                "event": "open",
                "ticket": {"id": ticket, "subject": f"Admin login for {ticket}"},
                "agent": agent,
                "customer": {"name": "Casey Customer"},
            }
        )
        assert status == 201, data
        return data

    async def open_room(
        self, ticket: str, agent: MatrixUser, customer: MatrixUser
    ) -> tuple[dict[str, Any], str]:
        """Open `ticket`; the agent joins, the customer redeems the link and joins.

        Returns the webhook's answer and the room.
        """
        opened = await self.open_ticket(ticket)
        room_id = await agent.wait_for_invite()
        await agent.join(room_id)
        status, data = await self.redeem(customer.user_id)
        assert status == 200, data
        await customer.wait_for_invite(room_id)
        await customer.join(room_id)
        return opened, room_id

    async def session_row(self, session_id: str) -> store.SecureSession:
        async with self.app.database.transaction() as db:
            row = await store.sessions.get(db, session_id)
        assert row is not None
        return row

    async def wait_for_room(self, session_id: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = await self.session_row(session_id)
            if row.room_id:
                return row.room_id
            await asyncio.sleep(0.1)
        raise AssertionError(f"no room for session {session_id} after {timeout} s")

    async def wait_ready(self, timeout: float = 60) -> None:
        """Synced, and the bot's cross-signed identity set up or checked."""
        await self.app.bot.wait_until_synced(timeout)
        await asyncio.wait_for(self.app.identity_ready.wait(), timeout)

    async def restart(self) -> None:
        await self.app.stop()
        self.app = App(self.config, self.clock)
        await self.app.start()
        await self.wait_ready()

    def secret_haystack(self) -> list[tuple[Path, bytes]]:
        """Every file the service wrote: its log, database and data directory."""
        self.log_stream.flush()
        files = [p for p in self.folder.rglob("*") if p.is_file()]
        return [(p, p.read_bytes()) for p in files]


SealroomFactory = Callable[..., Awaitable[Sealroom]]

# Retries and polls in seconds, not the product's minutes: a test sees a retried job succeed.
FAST_JOBS = {"retry_initial_seconds": 0.2, "retry_max_seconds": 2.0, "poll_seconds": 1.0}


@pytest_asyncio.fixture(loop_scope="session")
async def sealroom(
    synapse: LocalSynapse, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SealroomFactory]:
    """``await sealroom(agents={...}, homeserver_url=...)`` starts a service with its own bot.

    Other keywords replace whole config sections (``jobs`` replaces FAST_JOBS).
    """
    started: list[Sealroom] = []

    async def make(
        *,
        agents: dict[str, str] | None = None,
        homeserver_url: str | None = None,
        database_url: str | None = None,
        admin_token: bool = False,
        jobs: dict[str, Any] | None = None,
        clock: Callable[[], datetime] = utcnow,
        **sections: Any,
    ) -> Sealroom:
        folder = tmp_path_factory.mktemp("sealroom")
        bot_password = secrets.token_urlsafe(16)
        localpart = f"sealroom-bot-{next(_counter)}-{secrets.token_hex(3)}"
        bot_id = await synapse.register_user(localpart, bot_password)
        if agents is None:
            agents = await fresh_agents(synapse, f"agent-{next(_counter)}-{secrets.token_hex(3)}")
        secret = webhook_secret()
        port = free_port()
        config = parse(
            service_config(
                homeserver_url or synapse.url,
                str(folder / "data"),
                bot_id=bot_id,
                bot_password=bot_password,
                pickle_key=secrets.token_urlsafe(24),
                admin_token=await synapse.admin_token() if admin_token else None,
                request_timeout_seconds=10,
                database_url=database_url,
                port=port,
                secret=secret,
                agents=agents,
                jobs=FAST_JOBS if jobs is None else jobs,
                log_level="DEBUG",
                server_name=synapse.server_name,
                **sections,
            )
        )
        stream = open(folder / "sealroom.log", "a", encoding="utf-8")  # noqa: SIM115
        logs.configure("DEBUG", "json", stream=stream, secrets=[bot_password, secret])
        app = App(config, clock)
        await app.start()
        service = Sealroom(
            config, app, f"http://127.0.0.1:{port}", secret, folder, stream, clock=clock
        )
        started.append(service)
        await service.wait_ready()
        return service

    yield make
    for service in started:
        await service.app.stop()
    logs.configure("INFO", "console")
    for service in started:
        service.log_stream.close()
