"""Back into the ticket, against fake Zendesk and Zammad APIs and a callback receiver.

The fakes are aiohttp servers on 127.0.0.1 that follow the vendors' documented request and
response shapes (Zendesk Ticketing API: PUT /api/v2/tickets/{id}.json with a comment, GET
/api/v2/tickets/{id}/comments.json; Zammad REST API: GET /api/v1/tickets/search, GET
/api/v1/ticket_articles/by_ticket/{id}, POST /api/v1/ticket_articles). The sealroom side is real:
store (SQLite), sessions, invites, deliveries, the job runner and its retries, the adapters with
their host guard; only the homeserver is a recorder.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from sqlalchemy import select

import store.migrate
from bridge.deliveries import Delivery, DeliveryService
from bridge.helpdesk import outbound
from bridge.helpdesk.outbound_options import MILESTONES, OutboundOptions
from bridge.invites import InviteService
from bridge.jobs import Action, JobRunner
from bridge.room_events import RoomEventService
from bridge.room_jobs import RoomJobs
from bridge.sessions import OpenRequest, SessionService, Settings
from bridge.ticket_notes import LinkSealer, TicketNotes, TicketUpdates
from store import Database, Job
from tests.support.fakes import RecordingRooms, forbidden
from tests.support.logs import captured

ZENDESK_TOKEN = "zendesk-api-token-for-the-fake"
ZAMMAD_TOKEN = "zammad-api-token-for-the-fake"
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"callback-secret-for-the-fake!").decode()
BASE_URL = "https://sealroom.example.org"


# -- the fakes ----------------------------------------------------------------------------------


@dataclass
class FakeApi:
    """One fake helpdesk: its comments per ticket, and a switch for outages."""

    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # "up", "down" (503 before doing anything), "fail_after_apply" (applies, then answers 503
    # once: the answer is lost as far as sealroom knows), "redirect".
    mode: str = "up"
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    def gate(self) -> web.Response | None:
        if self.mode == "down":
            return web.json_response({"error": "ServiceUnavailable"}, status=503)
        if self.mode == "redirect":
            raise web.HTTPTemporaryRedirect("https://elsewhere.example.net/steal")
        return None

    def applied(self) -> web.Response | None:
        if self.mode == "fail_after_apply":
            self.mode = "up"
            return web.json_response({"error": "ServiceUnavailable"}, status=503)
        return None


def zendesk_app(api: FakeApi) -> web.Application:
    credentials = f"agent@example.com/token:{ZENDESK_TOKEN}".encode()
    expected_auth = "Basic " + base64.b64encode(credentials).decode()

    def check(request: web.Request) -> int:
        api.requests.append((request.method, request.path_qs))
        if request.headers.get("Authorization") != expected_auth:
            raise web.HTTPUnauthorized(text='{"error": "Couldn\'t authenticate you"}')
        ticket = int(request.match_info["id"])
        if ticket not in api.comments:
            raise web.HTTPNotFound(text='{"error": "RecordNotFound"}')
        return ticket

    async def comments(request: web.Request) -> web.Response:
        ticket = check(request)
        if (gated := api.gate()) is not None:
            return gated
        listed = list(reversed(api.comments[ticket]))  # sort_order=desc
        return web.json_response(
            {"comments": listed, "next_page": None, "previous_page": None, "count": len(listed)}
        )

    async def update(request: web.Request) -> web.Response:
        ticket = check(request)
        if (gated := api.gate()) is not None:
            return gated
        comment = (await request.json())["ticket"]["comment"]
        stored = {
            "id": 1000 + len(api.comments[ticket]),
            "type": "Comment",
            "author_id": 7,
            "body": comment["body"],
            "plain_body": comment["body"],
            "public": comment.get("public", True),
        }
        api.comments[ticket].append(stored)
        if (failed := api.applied()) is not None:
            return failed
        return web.json_response({"ticket": {"id": ticket}, "audit": {"events": [stored]}})

    app = web.Application()
    app.router.add_get("/api/v2/tickets/{id}/comments.json", comments)
    app.router.add_put("/api/v2/tickets/{id}.json", update)
    return app


def zammad_app(api: FakeApi, numbers: dict[str, int]) -> web.Application:
    def check(request: web.Request) -> None:
        api.requests.append((request.method, request.path_qs))
        if request.headers.get("Authorization") != f"Token token={ZAMMAD_TOKEN}":
            raise web.HTTPUnauthorized(text='{"error": "authentication failed"}')

    async def search(request: web.Request) -> web.Response:
        check(request)
        if (gated := api.gate()) is not None:
            return gated
        number = request.query.get("query", "").removeprefix("number:")
        found = [numbers[number]] if number in numbers else []
        return web.json_response({"tickets": found, "tickets_count": len(found), "assets": {}})

    async def by_ticket(request: web.Request) -> web.Response:
        check(request)
        if (gated := api.gate()) is not None:
            return gated
        return web.json_response(api.comments.get(int(request.match_info["id"]), []))

    async def create(request: web.Request) -> web.Response:
        check(request)
        if (gated := api.gate()) is not None:
            return gated
        data = await request.json()
        article = {
            "id": 2000 + sum(len(v) for v in api.comments.values()),
            "ticket_id": data["ticket_id"],
            "body": data["body"],
            "content_type": data.get("content_type", "text/html"),
            "type": data.get("type"),
            "internal": data.get("internal", False),
            "sender": "Agent",
        }
        api.comments.setdefault(data["ticket_id"], []).append(article)
        if (failed := api.applied()) is not None:
            return failed
        return web.json_response(article, status=201)

    app = web.Application()
    app.router.add_get("/api/v1/tickets/search", search)
    app.router.add_get("/api/v1/ticket_articles/by_ticket/{id}", by_ticket)
    app.router.add_post("/api/v1/ticket_articles", create)
    return app


def callback_app(api: FakeApi) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        api.requests.append((request.method, request.path_qs))
        if (gated := api.gate()) is not None:
            return gated
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/events", receive)
    return app


# -- the sealroom side --------------------------------------------------------------------------


@dataclass
class World:
    database: Database
    db_path: Path
    deliveries: DeliveryService
    sessions: SessionService
    invites: InviteService
    runner: JobRunner
    rooms: RecordingRooms

    async def jobs(self, action: Action) -> list[Job]:
        async with self.database.transaction() as tx:
            query = select(Job).where(Job.action == action.value).order_by(Job.id)
            return list((await tx.execute(query)).scalars())

    async def open(self, ticket: str, delivery: str = "d-1") -> str:
        outcome = await self.deliveries.open(
            Delivery("helpdesk", delivery), OpenRequest(ticket, "Printer", "alice@example.com")
        )
        assert outcome.invite_token is not None
        return f"{BASE_URL}/i#{outcome.invite_token}"


async def until(check: Callable[[], Any], what: str, timeout: float = 30) -> None:
    """Wait (bounded) for `check()` to hold; a failure says what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


