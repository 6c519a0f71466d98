"""Composition root: builds every part once, starts them in order, stops them in reverse.

Start: database -> migrations -> bot (logs in and syncs in the background) -> jobs -> web.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import timedelta

import structlog
from aiohttp import ClientSession, ClientTimeout, web

import store.migrate
from bridge import metrics
from bridge.config import Config
from bridge.errors import SealroomError
from bridge.helpdesk.signatures import StandardWebhooksVerifier
from bridge.jobs import JobRunner
from bridge.matrix.admin import AdminRegistrationTokens, SynapseAdmin
from bridge.matrix.bot_identity import BotIdentity
from bridge.matrix.client import BotClient, BotSettings, TrustHooks
from bridge.matrix.events import RoomEvents
from bridge.matrix.rooms import MatrixRoomService
from bridge.sessions import SessionService, Settings, utcnow
from bridge.tasks import cancel_and_wait
from bridge.web.app import make_app
from bridge.web.keys import Readiness, WebSettings
from bridge.web.server import make_runner
from store import Database

log = structlog.stdlib.get_logger(__name__)

SYNC_STALE_SECONDS = 90.0


def show_recovery_key(recovery_key: str, user_id: str) -> None:
    """The one time the bot's recovery key exists outside memory: on the admin's terminal.

    Written to stdout, never to the logs (which go to stderr), the database or the data dir.
    """
    line = "=" * 72
    print(
        f"{line}\n"
        f"The bot {user_id} now has a cross-signed identity. Its RECOVERY KEY is:\n\n"
        f"    {recovery_key}\n\n"
        "Store it like a password (a password manager). It is shown only this once. You need it\n"
        "if the bot's data directory is lost: sealroom bot-identity --recovery-key\n"
        f"{line}",
        flush=True,
    )


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.database = Database(config.database_url)
        self.bot = BotClient(
            BotSettings(
                homeserver_url=config.homeserver.url,
                user_id=config.bot.user_id,
                password=config.bot.password_value(),
                access_token=config.bot.access_token_value(),
                device_name=config.bot.device_name,
                display_name=config.bot.display_name,
                data_dir=config.bot.data_dir,
                pickle_key=config.bot.pickle_key_value(),
                request_timeout=config.homeserver.request_timeout_seconds,
            )
        )
        self.rooms = MatrixRoomService(self.bot, config.homeserver.server_name)
        self.identity = BotIdentity(self.bot, config.bot.password_value())
        self.identity_ready = asyncio.Event()
        self._identity_task: asyncio.Task[None] | None = None
        self.jobs = JobRunner(
            self.database,
            utcnow,
            concurrency=config.jobs.concurrency,
            retry_initial=config.jobs.retry_initial_seconds,
            retry_max=config.jobs.retry_max_seconds,
            max_attempts=config.jobs.max_attempts,
            poll_seconds=config.jobs.poll_seconds,
        )
        self.sessions = SessionService(
            self.database,
            Settings(
                server_name=config.homeserver.server_name,
                invite_lifetime=timedelta(hours=config.invites.lifetime_hours),
                session_lifetime=timedelta(hours=config.rooms.lifetime_hours),
                name_template=config.rooms.name_template,
                topic_template=config.rooms.topic_template,
                room_version=config.rooms.room_version,
                agents=dict(config.agents),
                registration_enabled=config.registration.enabled,
                registration_token_lifetime=timedelta(
                    minutes=config.registration.token_lifetime_minutes
                ),
            ),
            self.rooms,
            on_job_added=self.jobs.wake,
            registration_tokens=AdminRegistrationTokens(
                SynapseAdmin(config.homeserver.url, config.homeserver.admin_token_value())
            ),
        )
        for name, action in {
            "create_room": self.sessions.run_create_room,
            "invite": self.sessions.run_invite,
            "notice": self.sessions.run_notice,
            "close_room": self.sessions.run_close_room,
            "expire": self.sessions.run_expire,
            "noop": self.sessions.run_noop,
        }.items():
            self.jobs.register(name, action)
        RoomEvents(self.sessions).attach(self.bot)
        self.bot.trust = TrustHooks(
            config.trust.mode, self.sessions.pinned_identities, self.sessions.trust_report
        )
        self.web_app = make_app(
            self.sessions,
            {
                name: StandardWebhooksVerifier(
                    integration.secret_value(), integration.tolerance_seconds
                )
                for name, integration in config.integrations.items()
            },
            WebSettings(
                public_base_url=config.http.public_base_url,
                homeserver_url=config.homeserver.url,
                server_name=config.homeserver.server_name,
                web_client_template=config.web_client.url_template,
                registration_enabled=config.registration.enabled,
                homeserver_browser_url=config.homeserver.browser_url,
                password_min_length=config.registration.password_min_length,
            ),
            Readiness(
                {
                    "database": self._check_database,
                    "homeserver": self._check_homeserver,
                    "sync": self._check_sync,
                    "identity": self._check_identity,
                },
                {"jobs": self._check_jobs},
            ),
            max_body_bytes=config.http.max_body_bytes,
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        self.config.bot.data_dir.mkdir(parents=True, exist_ok=True)
        await store.migrate.upgrade_to_head(self.database)
        await self.bot.start()
        # Room work waits for the bot's sync (nio cannot send before it) and for its
        # cross-signed identity (strict clients ignore an uncross-signed device).
        self.jobs.pause_until(self.bot.synced, self.identity_ready)
        await self.jobs.start()
        self._identity_task = asyncio.create_task(self._ensure_identity(), name="bot-identity")
        self._runner = make_runner(
            self.web_app,
            client_timeout=self.config.http.client_timeout_seconds,
            access_log=None,
            handle_signals=False,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.bind, self.config.http.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.http.port
        log.info("sealroom.started", bind=self.config.http.bind, port=self.port)

    async def _ensure_identity(self) -> None:
        """Once the bot has synced: create or check its cross-signing identity, with retries."""
        delay = 1.0
        while True:
            await self.bot.synced.wait()
            try:
                recovery_key = await self.identity.ensure()
            except SealroomError as err:
                log.warning("bot.identity_retry", error=err.errcode, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            if recovery_key is not None:
                show_recovery_key(recovery_key, self.config.bot.user_id)
            self.identity_ready.set()
            return

    async def stop(self) -> None:
        log.info("sealroom.stopping")
        if self._identity_task is not None:
            await cancel_and_wait(self._identity_task)
            self._identity_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.jobs.stop()
        await self.bot.stop()
        await self.database.close()
        log.info("sealroom.stopped")

    async def run_until_signal(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # -- readiness -----------------------------------------------------------------------------

    async def _check_database(self) -> str | None:
        await self.database.ping()
        return None

    async def _check_homeserver(self) -> str | None:
        url = f"{self.config.homeserver.url}/_matrix/client/versions"
        async with (
            ClientSession(timeout=ClientTimeout(total=3)) as http,
            http.get(url) as response,
        ):
            return None if response.status == 200 else f"answered {response.status}"

    async def _check_sync(self) -> str | None:
        last = self.bot.last_sync_monotonic
        if last is None:
            return "the bot has not synced yet"
        age = time.monotonic() - last
        metrics.SYNC_AGE.set(age)
        return None if age < SYNC_STALE_SECONDS else f"last sync {age:.0f} s ago"

    async def _check_identity(self) -> str | None:
        if self.identity_ready.is_set():
            return None
        return "the bot's cross-signing identity is not set up or checked yet"

    async def _check_jobs(self) -> str | None:
        failed = await self.jobs.failed_count()
        return None if failed == 0 else f"{failed} job(s) gave up; see the audit trail"
