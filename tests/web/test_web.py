"""The HTTP side end to end in-process: the real aiohttp app, SessionService and SQLite store.

Only the Matrix side is a recorder (the real-Matrix tests live in tests/e2e): every answer here
is what a helpdesk or a customer's browser really gets, status and message alike.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

import store.migrate
from bridge.deliveries import DeliveryService
from bridge.errors import InviteGone
from bridge.helpdesk.integration import Integration
from bridge.helpdesk.kinds.standard_webhooks import StandardWebhooksVerifier, sign
from bridge.invites import InviteService, hash_token
from bridge.registration import RegistrationService
from bridge.sessions import SessionService
from bridge.web.app import make_app
from bridge.web.keys import Readiness, Services, WebSettings
from store import Database, Invite, Job, SecureSession, WebhookDelivery
from tests.support.domain import AGENT, AGENT_ID, make_settings
from tests.support.fakes import Clock, RecordingRooms
from tests.support.logs import captured

SECRET = "whsec_" + "c2VhbHJvb20td2ViLXRlc3Qtc2lnbmluZy1rZXk="  # "sealroom-web-test-signing-key"
PUBLIC_BASE_URL = "https://sealroom.example.org"
MAX_BODY = 4096
GONE_MESSAGE = InviteGone.default_message


@dataclass
class Harness:
    client: TestClient[Any, Any]
    database: Database
    db_path: Path
    clock: Clock
    rooms: RecordingRooms

    async def hook(
        self,
        payload: Any,
        *,
        webhook_id: str | None = None,
        timestamp: int | None = None,
        secret: str = SECRET,
        integration: str = "helpdesk",
    ) -> ClientResponse:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        webhook_id = webhook_id or f"msg_{secrets.token_hex(8)}"
        timestamp = int(time.time()) if timestamp is None else timestamp
        return await self.client.post(
            f"/hooks/{integration}",
            data=raw,
            headers={
                "Content-Type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, webhook_id, timestamp, raw),
            },
        )

    async def open(self, ticket: str = "T-1", **extra: Any) -> dict[str, Any]:
        response = await self.hook(
            {
                "event": "open",
                "ticket": {"id": ticket, "subject": "VPN access"},
                "agent": "alice@example.com",
                **extra,
            }
        )
        assert response.status in (200, 201), await response.text()
        return dict(await response.json())

    async def lookup(self, token: str) -> ClientResponse:
        return await self.client.post("/i/lookup", json={"token": token})

    async def redeem(self, token: str, user_id: str = "@customer:example.net") -> ClientResponse:
        return await self.client.post("/i/redeem", json={"token": token, "user_id": user_id})

    async def count(self, model: Any, *where: Any) -> int:
        async with self.database.transaction() as tx:
            query = select(func.count()).select_from(model)
            if where:
                query = query.where(*where)
            return int((await tx.execute(query)).scalar_one())

    async def jobs(self) -> list[tuple[str, str | None, dict[str, Any]]]:
        async with self.database.transaction() as tx:
            rows = (await tx.execute(select(Job).order_by(Job.id))).scalars()
            return [(job.action, job.session_id, dict(job.params)) for job in rows]


def token_of(invite_url: str) -> str:
    match = re.fullmatch(re.escape(PUBLIC_BASE_URL) + r"/i#([A-Za-z0-9_-]{43})", invite_url)
    assert match, f"not an invite link of ours: {invite_url}"
    return match.group(1)


async def error_of(response: ClientResponse, status: int) -> dict[str, Any]:
    """Assert the status and a clean JSON error body (errcode, message, request id)."""
    body_text = await response.text()
    assert response.status == status, body_text
    body = json.loads(body_text)
    assert body["errcode"].startswith("SEALROOM_")
    assert isinstance(body["error"], str)
    assert len(body["error"]) >= 5
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in body_text
    return dict(body)


async def _all_ready() -> str | None:
    return None


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest_asyncio.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[MakeHarness]:
    opened: list[tuple[TestClient[Any, Any], Database]] = []

    async def make(readiness: Readiness | None = None) -> Harness:
        db_path = tmp_path / "sealroom.db"
        database = Database(f"sqlite+aiosqlite:///{db_path}")
        await store.migrate.upgrade_to_head(database)
        clock = Clock()
        rooms = RecordingRooms()
        sessions = SessionService(
            database,
            make_settings(
                topic_template="Secure room for ticket {ticket_ref} ({subject})",
                room_version=None,
                agents={AGENT: AGENT_ID},
                registration_enabled=False,
            ),
            clock=clock,
        )
        invites = InviteService(database, sessions)
        app = make_app(
            Services(
                DeliveryService(database, sessions, invites),
                invites,
                RegistrationService(database, sessions, invites, None),
            ),
            {"helpdesk": Integration(StandardWebhooksVerifier(SECRET, tolerance_seconds=300))},
            WebSettings(
                public_base_url=PUBLIC_BASE_URL,
                homeserver_url="https://matrix.example.org",
                server_name="example.org",
                web_client_template="https://app.element.io/#/room/{room}",
            ),
            readiness or Readiness({"database": _all_ready}, {}),
            max_body_bytes=MAX_BODY,
        )
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        opened.append((client, database))
        return Harness(client, database, db_path, clock, rooms)

    yield make
    for client, database in opened:
        await client.close()
        await database.close()


@pytest_asyncio.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    return await make_harness()


# -- webhooks -------------------------------------------------------------------------------------


async def test_open_returns_201_with_session_and_single_use_link(harness: Harness) -> None:
    response = await harness.hook(
        {"event": "open", "ticket": {"id": 4711, "subject": "VPN"}, "agent": "alice@example.com"}
    )

    assert response.status == 201, await response.text()
    body = await response.json()
    token = token_of(body["invite_url"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires == harness.clock.now + timedelta(hours=24)
    async with harness.database.transaction() as tx:
        session = await tx.get(SecureSession, body["session_id"])
        invite = (await tx.execute(select(Invite))).scalar_one()
    assert session is not None
    assert session.ticket_ref == "4711"
    assert session.agent_user_id == "@alice:example.org"
    assert invite.session_id == body["session_id"]
    assert invite.token_hash != token
    assert token not in invite.token_hash
    actions = [action for action, _, _ in await harness.jobs()]
    assert sorted(actions) == ["create_room", "expire"]
    assert harness.rooms.calls == []  # room work happens in jobs, not in the request


async def test_wrong_signature_is_401(harness: Harness) -> None:
    other = "whsec_" + "b3RoZXItc2VjcmV0LW9mLWVub3VnaC1sZW5ndGg="
    response = await harness.hook(
        {"event": "open", "ticket": {"id": 1}, "agent": "a"}, secret=other
    )

    body = await error_of(response, 401)
    assert body["errcode"] == "SEALROOM_SIGNATURE_INVALID"
    assert "secret" in body["error"]
    assert await harness.count(SecureSession) == 0


async def test_unsigned_request_is_401(harness: Harness) -> None:
    response = await harness.client.post(
        "/hooks/helpdesk", json={"event": "open", "ticket": {"id": 1}, "agent": "a"}
    )

    body = await error_of(response, 401)
    assert "webhook-signature" in body["error"]


@pytest.mark.parametrize(
    ("offset", "hint"), [(-3600, "too old"), (3600, "in the future")], ids=["stale", "future"]
)
async def test_timestamp_outside_tolerance_is_401(
    harness: Harness, offset: int, hint: str
) -> None:
    response = await harness.hook(
        {"event": "open", "ticket": {"id": 1}, "agent": "a"},
        timestamp=int(time.time()) + offset,
    )

    body = await error_of(response, 401)
    assert hint in body["error"]
    assert await harness.count(SecureSession) == 0


async def test_replayed_delivery_gets_the_first_status_and_changes_nothing(
    harness: Harness,
) -> None:
    payload = {"event": "open", "ticket": {"id": "T-1"}, "agent": "alice@example.com"}
    first = await harness.hook(payload, webhook_id="msg_replay")
    first_body = await first.json()
    jobs_before = await harness.jobs()

    again = await harness.hook(payload, webhook_id="msg_replay")

    assert (first.status, again.status) == (201, 201)
    again_body = await again.json()
    assert again_body["replayed"] is True
    assert again_body["session_id"] == first_body["session_id"]
    assert "invite_url" not in again_body  # the link is handed out once
    assert await harness.count(SecureSession) == 1
    assert await harness.count(Invite) == 1
    assert await harness.count(WebhookDelivery) == 1
    assert await harness.jobs() == jobs_before


async def test_replayed_close_gets_the_first_status(harness: Harness) -> None:
    await harness.open("T-1")
    close = {"event": "close", "ticket": {"id": "T-1"}}
    first = await harness.hook(close, webhook_id="msg_close")
    again = await harness.hook(close, webhook_id="msg_close")

    assert (first.status, again.status) == (202, 202)
    assert (await again.json())["replayed"] is True
    assert [a for a, _, _ in await harness.jobs()].count("close_room") == 1


async def test_malformed_json_is_400(harness: Harness) -> None:
    response = await harness.hook(b'{"event": "open", "ticket": ')

    body = await error_of(response, 400)
    assert body["errcode"] == "SEALROOM_PAYLOAD_INVALID"
    assert "not valid JSON" in body["error"]


async def test_missing_field_is_400_naming_the_field(harness: Harness) -> None:
    response = await harness.hook({"event": "open", "ticket": {"subject": "x"}, "agent": "a"})

    body = await error_of(response, 400)
    assert body["fields"] == ["ticket.id"]
    assert "ticket.id" in body["error"]
    assert await harness.count(WebhookDelivery) == 0


async def test_unknown_integration_is_404(harness: Harness) -> None:
    response = await harness.hook(
        {"event": "open", "ticket": {"id": 1}, "agent": "a"}, integration="zendesk"
    )

    body = await error_of(response, 404)
    assert body["errcode"] == "SEALROOM_INTEGRATION_UNKNOWN"
    assert "zendesk" in body["error"]


async def test_body_over_the_limit_is_413(harness: Harness) -> None:
    payload = {
        "event": "open",
        "ticket": {"id": 1, "subject": "x" * MAX_BODY},
        "agent": "a",
    }

    response = await harness.hook(payload)

    body = await error_of(response, 413)
    assert body["errcode"] == "SEALROOM_PAYLOAD_TOO_LARGE"
    assert await harness.count(SecureSession) == 0


async def test_second_open_reuses_the_session_with_a_new_link_and_revokes_the_old(
    harness: Harness,
) -> None:
    first = await harness.open("T-1")
    old_token = token_of(first["invite_url"])

    response = await harness.hook(
        {"event": "open", "ticket": {"id": "T-1"}, "agent": "alice@example.com"}
    )

    assert response.status == 200
    second = await response.json()
    new_token = token_of(second["invite_url"])
    assert second["session_id"] == first["session_id"]
    assert new_token != old_token
    assert await harness.count(SecureSession) == 1
    assert [a for a, _, _ in await harness.jobs()].count("create_room") == 1
    old = await error_of(await harness.lookup(old_token), 410)
    assert old["error"] == GONE_MESSAGE
    assert (await harness.lookup(new_token)).status == 200


async def test_close_for_an_unknown_ticket_is_404(harness: Harness) -> None:
    response = await harness.hook({"event": "close", "ticket": {"id": "T-404"}})

    body = await error_of(response, 404)
    assert body["errcode"] == "SEALROOM_TICKET_UNKNOWN"
    assert "T-404" in body["error"]
    # Nothing recorded: the helpdesk may retry once the ticket has a session.
    assert await harness.count(WebhookDelivery) == 0


async def test_close_is_202_and_schedules_close_room(harness: Harness) -> None:
    opened = await harness.open("T-1")
    token = token_of(opened["invite_url"])

    response = await harness.hook({"event": "close", "ticket": {"id": "T-1"}})

    assert response.status == 202, await response.text()
    body = await response.json()
    assert body == {"session_id": opened["session_id"], "state": "closing"}
    close_jobs = [j for j in await harness.jobs() if j[0] == "close_room"]
    assert close_jobs == [("close_room", opened["session_id"], {"reason": "helpdesk"})]
    async with harness.database.transaction() as tx:
        session = await tx.get(SecureSession, opened["session_id"])
    assert session is not None
    assert session.state == "closing"
    assert (await harness.lookup(token)).status == 410  # a closing session takes no one new


# -- the landing page -----------------------------------------------------------------------------


async def test_landing_page_has_security_headers_and_never_spends_the_invite(
    harness: Harness,
) -> None:
    token = token_of((await harness.open())["invite_url"])

    for _ in range(3):  # link scanners and reloads
        response = await harness.client.get("/i", headers={"Accept": "text/html"})
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
        assert "<script src=" in page
        csp = response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp
        assert "script-src 'self'" in csp
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
        assert token not in page

    async with harness.database.transaction() as tx:
        invite = (await tx.execute(select(Invite))).scalar_one()
    assert invite.used_at is None
    assert (await harness.lookup(token)).status == 200


async def test_lookup_shows_the_ticket_and_does_not_spend_the_invite(harness: Harness) -> None:
    opened = await harness.open("T-77")
    token = token_of(opened["invite_url"])

    for _ in range(2):
        response = await harness.lookup(token)
        assert response.status == 200
        body = await response.json()
        assert body == {
            "ticket_ref": "T-77",
            "subject": "VPN access",
            "expires_at": opened["expires_at"],
        }
        assert response.headers["Cache-Control"] == "no-store"

    assert (await harness.redeem(token)).status == 200


async def test_redeem_with_an_invalid_matrix_id_is_400_and_the_link_still_works(
    harness: Harness,
) -> None:
    token = token_of((await harness.open())["invite_url"])

    response = await harness.redeem(token, "customer@example.net")

    body = await error_of(response, 400)
    assert body["errcode"] == "SEALROOM_MATRIX_ID_INVALID"
    assert "starts with @" in body["error"]
    assert (await harness.lookup(token)).status == 200
    assert (await harness.redeem(token)).status == 200


async def test_valid_redeem_returns_room_links_and_schedules_the_invite(harness: Harness) -> None:
    opened = await harness.open()
    token = token_of(opened["invite_url"])

    response = await harness.redeem(token, " @customer:example.net ")

    assert response.status == 200, await response.text()
    body = await response.json()
    alias = f"#sealroom-{opened['session_id']}:example.org"
    encoded = alias.replace("#", "%23").replace(":", "%3A")
    assert body["user_id"] == "@customer:example.net"
    assert body["room_alias"] == alias
    assert body["matrix_to_url"] == f"https://matrix.to/#/{encoded}"
    assert body["web_client_url"] == f"https://app.element.io/#/room/{encoded}"
    assert body["homeserver"] == "https://matrix.example.org"
    invites = [j for j in await harness.jobs() if j[0] == "invite"]
    async with harness.database.transaction() as tx:
        spent = (await tx.execute(select(Invite))).scalar_one()
    assert invites == [
        (
            "invite",
            opened["session_id"],
            {"user_id": "@customer:example.net", "invite_id": spent.id},
        )
    ]


async def test_redeeming_again_is_410(harness: Harness) -> None:
    token = token_of((await harness.open())["invite_url"])
    assert (await harness.redeem(token)).status == 200

    again = await error_of(await harness.redeem(token, "@someone-else:example.net"), 410)

    assert again["error"] == GONE_MESSAGE
    assert (await harness.lookup(token)).status == 410
    assert [j[0] for j in await harness.jobs()].count("invite") == 1


async def test_concurrent_redeems_invite_one_account(harness: Harness) -> None:
    token = token_of((await harness.open())["invite_url"])

    responses = await asyncio.wait_for(
        asyncio.gather(
            harness.redeem(token, "@first:example.net"),
            harness.redeem(token, "@second:example.net"),
        ),
        30,
    )

    assert sorted(r.status for r in responses) == [200, 410]
    assert [j[0] for j in await harness.jobs()].count("invite") == 1


async def test_an_expired_link_is_410(harness: Harness) -> None:
    token = token_of((await harness.open())["invite_url"])

    harness.clock.now += timedelta(hours=24, seconds=1)

    looked = await error_of(await harness.lookup(token), 410)
    redeemed = await error_of(await harness.redeem(token), 410)
    assert looked["error"] == redeemed["error"] == GONE_MESSAGE
    assert [j[0] for j in await harness.jobs()].count("invite") == 0


@pytest.mark.parametrize(
    "token",
    ["A" * 43, "not-a-token", ""],
    ids=["well-formed", "junk", "empty"],
)
async def test_unknown_token_is_410_with_the_same_message_as_used_or_expired(
    harness: Harness, token: str
) -> None:
    await harness.open()

    for response in (await harness.lookup(token), await harness.redeem(token)):
        body = await error_of(response, 410)
        assert body["errcode"] == "SEALROOM_INVITE_GONE"
        assert body["error"] == GONE_MESSAGE


@pytest.mark.parametrize("path", ["/i/lookup", "/i/redeem"])
async def test_a_non_json_request_is_400(harness: Harness, path: str) -> None:
    token = token_of((await harness.open())["invite_url"])

    response = await harness.client.post(
        path, data={"token": token, "user_id": "@customer:example.net"}
    )

    body = await error_of(response, 400)
    assert "application/json" in body["error"]
    assert (await harness.lookup(token)).status == 200


async def test_a_redeem_without_user_id_names_the_field(harness: Harness) -> None:
    token = token_of((await harness.open())["invite_url"])

    response = await harness.client.post("/i/redeem", json={"token": token})

    body = await error_of(response, 400)
    assert body["fields"] == ["user_id"]


# -- health, readiness, metrics, crashes ----------------------------------------------------------


async def test_healthz_is_200(harness: Harness) -> None:
    response = await harness.client.get("/healthz")

    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_is_503_naming_the_failing_checks(make_harness: MakeHarness) -> None:
    async def homeserver_down() -> str | None:
        return "answered 502"

    async def sync_crashes() -> str | None:
        raise ConnectionError("refused")

    async def jobs_gave_up() -> str | None:
        return "2 job(s) gave up"

    harness = await make_harness(
        Readiness(
            {"database": _all_ready, "homeserver": homeserver_down, "sync": sync_crashes},
            {"jobs": jobs_gave_up},
        )
    )

    response = await harness.client.get("/readyz")

    assert response.status == 503
    body = await response.json()
    assert body["status"] == "not ready"
    assert body["checks"] == {
        "database": "ok",
        "homeserver": "answered 502",
        "sync": "failed: ConnectionError",
        "jobs": "2 job(s) gave up",
    }


async def test_readyz_is_200_when_every_check_passes(make_harness: MakeHarness) -> None:
    async def jobs_gave_up() -> str | None:
        return "1 job(s) gave up"

    harness = await make_harness(
        Readiness({"database": _all_ready, "sync": _all_ready}, {"jobs": jobs_gave_up})
    )

    response = await harness.client.get("/readyz")

    assert response.status == 200  # a note never makes the service unready
    body = await response.json()
    assert body["status"] == "ready"
    assert body["checks"]["jobs"] == "1 job(s) gave up"


def _webhooks_total(exposition: str, outcome: str) -> float:
    for family in text_string_to_metric_families(exposition):
        if family.name == "sealroom_webhooks":
            for sample in family.samples:
                if sample.name == "sealroom_webhooks_total" and sample.labels == {
                    "integration": "helpdesk",
                    "outcome": outcome,
                }:
                    return float(sample.value)
    return 0.0


async def test_metrics_count_webhooks(harness: Harness) -> None:
    before = await (await harness.client.get("/metrics")).text()
    await harness.open()
    await harness.hook({"event": "open"}, secret="whsec_" + "eHh4eHh4eHh4eHh4eHh4eA==")

    response = await harness.client.get("/metrics")

    assert response.status == 200
    after = await response.text()
    assert "sealroom_webhooks_total" in after
    assert _webhooks_total(after, "accepted") == _webhooks_total(before, "accepted") + 1
    bad = "sealroom_signature_invalid"
    assert _webhooks_total(after, bad) == _webhooks_total(before, bad) + 1


async def test_an_unexpected_error_is_500_with_only_a_request_id(harness: Harness) -> None:
    token = token_of((await harness.open())["invite_url"])
    async with harness.database.engine.begin() as conn:
        await conn.execute(text("DROP TABLE invites"))  # the database breaks under us

    response = await harness.lookup(token)

    raw = await response.text()
    body = await error_of(response, 500)
    assert body["errcode"] == "SEALROOM_INTERNAL"
    assert set(body) == {"errcode", "error", "request_id"}
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    for leak in ("Traceback", "invites", "sqlite", "SELECT", 'File "', token):
        assert leak not in raw


# -- the canary: secrets appear only where they are handed to their owner -------------------------


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    with captured("DEBUG") as buffer:
        yield buffer


async def test_canary_secrets_never_leak(harness: Harness, captured_logs: io.StringIO) -> None:
    canary = f"sk_live_CANARY{secrets.token_hex(12)}"
    responses: list[str] = []

    async def keep(response: ClientResponse) -> ClientResponse:
        responses.append(f"{dict(response.headers)}\n{await response.text()}")
        return response

    payload = {
        "event": "open",
        "ticket": {"id": "T-1", "subject": "VPN", "api_key": canary},
        "agent": "alice@example.com",
        "customer": {"name": "Carol", "password": canary},
        "secret": canary,
    }
    opened_response = await harness.hook(payload, webhook_id="msg_canary")
    open_text = await opened_response.text()
    token = token_of(json.loads(open_text)["invite_url"])
    await keep(await harness.hook(payload, webhook_id="msg_canary"))  # replay
    await keep(await harness.hook(payload, secret="whsec_" + "eHh4eHh4eHh4eHh4eHh4eA=="))
    await keep(await harness.client.get("/i", headers={"Accept": "text/html"}))
    await keep(await harness.lookup(token))
    await keep(await harness.redeem(token, "not-a-matrix-id"))
    await keep(await harness.redeem(token))
    await keep(await harness.redeem(token))  # spent
    await keep(await harness.lookup(token))

    def stored_bytes() -> bytes:
        return b"".join(p.read_bytes() for p in sorted(harness.db_path.parent.glob("*.db*")))

    log_text = captured_logs.getvalue()
    in_db = stored_bytes()
    # The checks below can only pass for the right reason if we are looking at the right things.
    assert '"event": "session.opened"' in log_text
    assert '"event": "invite.redeemed"' in log_text
    assert token in open_text
    assert hash_token(token).encode() in in_db
    await harness.database.close()  # checkpoints the WAL into the main file
    in_db += stored_bytes()

    for name, value in {"token": token, "webhook secret": SECRET, "canary": canary}.items():
        assert value not in log_text, f"{name} in the logs"
        assert value.encode() not in in_db, f"{name} in the database file"
        for response_text in responses:
            assert value not in response_text, f"{name} in an HTTP response"
    assert SECRET not in open_text
    assert canary not in open_text


# -- edges of the HTTP surface --------------------------------------------------------------------


async def test_reopening_a_ticket_while_its_room_closes_never_hands_out_a_dead_link(
    harness: Harness,
) -> None:
    await harness.open("T-1")
    assert (await harness.hook({"event": "close", "ticket": {"id": "T-1"}})).status == 202

    response = await harness.hook(
        {"event": "open", "ticket": {"id": "T-1"}, "agent": "alice@example.com"}
    )

    if response.status < 300:
        token = token_of((await response.json())["invite_url"])
        assert (await harness.lookup(token)).status == 200, "a 2xx answer with a dead link"
    else:
        body = await error_of(response, 409)
        assert "T-1" in body["error"] or "clos" in body["error"]
        assert await harness.count(WebhookDelivery) == 2  # open + close; a retry may succeed


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("GET", "/hooks/helpdesk", 405), ("PUT", "/i/redeem", 405)],
)
async def test_routing_errors_are_json_with_a_request_id(
    harness: Harness, method: str, path: str, status: int
) -> None:
    response = await harness.client.request(method, path)

    body = await error_of(response, status)
    assert body["errcode"] == "SEALROOM_HTTP"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("given", "echoed"),
    [("req-12345678", True), ("short", False), ("bad id\twith<tags>", False), ("x" * 65, False)],
)
async def test_a_safe_caller_request_id_is_kept_and_anything_else_replaced(
    harness: Harness, given: str, echoed: bool
) -> None:
    response = await harness.client.get("/healthz", headers={"X-Request-ID": given})

    assert response.status == 200
    assert (response.headers["X-Request-ID"] == given) is echoed
    assert re.fullmatch(r"[A-Za-z0-9._-]{8,64}", response.headers["X-Request-ID"])