MakeWorld = Callable[..., Any]


@pytest_asyncio.fixture
async def make_world(tmp_path: Path) -> AsyncIterator[MakeWorld]:
    made: list[tuple[World, list[Any], list[web.AppRunner]]] = []

    async def serve(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        servers.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    servers: list[web.AppRunner] = []

    async def make(options: dict[str, Any], app: web.Application | None = None) -> World:
        url = await serve(app) if app is not None else options.pop("url")
        outbound_options = OutboundOptions(**{"url": url, **options})
        db_path = tmp_path / f"sealroom-{len(made)}.db"
        database = Database(f"sqlite+aiosqlite:///{db_path}")
        await store.migrate.upgrade_to_head(database)
        runner = JobRunner(
            database,
            lambda: datetime.now(UTC),
            retry_initial=0.05,
            retry_max=0.2,
            max_attempts=60,
            poll_seconds=0.1,
        )
        sessions = SessionService(
            database,
            Settings(
                server_name="example.org",
                invite_lifetime=timedelta(hours=24),
                session_lifetime=timedelta(hours=72),
                name_template="Ticket {ticket_ref}",
                topic_template="Ticket {ticket_ref} ({subject})",
                room_version=None,
                agents={"alice@example.com": "@alice:example.org"},
                ticket_updates={
                    "helpdesk": TicketUpdates(
                        frozenset(outbound_options.milestones), outbound_options.public_reply
                    )
                },
            ),
            wake_jobs=runner.wake,
        )
        invites = InviteService(database, sessions)
        rooms = RecordingRooms()
        RoomJobs(sessions, invites, rooms).register(runner)
        sealer = LinkSealer(tmp_path / f"link-{len(made)}.key")
        adapter = outbound.build("helpdesk", outbound_options)
        TicketNotes(database, {"helpdesk": adapter}, sealer, lambda: datetime.now(UTC)).register(
            runner
        )
        deliveries = DeliveryService(
            database, sessions, invites, sealer=sealer, public_base_url=BASE_URL
        )
        world = World(database, db_path, deliveries, sessions, invites, runner, rooms)
        await runner.start()
        made.append((world, [adapter], []))
        return world

    make.serve = serve  # type: ignore[attr-defined]
    yield make
    for world, adapters, _ in made:
        await world.runner.stop()
        for adapter in adapters:
            await adapter.close()
        await world.database.close()
    for server in servers:
        await server.cleanup()


def zendesk_options(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "zendesk",
        "email": "agent@example.com",
        "token": ZENDESK_TOKEN,
        "allow_private_addresses": True,  # the fake listens on 127.0.0.1
        **extra,
    }


def _stored_bytes(world: World) -> bytes:
    return b"".join(
        path.read_bytes()
        for path in world.db_path.parent.iterdir()
        if path.name.startswith(world.db_path.name)
    )


# -- Zendesk ------------------------------------------------------------------------------------


async def test_zendesk_gets_the_link_as_a_public_reply_and_milestones_as_internal_notes(
    make_world: MakeWorld,
) -> None:
    api = FakeApi(comments={35436: []})
    world = await make_world(zendesk_options(), zendesk_app(api))

    link = await world.open("35436")
    await until(lambda: len(api.comments[35436]) == 2, "the reply and the room-ready note")
    token = link.split("#", 1)[1]
    await world.invites.redeem(token, "@customer:example.net")
    await until(lambda: len(api.comments[35436]) == 3, "the link-used note")
    session_id = (await world.jobs(Action.CREATE_ROOM))[0].session_id
    await world.sessions.close(session_id or "", "helpdesk", "helpdesk")
    await until(lambda: len(api.comments[35436]) == 4, "the session-closed note")

    [reply] = [c for c in api.comments[35436] if c["public"]]
    notes = [c for c in api.comments[35436] if not c["public"]]
    assert len(notes) == 3
    assert link in reply["body"]  # exactly the link the webhook answered with
    assert "ready" in notes[0]["body"]
    assert "used the invite link" in notes[1]["body"]
    assert "closed" in notes[2]["body"]
    assert all(token not in note["body"] for note in notes)
    # The link was never stored in the clear, and its sealed copy is gone once posted.
    assert token.encode() not in _stored_bytes(world)
    [reply_job] = await world.jobs(Action.TICKET_REPLY)
    assert (reply_job.state, reply_job.params) == ("done", {})


async def test_while_zendesk_is_down_nothing_is_lost_and_nothing_is_posted_twice(
    make_world: MakeWorld,
) -> None:
    api = FakeApi(comments={35436: []}, mode="down")
    world = await make_world(zendesk_options(), zendesk_app(api))

    link = await world.open("35436")

    async def retried() -> bool:
        jobs = await world.jobs(Action.TICKET_REPLY) + await world.jobs(Action.TICKET_NOTE)
        return len(jobs) == 2 and all(job.attempts >= 2 for job in jobs)

    await until(retried, "both posts to be retried while Zendesk is down")
    assert api.comments[35436] == []
    # Zendesk comes back, but the first post it applies is answered with an error: from
    # sealroom's side that post failed, and the retry must find it instead of posting again.
    api.mode = "fail_after_apply"
    await until(lambda: len(api.comments[35436]) >= 2, "the posts after Zendesk is back")

    async def all_done() -> bool:
        jobs = await world.jobs(Action.TICKET_REPLY) + await world.jobs(Action.TICKET_NOTE)
        return all(job.state == "done" for job in jobs)

    await until(all_done, "every post job to finish")
    bodies = [comment["body"] for comment in api.comments[35436]]
    assert len(bodies) == 2, bodies
    assert sum(link in body for body in bodies) == 1


async def test_the_same_delivery_twice_schedules_one_reply(make_world: MakeWorld) -> None:
    api = FakeApi(comments={35436: []})
    world = await make_world(zendesk_options(milestones=[]), zendesk_app(api))

    await world.open("35436", delivery="d-1")
    replay = await world.deliveries.open(
        Delivery("helpdesk", "d-1"), OpenRequest("35436", "Printer", "alice@example.com")
    )
    assert replay.replayed
    assert replay.invite_token is None
    await until(lambda: len(api.comments[35436]) == 1, "the one reply")
    assert len(await world.jobs(Action.TICKET_REPLY)) == 1


async def test_a_customer_joining_and_a_failed_invitation_are_noted(
    make_world: MakeWorld,
) -> None:
    api = FakeApi(comments={35436: []})
    world = await make_world(
        zendesk_options(milestones=["customer_joined", "invite_failed"], public_reply=False),
        zendesk_app(api),
    )
    link = await world.open("35436")

    async def room_created() -> bool:
        # The job, not the fake room: the session is open with its room only once the job's
        # transaction has committed, a moment after the room exists on the "homeserver".
        jobs = await world.jobs(Action.CREATE_ROOM)
        return bool(jobs) and all(job.state == "done" for job in jobs)

    await until(room_created, "the room")
    [room_id] = list(world.rooms.rooms)
    events = RoomEventService(world.sessions, str(RecordingRooms.BOT))

    await events.member_joined(room_id, "@customer:example.net", "$join-1")
    await events.member_joined(room_id, "@customer:example.net", "$join-1")  # replayed timeline
    await events.member_joined(room_id, "@alice:example.org", "$join-2")  # the agent: no note
    world.rooms.fail_next("invite", forbidden())
    await world.invites.redeem(link.split("#", 1)[1], "@other:example.net")
    await until(lambda: len(api.comments[35436]) == 2, "the joined and invite-failed notes")

    bodies = [comment["body"] for comment in api.comments[35436]]
    assert any("joined the secure room" in body for body in bodies)
    assert any("could not be invited" in body for body in bodies)
    assert all("example.net" not in body for body in bodies)  # no Matrix IDs in the ticket


# -- Zammad -------------------------------------------------------------------------------------


async def test_zammad_gets_the_link_and_notes_on_the_ticket_found_by_its_number(
    make_world: MakeWorld,
) -> None:
    api = FakeApi(comments={81: []}, mode="fail_after_apply")
    world = await make_world(
        {"kind": "zammad", "token": ZAMMAD_TOKEN, "allow_private_addresses": True},
        zammad_app(api, {"10081": 81}),
    )

    link = await world.open("10081")
    await until(lambda: len(api.comments[81]) >= 2, "the reply and the room-ready note")

    async def all_done() -> bool:
        jobs = await world.jobs(Action.TICKET_REPLY) + await world.jobs(Action.TICKET_NOTE)
        return len(jobs) == 2 and all(job.state == "done" for job in jobs)

    await until(all_done, "both post jobs to finish")
    articles = api.comments[81]
    assert len(articles) == 2, articles
    reply = next(a for a in articles if link in a["body"])
    note = next(a for a in articles if link not in a["body"])
    assert (reply["internal"], reply["type"]) == (False, "note")
    assert (note["internal"], note["type"]) == (True, "note")
    assert ("GET", "/api/v1/tickets/search?query=number:10081&limit=1") in api.requests


# -- the host guard -----------------------------------------------------------------------------


async def _refused(world: World, api: FakeApi, logs: Any) -> dict[str, Any]:
    async def gave_up() -> bool:
        jobs = await world.jobs(Action.TICKET_NOTE)
        return bool(jobs) and jobs[0].state == "failed"

    await until(gave_up, "the callback to be refused for good")
    assert api.requests == []  # nothing was sent
    refused = [
        json.loads(line) for line in logs.getvalue().splitlines() if "outbound.refused" in line
    ]
    assert refused, logs.getvalue()
    return refused[0]


async def test_a_callback_to_a_host_outside_the_allowlist_is_refused_and_logged(
    make_world: MakeWorld,
) -> None:
    api = FakeApi()
    url = await make_world.serve(callback_app(api))  # type: ignore[attr-defined]
    with captured() as logs:
        world = await make_world(
            {
                "kind": "callback",
                "url": f"{url}/events",
                "secret": CALLBACK_SECRET,
                "allowed_hosts": ["hooks.example.com"],
                "allow_private_addresses": True,
                "public_reply": False,
            }
        )
        await world.open("T-1")
        line = await _refused(world, api, logs)
    assert line["host"] == "127.0.0.1"
    assert "allowed_hosts" in line["reason"]
    assert line["level"] == "warning"


async def test_a_private_address_is_refused_unless_allowed(make_world: MakeWorld) -> None:
    api = FakeApi()
    url = await make_world.serve(callback_app(api))  # type: ignore[attr-defined]
    with captured() as logs:
        world = await make_world(
            {
                "kind": "callback",
                "url": f"{url}/events",
                "secret": CALLBACK_SECRET,
                "public_reply": False,
            }
        )
        await world.open("T-1")
        line = await _refused(world, api, logs)
    assert "not a public address" in line["reason"]


async def test_a_name_that_resolves_to_a_private_address_is_refused() -> None:
    options = OutboundOptions(
        kind="callback", url="http://localhost:9/events", secret=CALLBACK_SECRET
    )
    adapter = outbound.build("helpdesk", options)
    try:
        with pytest.raises(Exception, match="non-public") as info:
            await adapter.post("T-1", "text", public=False, key="sealroom-k", event="room_ready")
    finally:
        await adapter.close()
    assert type(info.value).__name__ == "TicketSystemRefused"


async def test_a_redirect_is_refused_and_not_followed(make_world: MakeWorld) -> None:
    api = FakeApi(mode="redirect")
    url = await make_world.serve(callback_app(api))  # type: ignore[attr-defined]
    with captured() as logs:
        world = await make_world(
            {
                "kind": "callback",
                "url": f"{url}/events",
                "secret": CALLBACK_SECRET,
                "allow_private_addresses": True,
                "public_reply": False,
            }
        )
        await world.open("T-1")

        async def gave_up() -> bool:
            jobs = await world.jobs(Action.TICKET_NOTE)
            return bool(jobs) and jobs[0].state == "failed"

        await until(gave_up, "the redirect to be refused")
    assert len(api.requests) == 1  # the one request; the redirect was not followed
    assert "elsewhere.example.net" in logs.getvalue()
    assert "redirects are not followed" in logs.getvalue()


def test_every_milestone_is_configurable() -> None:
    assert set(MILESTONES) == {
        "room_ready",
        "customer_joined",
        "link_used",
        "session_closed",
        "invite_failed",
    }
