"""Composition root: builds every part once, starts them in order, stops them in reverse.

Start: database -> migrations -> bot (logs in and syncs in the background) -> jobs -> web.
With `cluster.enabled` the web starts at once and the bot and the jobs start only once this
instance holds the cluster lock (bridge.cluster); losing it stops the process.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog

import store.migrate
from bridge import i18n, metrics
from bridge.cluster import ClusterSettings, JobSignals, Leadership
from bridge.config import Config
from bridge.deliveries import DeliveryService
from bridge.errors import SealroomError
from bridge.helpdesk import outbound
from bridge.helpdesk.integration import Integration
from bridge.invites import InviteService
from bridge.jobs import JobRunner
from bridge.matrix import crypto_store
from bridge.matrix.admin import AdminRegistrationTokens, AdminRoomPurger, SynapseAdmin
from bridge.matrix.bot_identity import BotIdentity
from bridge.matrix.client import BotClient, BotSettings
from bridge.matrix.e2ee import EncryptionManager, TrustHooks
from bridge.matrix.events import RoomEvents
from bridge.matrix.rooms import MatrixRoomService
from bridge.registration import RegistrationService
from bridge.room_events import RoomEventService
from bridge.room_jobs import RoomJobs
from bridge.session_queries import SessionQueries
from bridge.sessions import SessionService, Settings, utcnow
from bridge.tasks import cancel_and_wait
from bridge.ticket_notes import LinkSealer, TicketNotes, TicketUpdates
from bridge.web.api import session_api
from bridge.web.app import make_app, make_metrics_app
from bridge.web.keys import Readiness, Services, WebSettings
from bridge.web.server import WebServer
from store import Database

log = structlog.stdlib.get_logger(__name__)

METRICS_POLL_SECONDS = 2.0


class LeadershipLost(SealroomError):
    errcode = "SEALROOM_CLUSTER_LOCK_LOST"
    default_message = (
        "This instance stopped running the bot (it lost the cluster lock, or the bot could "
        "not start: see the log) so that two instances never act for it; restart it and it "
        "waits as a standby."
    )


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


def domain_settings(config: Config) -> Settings:
    """The parts of the configuration the domain needs (also for `sealroom sessions close`)."""
    return Settings(
        server_name=config.homeserver.server_name,
        invite_lifetime=timedelta(hours=config.invites.lifetime_hours),
        session_lifetime=timedelta(hours=config.rooms.lifetime_hours),
        expiry_warning=timedelta(minutes=config.rooms.expiry_warning_minutes),
        first_notice_wait=timedelta(seconds=config.rooms.first_notice_wait_seconds),
        remote_invite_patience=timedelta(minutes=config.invites.remote_server_patience_minutes),
        name_template=config.rooms.name_template,
        topic_template=config.rooms.topic_template,
        room_version=config.rooms.room_version,
        agents=dict(config.agents),
        integration_agents={
            name: dict(integration.agents)
            for name, integration in config.integrations.items()
            if integration.agents
        },
        registration_enabled=config.registration.enabled,
        registration_token_lifetime=timedelta(minutes=config.registration.token_lifetime_minutes),
        public_base_url=config.http.public_base_url,
        notice_languages={
            name: integration.language for name, integration in config.integrations.items()
        },
        ticket_updates={
            name: TicketUpdates(
                frozenset(integration.outbound.milestones),
                integration.outbound.public_reply,
            )
            for name, integration in config.integrations.items()
            if integration.outbound is not None
        },
        integration_lifetimes={
            name: timedelta(hours=integration.lifetime_hours)
            for name, integration in config.integrations.items()
            if integration.lifetime_hours is not None
        },
        bot_stays=config.rooms.bot_stays,
        idle_timeout=(
            timedelta(hours=config.rooms.idle_hours) if config.rooms.idle_hours else None
        ),
    )


class App:
    def __init__(self, config: Config, clock: Callable[[], datetime] = utcnow) -> None:
        """`clock`: the time sessions, invites and jobs go by (a test moves it by hours)."""
        self.config = config
        self.clock = clock
        self.database = Database(config.database_url)
        self.leadership: Leadership | None = None
        self.job_signals: JobSignals | None = None
        if config.cluster.enabled:
            self.leadership = Leadership(
                ClusterSettings(
                    instance_id=config.cluster.instance_name(),
                    dsn=self.database.libpq_url(),
                    lock_name=config.bot.user_id,
                    lock_retry_seconds=config.cluster.lock_retry_seconds,
                    check_seconds=config.cluster.check_seconds,
                    lost_after_seconds=config.cluster.lost_after_seconds,
                )
            )
        else:
            metrics.CLUSTER_LEADER.labels("single").set(1)
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
            ),
            **self._cluster_bot_options(),
        )
        self.e2ee = EncryptionManager(self.bot)
        self.rooms = MatrixRoomService(self.bot, self.e2ee, config.homeserver.server_name)
        self.identity = BotIdentity(self.bot, self.e2ee, config.bot.password_value())
        self.admin = SynapseAdmin(
            config.homeserver.url,
            config.homeserver.admin_token_value(),
            server_name=config.homeserver.server_name,
        )
        self.identity_ready = asyncio.Event()
        # Set when this process printed the bot's new recovery key (its first start).
        self.recovery_key_shown = False
        self._identity_task: asyncio.Task[None] | None = None
        self.jobs = JobRunner(
            self.database,
            clock,
            concurrency=config.jobs.concurrency,
            retry_initial=config.jobs.retry_initial_seconds,
            retry_max=config.jobs.retry_max_seconds,
            max_attempts=config.jobs.max_attempts,
            poll_seconds=config.jobs.poll_seconds,
        )
        if self.leadership is not None:
            self.job_signals = JobSignals(self.database.libpq_url(), on_signal=self.jobs.wake)
        self.sessions = SessionService(
            self.database,
            domain_settings(config),
            clock=clock,
            wake_jobs=self._wake_jobs,
        )
        # Back into the tickets (#10): one adapter per integration with `outbound:`.
        self.ticket_systems = {
            name: outbound.build(name, integration.outbound)
            for name, integration in config.integrations.items()
            if integration.outbound is not None
        }
        self.link_sealer = LinkSealer(config.bot.data_dir / "link.key")
        TicketNotes(self.database, self.ticket_systems, self.link_sealer, clock).register(
            self.jobs
        )
        self.invites = InviteService(self.database, self.sessions, self.admin)
        registration = RegistrationService(
            self.database, self.sessions, self.invites, AdminRegistrationTokens(self.admin)
        )
        # Without an admin token closed rooms are redacted but not purged (check-config says so).
        purger = (
            AdminRoomPurger(self.admin, config.homeserver.server_name)
            if config.homeserver.admin_token_value()
            else None
        )
        RoomJobs(self.sessions, self.invites, self.rooms, purger).register(self.jobs)
        room_events = RoomEvents(RoomEventService(self.sessions, config.bot.user_id))
        room_events.attach(self.bot)
        self.e2ee.trust = TrustHooks(
            config.trust.mode, room_events.pinned_identities, room_events.trust_report
        )
        self.web_app = make_app(
            Services(
                DeliveryService(
                    self.database,
                    self.sessions,
                    self.invites,
                    sealer=self.link_sealer,
                    public_base_url=config.http.public_base_url,
                ),
                self.invites,
                registration,
            ),
            {
                name: Integration(integration.verifier(), integration.field_map())
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
                branding=config.branding,
                logo=config.branding.logo(),
            ),
            Readiness(
                {
                    "database": self._check_database,
                    "homeserver": self.admin.check_homeserver,
                    "sync": self._check_sync,
                    "identity": self._check_identity,
                },
                {"jobs": self._check_jobs},
            ),
            max_body_bytes=config.http.max_body_bytes,
            session_api=session_api(
                SessionQueries(self.database, self.sessions, can_purge=purger is not None),
                config.api.token_value(),
            ),
            serve_metrics=config.metrics.port is None,
        )
        self.web = WebServer(
            self.web_app,
            config.http.bind,
            config.http.port,
            config.http.client_timeout_seconds,
        )
        self.port: int | None = None
        # metrics.port set: /metrics on a listener of its own, off the public port.
        self.metrics_web = (
            None
            if config.metrics.port is None
            else WebServer(
                make_metrics_app(),
                config.metrics.bind,
                config.metrics.port,
                config.http.client_timeout_seconds,
            )
        )
        self._lead_task: asyncio.Task[None] | None = None
        self._metrics_task: asyncio.Task[None] | None = None
        self.fatal = asyncio.Event()

    def _wake_jobs(self) -> None:
        """After a commit that scheduled jobs: run them now, here or on the cluster's leader."""
        self.jobs.wake()
        if self.job_signals is not None and not (
            self.leadership is not None and self.leadership.is_leader
        ):
            self.job_signals.notify()

    def _cluster_bot_options(self) -> dict[str, Any]:
        """In a cluster the crypto store lives on the lock connection, and the lock (not a
        file in data_dir) keeps other processes off the device."""
        leadership = self.leadership
        if leadership is None:
            return {}
        return {
            "crypto_database": lambda path: crypto_store.postgres_database(
                leadership.lock.connection
            )(path),
            "fence": leadership.fence,
            "use_file_lock": False,
        }

    async def start(self) -> None:
        self.config.bot.data_dir.mkdir(parents=True, exist_ok=True)
        await store.migrate.upgrade_to_head(self.database)
        # Off the loop, before any notice or page needs them (bridge.i18n.warm_up).
        await asyncio.to_thread(
            i18n.warm_up, (i.language for i in self.config.integrations.values())
        )
        self._metrics_task = asyncio.create_task(self._watch_metrics(), name="sealroom-metrics")
        if self.leadership is None:
            await self._start_bot()
        else:
            self._lead_task = asyncio.create_task(self._lead(), name="sealroom-cluster")
        if self.metrics_web is not None:
            await self.metrics_web.start()
        await self.web.start()
        self.port = self.web.port
        log.info(
            "sealroom.started",
            bind=self.config.http.bind,
            port=self.port,
            **(
                {"metrics_bind": self.metrics_web.bind, "metrics_port": self.metrics_web.port}
                if self.metrics_web is not None
                else {}
            ),
        )

    async def _lead(self) -> None:
        """Wait for the cluster lock, run the bot while it is held, stop the process if lost."""
        assert self.leadership is not None
        try:
            await self.leadership.campaign()
            if self.job_signals is not None:
                self.job_signals.listen()
            await self._start_bot()
            await self.leadership.watch()
        except Exception:
            # Holding the lock without a working bot would stall every instance: give it up.
            log.exception("cluster.leader_failed")
        self.fatal.set()

    async def _watch_metrics(self) -> None:
        lag = asyncio.create_task(metrics.watch_loop_lag(), name="sealroom-loop-lag")
        try:
            while True:
                try:
                    metrics.set_job_queue(await self.jobs.queue_stats())
                except Exception as err:  # noqa: BLE001 (metrics never stop the service)
                    log.debug("metrics.poll_failed", error=type(err).__name__)
                await asyncio.sleep(METRICS_POLL_SECONDS)
        finally:
            await cancel_and_wait(lag)

    async def _start_bot(self) -> None:
        await self.bot.start()
        # Room work waits for the bot's sync (nio cannot send before it) and for its
        # cross-signed identity (strict clients ignore an uncross-signed device).
        self.jobs.pause_until(self.bot.synced, self.identity_ready)
        await self.jobs.start()
        self._identity_task = asyncio.create_task(self._ensure_identity(), name="bot-identity")

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
                self.recovery_key_shown = True
            self.identity_ready.set()
            log.info("bot.identity_ready", device_id=self.bot.device_id)
            return

    async def stop(self) -> None:
        log.info("sealroom.stopping")
        await cancel_and_wait(self._lead_task, self._metrics_task)
        if self._identity_task is not None:
            await cancel_and_wait(self._identity_task)
            self._identity_task = None
        await self.web.stop()
        if self.metrics_web is not None:
            await self.metrics_web.stop()
        # A deposed leader cuts its jobs short: the new leader runs them again.
        await self.jobs.stop(grace=0 if self.fatal.is_set() else 10.0)
        await self.e2ee.finish_backups()
        for system in self.ticket_systems.values():
            await system.close()
        await self.bot.stop()
        if self.job_signals is not None:
            await self.job_signals.close()
        if self.leadership is not None:
            await self.leadership.close()
        await self.admin.close()
        await self.database.close()
        log.info("sealroom.stopped")

    async def run_until_signal(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        stopped = asyncio.create_task(stop.wait())
        fatal = asyncio.create_task(self.fatal.wait())
        try:
            await asyncio.wait({stopped, fatal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(stopped, fatal)
            await self.stop()
        if self.fatal.is_set():
            raise LeadershipLost()

    # -- readiness -----------------------------------------------------------------------------

    async def _check_database(self) -> str | None:
        await self.database.ping()
        return None

    def _standby(self) -> bool:
        return self.leadership is not None and not self.leadership.is_leader

    async def _check_sync(self) -> str | None:
        """A standby is ready without a bot: it takes webhooks while another instance syncs."""
        return None if self._standby() else await self.bot.check_sync()

    async def _check_identity(self) -> str | None:
        if self._standby() or self.identity_ready.is_set():
            return None
        return "the bot's cross-signing identity is not set up or checked yet"

    async def _check_jobs(self) -> str | None:
        failed = await self.jobs.failed_count()
        return None if failed == 0 else f"{failed} job(s) gave up; see the audit trail"
