"""A real sealroom service per test, against the session's real Synapse."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

import store.sessions
from bridge import logs
from bridge.app import App
from bridge.config import Config, parse
from bridge.devtools.localsynapse import LocalSynapse, free_port
from bridge.helpdesk.kinds.standard_webhooks import signed_headers

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
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = signed_headers(self.secret, body, webhook_id, timestamp)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/hooks/{integration}", data=body, headers=headers) as response,
        ):
            data = await response.json()
        if isinstance(data, dict) and "invite_url" in data:
            self.tokens.append(str(data["invite_url"]).split("#", 1)[1])
        return response.status, data

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
        self.app = App(self.config)
        await self.app.start()
        await self.wait_ready()

    def secret_haystack(self) -> list[tuple[Path, bytes]]:
        """Every file the service wrote: its log, database and data directory."""
        self.log_stream.flush()
        files = [p for p in self.folder.rglob("*") if p.is_file()]
        return [(p, p.read_bytes()) for p in files]


SealroomFactory = Callable[..., Awaitable[Sealroom]]


async def _default_agents(synapse: LocalSynapse) -> dict[str, str]:
    """sealroom refuses tickets for unmapped agents: map the tests' agent to a fresh account."""
    user_id = await synapse.register_user(
        f"agent-{next(_counter)}-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    )
    return {"agent@example.com": user_id}


@pytest_asyncio.fixture(loop_scope="session")
async def sealroom(
    synapse: LocalSynapse, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SealroomFactory]:
    """``await sealroom(agents={...}, homeserver_url=...)`` starts a service with its own bot."""
    started: list[Sealroom] = []

    async def make(
        *,
        agents: dict[str, str] | None = None,
        homeserver_url: str | None = None,
        database_url: str | None = None,
        admin_token: bool = False,
        **sections: Any,
    ) -> Sealroom:
        folder = tmp_path_factory.mktemp("sealroom")
        bot_password = secrets.token_urlsafe(16)
        localpart = f"sealroom-bot-{next(_counter)}-{secrets.token_hex(3)}"
        bot_id = await synapse.register_user(localpart, bot_password)
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        port = free_port()
        raw: dict[str, Any] = {
            "homeserver": {
                "url": homeserver_url or synapse.url,
                "server_name": "localhost",
                "request_timeout_seconds": 10,
            },
            "bot": {
                "user_id": bot_id,
                "password": bot_password,
                "data_dir": str(folder / "data"),
                "pickle_key": secrets.token_urlsafe(24),
            },
            "database": {"url": database_url},
            "http": {
                "bind": "127.0.0.1",
                "port": port,
                "public_base_url": f"http://127.0.0.1:{port}",
            },
            "integrations": {"test": {"kind": "standard-webhooks", "secret": secret}},
            "agents": agents if agents is not None else await _default_agents(synapse),
            "jobs": {"retry_initial_seconds": 0.2, "retry_max_seconds": 2.0, "poll_seconds": 1.0},
            "logging": {"level": "DEBUG", "format": "json"},
        }
        if admin_token:
            raw["homeserver"]["admin_token"] = await synapse.admin_token()
        raw.update(sections)
        config = parse(raw)
        stream = open(folder / "sealroom.log", "a", encoding="utf-8")  # noqa: SIM115
        logs.configure("DEBUG", "json", stream=stream, secrets=[bot_password, secret])
        app = App(config)
        await app.start()
        service = Sealroom(config, app, f"http://127.0.0.1:{port}", secret, folder, stream)
        started.append(service)
        await service.wait_ready()
        return service

    yield make
    for service in started:
        await service.app.stop()
    logs.configure("INFO", "console")
    for service in started:
        service.log_stream.close()
